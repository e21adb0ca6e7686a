"""The one exception type that means "the user asked for something we cannot do".

Raised with a single sentence that names the problem and, where there is one, the remedy.
`main.py` and the CLIs print it and exit non-zero; anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Bad input from the user (flags, files, names): message is shown as is."""


class TrainingDiverged(UserError):
    """A loss or metric became non-finite; the message names the member, update and metrics."""
