# Train an agent: `python main.py --agent=agents/fql.py --env_name=cube-double-play`.
# The command is flowrl.main; this launcher keeps the FQL repository's shape (main.py beside
# agents/ and configs/). Installed, the same command is `flowrl-train` or `python -m flowrl.main`.

from flowrl.main import FLAGS, run, script  # noqa: F401  (FLAGS, run: tests drive the command in-process)
from flowrl.main import __doc__  # noqa: F401  absl's --help prints the __main__ module's docstring: the usage

if __name__ == '__main__':
    script()
