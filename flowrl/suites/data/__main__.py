"""`python -m flowrl.suites.data ...`: the dataset command users type (README, docs/DATA.md,
docs/USAGE.md), an entry point of flowrl.making.command, where the command lives (making data
is a layer above the suites; this module is an entry point, which may import any layer)."""

import sys

from flowrl.making.command import build_parser, main  # noqa: F401 (the command's names, as before)

if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    sys.exit(main())
