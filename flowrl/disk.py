"""A full disk said in one sentence: a space check before a run starts, and writes that fail for
lack of space turned into `NoSpace` once their half-written file is removed.

Writers (checkpoints, CSV logs, JSON files, dataset files) remove what they were writing when it
fails and raise `NoSpace` naming it (`naming_no_space`); the run loop adds the update, the newest
good checkpoint and the resume command (flowrl.run.resume_lines); a command prints the sentence and
exits 1. What a run needs is the run's to estimate (flowrl.run.space); `require_space` refuses it.
"""

import contextlib
import errno
import os
import shutil

from flowrl.errors import UserError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How a lack of space reads in errors that carry no errno (orbax/TensorStore's ValueError:
# "RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']").
NO_SPACE_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


class NoSpace(UserError):
    """A write failed for lack of space; `what` names what was being written. Its half-written
    file was removed and nothing else was changed."""

    def __init__(self, what: str, message: str | None = None):
        self.what = what
        super().__init__(message or f'No space left on the device for {what}: the half-written file was removed and '
                                    'nothing else was changed; free some space and run the command again.')


def is_no_space(error: BaseException) -> bool:
    """Whether `error`, or an exception it was raised from, says that the device is full."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NoSpace):
            return True
        if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
            return True
        if any(text in str(error) for text in NO_SPACE_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


def no_space_sentence(error: BaseException) -> str:
    """For a lack of space that no writer of flowrl's named (see `naming_no_space`)."""
    path = getattr(error, 'filename', None)
    return (f'No space left on the device while writing {path or "a file"}; '
            'free some space and run the command again.')


@contextlib.contextmanager
def naming_no_space(what: str):
    """Turns a lack of space in the block into `NoSpace(what)` (the block cleans up first)."""
    try:
        yield
    except NoSpace:
        raise
    except Exception as error:
        if is_no_space(error):
            raise NoSpace(what) from error
        raise


def existing_ancestor(path: str) -> str:
    """`path`, or the nearest directory above it that exists (where it would be created)."""
    path = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def free_bytes(path: str) -> int:
    return shutil.disk_usage(existing_ancestor(path)).free


def format_bytes(count: float) -> str:
    for unit in ('B', 'KB', 'MB', 'GB'):
        if abs(count) < 1000 or unit == 'GB':
            return f'{count:,.0f} {unit}' if unit == 'B' else f'{count:,.1f} {unit}'
        count /= 1000
    raise AssertionError('unreachable')


def require_space(path: str, parts: dict, what: str, remedy: str) -> None:
    """Refuses in one sentence when the filesystem of `path` has less free space than the sum of
    `parts` ({description: bytes}); `what` names the place, `remedy` the way out."""
    needed, free = sum(parts.values()), free_bytes(path)
    if needed <= free:
        return
    listed = ', '.join(f'{description}: {format_bytes(size)}' for description, size in parts.items())
    raise UserError(f'{what} has {format_bytes(free)} free and this run needs about {format_bytes(needed)} there '
                    f'({listed}); {remedy}.')
