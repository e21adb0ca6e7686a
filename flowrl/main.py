"""Train an agent on an OGBench singletask environment or a D4RL task (or a Minari dataset).

    python main.py --agent=agents/fql.py --env_name=cube-double-play
    python main.py --agent=agents/fql.py --env_name=cube-double-play --num_seeds=8
    python main.py --agent=agents/fql.py --env_name=cube-double-play --sweep=agent.alpha=100,300,1000
    python main.py --resume=exp/Debug/fql_cube-double-play_sd000_20261121_120000

Ctrl-C, SIGTERM or SIGUSR1 stop a run after the chunk of updates in flight, with a checkpoint,
and print the --resume command that continues it (exit status 130, 143, 138; flowrl.stopping,
flowrl.run.resume_lines).

Flag names follow the official FQL command line, so the paper's commands run unchanged.
`--agent.KEY=VALUE` overrides a key of the agent's config (see get_config() in the file).
`--agent=agents/X.py` names a file in the current directory or, failing that, flowrl's own agent X
(flowrl.registry.agent_loading), so the commands work from any directory. The same command is
`python -m flowrl.main ...` and, installed, `flowrl-train ...` (the repository's main.py runs `script`).
"""

import os
import sys

from absl import flags, logging

from flowrl.run.command import run_command
from flowrl.errors import UserError
from flowrl.engine.placement import ProcessLost, join
from flowrl.engine.placement import define_flags as define_start_up_flags
from flowrl.run.settings import RESUME_CHANGES, define_flags, setting_flag_names, settings_from_values
from flowrl.run import resume_lines
from flowrl.run.resume_lines import resume_command
from flowrl.stopping import Stopped, signal_name

# absl's --help lists the flags of the module named by the script's path (sys.argv[0]): main.py,
# flowrl-train or this file, whichever was run, so the flags are defined as that module's.
LAUNCHER = sys.argv[0]


def command_flags(launcher: str = LAUNCHER) -> flags.FlagValues:
    """The command's flags, in a registry of their own (joined to absl's only when the command
    runs: flowrl.run.command), so that a process may import this module and flowrl.run.evaluate_run,
    whose flags share names."""
    values = flags.FlagValues()
    define_flags(values, launcher)  # one flag per flowrl.run.settings.RunSettings field
    # Q-chunking's name for a directory of shards (github.com/ColinQiyangLi/qc): the same flag.
    flags.DEFINE_alias('ogbench_dataset_dir', 'dataset_dir', flag_values=values, module_name=launcher)
    flags.DEFINE_string('resume', None, 'Run directory to continue from its latest good checkpoint (with none yet: '
                        'to start over from update 0); only '
                        + ', '.join(f'--{name}' for name in RESUME_CHANGES) + ' may be given with it.',
                        flag_values=values, module_name=launcher)
    # A flag of the official FQL command line that flowrl does not support: refused unless left at its default.
    flags.DEFINE_integer('video_episodes', 0, 'Accepted for compatibility with the FQL command line; must be 0.',
                         flag_values=values, module_name=launcher)
    # Joining JAX's multi-controller runtime (every host of a TPU pod slice or Slurm job runs the same command).
    define_start_up_flags(values, launcher)
    return values


FLAGS = command_flags()
SETTING_FLAGS = setting_flag_names()


def settings_from_flags(agent_overrides):
    if FLAGS.video_episodes:
        raise UserError('--video_episodes is not supported: flowrl records no videos; use --video_episodes=0.')
    return settings_from_values({name: FLAGS[name].value for name in SETTING_FLAGS}, agent_overrides)


def resume_changes(agent_overrides) -> dict:
    """The flags given with --resume: the run's own settings apply, so any other is refused."""
    names = SETTING_FLAGS + ['video_episodes']
    given = {name: FLAGS[name].value for name in names if FLAGS[name].present}
    return {**given, **{f'agent.{k}': v for k, v in agent_overrides.items()}}


def main(argv, agent_overrides):
    from flowrl.run import runner

    if len(argv) > 1:
        raise UserError(f'Unexpected argument(s): {" ".join(argv[1:])}; flags are written --name=value.')
    if not flags.FLAGS['verbosity'].present:  # absl's own flag, in its registry
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    join(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    try:
        if FLAGS.resume:
            runner.resume(FLAGS.resume, resume_changes(agent_overrides))
        else:
            runner.Run(settings_from_flags(agent_overrides)).train()
    except ProcessLost as error:
        # Leave at once: JAX's exit would wait for the lost process at its shutdown barrier.
        print(f'error: {error}', file=sys.stderr, flush=True)
        os._exit(1)
    except Stopped as stop:  # training words its own line (flowrl.stopping)
        stop.message = stop.message or before_training(stop)
        raise


def before_training(stop) -> str:
    """The line of a stop signal that came before training started (setup: data, compilation)."""
    line = f'Stopped by {signal_name(stop.signum)} before training started'
    if FLAGS.resume:
        return f'{line}; {FLAGS.resume} is as it was; continue with: {resume_command(FLAGS.resume)}'
    return f'{line}; nothing was saved.'


def run():
    run_command(main, FLAGS)


def script():
    """The command: main.py, `python -m flowrl.main` and the installed `flowrl-train`."""
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    resume_lines.TRAIN_COMMAND = resume_lines.train_command(LAUNCHER, __file__)
    run()


if __name__ == '__main__':
    script()
