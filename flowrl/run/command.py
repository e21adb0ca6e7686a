"""How a command of flowrl runs (main.py and flowrl.run.evaluate_run): its flags in a registry
of its own, joined to absl's when it runs; `--agent.*` split off; one sentence and a non-zero exit
for bad input, a full disk or a stop signal; help asked for is a success.

absl keeps one global registry per process: a command that defined its flags there when imported
would make a process that imports two commands (a program using both, the tests) define flags of
the same names twice. Each command builds its own registry (`command_flags()` of flowrl.main and
flowrl.run.evaluate_run), and only the one that runs joins it to absl's (`join_flags`).
"""

import functools
import sys

from absl import app, flags

from flowrl import stopping
from flowrl.disk import is_no_space, no_space_sentence
from flowrl.errors import UserError
from flowrl.run.config_overrides import split_agent_flags


HELP_FLAGS = ('help', 'helpshort', 'helpfull', 'helpxml', '?')  # absl's, each also written -NAME


def asks_for_help(argv) -> bool:
    """Whether the command line (before a `--` that ends the flags) asks absl for its help."""
    given = argv[1:argv.index('--')] if '--' in argv else argv[1:]
    return any(arg.startswith('-') and arg.lstrip('-').partition('=')[0] in HELP_FLAGS
               and arg.partition('=')[2].lower() not in ('false', '0') for arg in given)


def join_flags(command_flags: flags.FlagValues, process_flags: flags.FlagValues = flags.FLAGS) -> None:
    """Adds a command's flags to absl's registry of the process (`process_flags`, where absl's own
    live: --help, --flagfile, --verbosity), each under the module that defines it (what --help
    lists). A flag already there is left as it is (the command run again in one process); another
    flag of the same name is absl's DuplicateFlagError (two commands run in one process)."""
    for module, module_flags in command_flags.flags_by_module_dict().items():
        for flag in module_flags:
            if flag.name in process_flags and process_flags[flag.name] is flag:
                continue
            process_flags[flag.name] = flag
            process_flags.register_flag_by_module(module, flag)


def parse_command_line(command_flags: flags.FlagValues, argv: list) -> list:
    """absl's parse of `argv` (usage and exit on a malformed flag) with the command's flags joined
    to the process's first; the command's registry then reads as parsed. Returns the rest of argv."""
    join_flags(command_flags)
    rest = app.parse_flags_with_usage(argv)
    command_flags.mark_as_parsed()
    return rest


def run_command(main, command_flags: flags.FlagValues):
    """Runs a command line through absl with `main(argv, agent_overrides)`, the `--agent.*`
    flags split off first and the others parsed into `command_flags`, the command's own registry
    (so that importing two commands into one process defines no flag twice); a UserError (a
    full disk included) ends it with its one sentence on stderr and status 1, a stop signal with
    its line and 128 + the signal's number (flowrl.stopping)."""
    try:
        with stopping.stop_signals_raise():
            rest, agent_overrides = split_agent_flags(sys.argv)
            app.run(lambda argv: main(argv, agent_overrides), argv=rest,
                    flags_parser=functools.partial(parse_command_line, command_flags))
    except SystemExit as exit:
        # absl ends --help (and --helpfull, --helpshort, --helpxml) with status 1; help asked for is a success.
        sys.exit(0 if exit.code == 1 and asks_for_help(sys.argv) else exit.code)
    except UserError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(1)
    except stopping.Stopped as stop:
        print(stop.message or f'Stopped by {stopping.signal_name(stop.signum)}.', file=sys.stderr)
        sys.exit(stop.exit_code)
    except Exception as error:
        if not is_no_space(error):
            raise
        print(f'error: {no_space_sentence(error)}', file=sys.stderr)
        sys.exit(1)
