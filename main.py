"""Train an agent on an OGBench singletask environment.

    python main.py --agent=agents/fql.py --env_name=cube-double-play
    python main.py --agent=agents/fql.py --env_name=cube-double-play --num_seeds=8
    python main.py --agent=agents/fql.py --env_name=cube-double-play --sweep=agent.alpha=100,300,1000
    python main.py --resume=exp/Debug/fql_cube-double-play_sd000_20261121_120000

Flag names follow the official FQL command line, so the paper's commands run unchanged.
`--agent.KEY=VALUE` overrides a key of the agent's config (see get_config() in the file).
"""

import sys

from absl import app, flags, logging

from flowrl.config_overrides import split_agent_flags
from flowrl.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string('agent', 'agents/fql.py', 'Agent file; --agent.KEY=VALUE overrides its config.')
flags.DEFINE_string('env_name', 'cube-double-play-singletask-v0',
                    'OGBench singletask environment: full name or short (cube-double-play, cube-double-play-task3).')
flags.DEFINE_integer('seed', 0, 'Random seed (of the first member; seeds seed..seed+num_seeds-1).')
flags.DEFINE_integer('num_seeds', 1, 'Independent seeds trained side by side in one program (vmap).')
flags.DEFINE_multi_string('sweep', [], 'Dynamic hyperparameter values run side by side: agent.alpha=3,10,30.')
flags.DEFINE_integer('offline_steps', 1_000_000, 'Number of offline updates.')
flags.DEFINE_integer('online_steps', 0, 'Online fine-tuning: environment steps after the offline updates, one '
                     'update after each (per member, in its own environment).')
flags.DEFINE_integer('buffer_size', 2_000_000, 'Replay buffer capacity of online fine-tuning (the dataset is its start '
                     'unless --balanced_sampling=1).')
flags.DEFINE_integer('balanced_sampling', 0, '1: online batches are half dataset, half online transitions (RLPD).')
flags.DEFINE_string('restore_path', None, 'Run directory whose checkpointed agents this run starts from.')
flags.DEFINE_integer('restore_epoch', None, 'Checkpoint step of --restore_path (default: its newest good one).')
flags.DEFINE_float('p_aug', None, 'Image augmentation probability (pixel tasks; not supported yet).')
flags.DEFINE_integer('frame_stack', None, 'Frames stacked per observation (pixel tasks; not supported yet).')
flags.DEFINE_integer('log_interval', 5_000, 'Updates between train.csv rows (and progress lines without a terminal).')
flags.DEFINE_integer('eval_interval', 100_000, 'Updates between evaluations (0: no evaluation).')
flags.DEFINE_integer('eval_episodes', 50, 'Evaluation episodes per member.')
flags.DEFINE_integer('eval_workers', 0, 'Processes stepping the evaluation environments (0: one per core).')
flags.DEFINE_integer('eval_envs', 0, 'Evaluation environments alive at once, ~160 MB each (0: chosen from cores '
                     'and memory); results do not depend on it.')
flags.DEFINE_integer('video_episodes', 0, 'Accepted for compatibility with the FQL command line; must be 0.')
flags.DEFINE_integer('save_interval', 1_000_000, 'Updates between checkpoints (one is always saved at the end).')
flags.DEFINE_string('save_dir', 'exp/', 'Where run directories are created.')
flags.DEFINE_string('run_group', 'Debug', 'Sub-directory of save_dir for this run.')
flags.DEFINE_string('resume', None, 'Run directory to continue from its latest good checkpoint; only --offline_steps '
                    '(to extend the run), --eval_envs, --eval_workers, --dataset_dir, --dataset_workers, --report, '
                    '--logger, --wandb_mode may be given with it.')
flags.DEFINE_bool('sparse', False, 'Sparse rewards: -1 unless the task is fully solved (the Q-chunking repository\'s '
                  '--sparse, github.com/ColinQiyangLi/qc; the FQL repository has no such flag).')
flags.DEFINE_string('success_timing', None, "When OGBench computes success and reward: 'pre' (before the step; the "
                    "default of ogbench >= 1.2) or 'post' (after it; ogbench 1.1.0, as in the FQL paper). "
                    "Default: OGBench's own.")
flags.DEFINE_string('dataset_path', None, 'Explicit dataset .npz (its -val.npz beside it is used if present).')
flags.DEFINE_string('dataset_dir', '~/.ogbench/data', 'OGBench dataset directory (official file names).')
flags.DEFINE_integer('dataset_episodes', None, 'Build and use a reduced dataset of this many episodes.')
flags.DEFINE_integer('dataset_workers', None, 'Worker processes for local dataset generation (default: all cores).')
flags.DEFINE_bool('report', True, 'Write the run\'s tables and plots to RUN_DIR/report/ at the end (python -m flowrl.report).')
flags.DEFINE_string('logger', 'csv', 'Loggers, comma-separated: csv (always on), tensorboard, wandb (pip install -e '
                    '".[tensorboard]" / ".[wandb]"); a missing package or service costs one warning, never the run.')
flags.DEFINE_enum('wandb_mode', 'offline', ['offline', 'online', 'disabled'], 'W&B mode (--logger=wandb).')
flags.DEFINE_enum('member_execution', 'auto', ['auto', 'vmap', 'map'],
                  'How the members on one device run: vmap (batched; accelerators), map (one after another; '
                  'CPUs), auto (map on CPU, vmap elsewhere).')


def settings_from_flags(agent_overrides):
    from flowrl.runner import RunSettings

    for name in ('p_aug', 'frame_stack'):
        if FLAGS[name].value is not None:
            raise UserError(f'--{name} applies to pixel-based tasks, which flowrl does not support yet; leave it out.')
    if FLAGS.video_episodes:
        raise UserError('--video_episodes is not supported: flowrl records no videos; use --video_episodes=0.')
    names = [f.name for f in __import__('dataclasses').fields(RunSettings)]
    values = {name: FLAGS[name].value for name in names if name in FLAGS and name != 'agent_overrides'}
    return RunSettings(**values, agent_overrides=agent_overrides)


def resume_changes(agent_overrides) -> dict:
    """The flags given with --resume: the run's own settings apply, so any other is refused."""
    given = {f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])
             if f.present and f.name != 'resume'}
    return {**given, **{f'agent.{k}': v for k, v in agent_overrides.items()}}


def main(argv, agent_overrides):
    from flowrl import runner

    if len(argv) > 1:
        raise UserError(f'Unexpected argument(s): {" ".join(argv[1:])}; flags are written --name=value.')
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    if FLAGS.resume:
        runner.resume(FLAGS.resume, resume_changes(agent_overrides))
    else:
        runner.Run(settings_from_flags(agent_overrides)).train()


def run():
    try:
        rest, agent_overrides = split_agent_flags(sys.argv)
        app.run(lambda argv: main(argv, agent_overrides), argv=rest)
    except UserError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    run()
