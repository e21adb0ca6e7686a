"""Command line of flowrl's dataset making (`python -m flowrl.suites.data`, whose __main__ runs `main`).

    python -m flowrl.suites.data generate cube-double-play-v0 [--episodes N] [--workers W] [--seed S] [--dataset_dir D] [--force]
    python -m flowrl.suites.data generate cube-double-play-v0 --shards N --episodes E --dataset_dir D   (OGBench's sharded layout)
    python -m flowrl.suites.data plan cube-double-play-v0 [--episodes N] [--workers W]
    python -m flowrl.suites.data verify cube-double-play-v0 [--episodes N] [--dataset_dir D]
    python -m flowrl.suites.data locomotion halfcheetah [--sac_steps N] [--medium_return_fraction F] [--rollout_episodes E] ...

`locomotion` makes D4RL-style locomotion datasets with flowrl's SAC (flowrl.making.locomotion):
Minari datasets flowrl/<env>/{medium,medium-replay,expert,medium-expert}-v0; rerun the same
command to continue an interrupted run.

A visual name ('visual-cube-single-play-v0') is rendered from its state dataset, which `generate`
takes from the dataset directory or generates first (with --seed); --force replaces only the
visual files.

`--dataset_episodes` is accepted as a synonym of `--episodes` (the name main.py uses). A dataset
may also be named by a single-task env name ('cube-double-play-singletask-task2-v0').
User errors (a full disk included) print one sentence and exit with status 1; bad arguments exit
with status 2. Ctrl-C, SIGTERM or SIGUSR1 stop it with one line and status 130, 143 or 138: a
generation keeps no partial file (and an existing dataset), a render keeps its finished episodes
for the same command to continue from.
"""

from __future__ import annotations

import argparse
import signal
import sys

from flowrl import stopping
from flowrl.suites.data import files
from flowrl.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flowrl.suites.data",
        description="flowrl's datasets, made on this machine: OGBench datasets (generate with OGBench's oracles, plan, "
                    "verify) and D4RL-style locomotion datasets trained with SAC (locomotion).")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="generate a dataset with OGBench's scripted oracles")
    _add_common_arguments(generate)
    generate.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    generate.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    generate.add_argument("--force", action="store_true", help="replace files that already exist")
    generate.add_argument("--shards", type=_positive_int, default=None,
                          help="write N shard files of --episodes episodes each and a -val.npz into --dataset_dir "
                               "(OGBench's sharded layout, streamed by main.py --dataset_dir)")

    plan = commands.add_parser("plan", help="print what generation would produce, without generating")
    _add_common_arguments(plan)
    plan.add_argument("--workers", type=int, default=None, help="worker processes for the time estimate")

    verify = commands.add_parser("verify", help="check the integrity of existing dataset files")
    _add_common_arguments(verify)
    _add_locomotion_parser(commands)
    return parser


def _add_locomotion_parser(commands) -> None:
    from flowrl.making.locomotion import RecipeSettings

    defaults = RecipeSettings(env="halfcheetah")
    recipe = commands.add_parser(
        "locomotion", help="make D4RL-style locomotion datasets (medium, medium-replay, expert, medium-expert) with SAC",
        description="D4RL's locomotion recipe (docs/DATA.md, 'Locomotion datasets made here'): SAC on the env, "
                    "medium-replay and medium at the medium return, expert and medium-expert at --sac_steps. A short "
                    "--sac_steps run needs a lower --medium_return (its SAC does not reach the default).",
        formatter_class=DefaultsShown)
    recipe.add_argument("env", help="halfcheetah, hopper or walker2d (Gymnasium -v4)")
    recipe.add_argument("--sac_steps", type=int, default=defaults.sac_steps, help="environment steps of SAC in all")
    recipe.add_argument("--random_steps", type=int, default=defaults.random_steps,
                        help="first steps with random actions and no update")
    recipe.add_argument("--medium_return", type=float, default=None,
                        help="evaluation return of the medium policy (default: --medium_return_fraction x D4RL's "
                             "expert reference return, e.g. halfcheetah 12135 / 3 = 4045); lower it for a short "
                             "--sac_steps run")
    recipe.add_argument("--medium_return_fraction", type=float, default=defaults.medium_return_fraction,
                        help="medium return as a fraction of D4RL's expert reference return (default: 1/3, D4RL's)")
    recipe.add_argument("--rollout_episodes", type=int, default=defaults.rollout_episodes,
                        help="episodes of the medium and of the expert rollouts")
    recipe.add_argument("--eval_interval", type=int, default=defaults.eval_interval, help="env steps between evaluations")
    recipe.add_argument("--eval_episodes", type=int, default=defaults.eval_episodes, help="episodes per evaluation")
    recipe.add_argument("--checkpoint_interval", type=int, default=defaults.checkpoint_interval,
                        help="env steps between checkpoints")
    recipe.add_argument("--max_episode_steps", type=int, default=None, help="episode length (default: the env's 1000)")
    recipe.add_argument("--hidden_dims", type=_layer_sizes, default=",".join(map(str, defaults.hidden_dims)),
                        help="actor and critic layer sizes")  # a string default: argparse parses it with the type
    recipe.add_argument("--batch_size", type=int, default=defaults.batch_size, help="SAC's batch size")
    recipe.add_argument("--seed", type=int, default=defaults.seed, help="seed of SAC and of the environments")
    recipe.add_argument("--work_dir", default=None, help="checkpoint directory (default: ~/.flowrl/locomotion/<env>)")
    recipe.add_argument("--force", action="store_true", help="start again, replacing the datasets and the checkpoint")


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default at the end of its help, unless the help says it in words (a default
    of None, False or one given as '(default: ...)')."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _layer_sizes(text: str) -> tuple:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, not {text!r}") from None


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset name, e.g. cube-double-play-v0")
    parser.add_argument(
        "--episodes", "--dataset_episodes", dest="episodes", type=_positive_int, default=None,
        help="build a reduced dataset of N episodes, stored as '<dataset>-ep<N>.npz'",
    )
    parser.add_argument("--dataset_dir", default=files.DEFAULT_DATASET_DIR,
                        help=f"dataset directory (default {files.DEFAULT_DATASET_DIR})")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def _dataset_name(name: str) -> str:
    from flowrl.suites.data.protocol import dataset_name_for_env

    return dataset_name_for_env(name) if "-singletask" in name else name


def run_generate(args) -> None:
    from flowrl.making.generate import default_workers
    from flowrl.making.ogbench import produce_dataset

    dataset_name = _dataset_name(args.dataset)
    if args.shards is not None:
        return _generate_shards(dataset_name, args)
    plan = _plan(dataset_name, args.episodes, args.dataset_dir)
    train_file = files.train_path(args.dataset_dir, plan.file_stem)
    if train_file.exists() and not args.force:
        raise UserError(
            f"{files.display_path(train_file)} already exists; pass --force to replace it, or run "
            f"`{files.cli_command('verify', dataset_name, args.episodes, args.dataset_dir)}` to check it."
        )
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, not {args.workers}; omit it to use all cores.")
    produce_dataset(dataset_name, dataset_dir=args.dataset_dir, dataset_episodes=args.episodes,
                    workers=args.workers or default_workers(), seed=args.seed, log=print, download=False)


def _generate_shards(dataset_name: str, args) -> None:
    from flowrl.making.generate import default_workers
    from flowrl.making.shards import make_shards
    from flowrl.suites.ogbench_envs import is_visual

    if args.episodes is None:
        raise UserError("--shards needs --episodes, the episodes of each shard (e.g. --shards=8 --episodes=100).")
    if is_visual(dataset_name):
        raise UserError(f"--shards makes state datasets; {dataset_name} has pixel observations, which are not "
                        "streamed from shards yet.")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, not {args.workers}; omit it to use all cores.")
    _plan(dataset_name, args.shards * args.episodes, args.dataset_dir)  # refuses a name it cannot build
    make_shards(dataset_name, args.dataset_dir, args.shards, args.episodes, args.workers or default_workers(),
                args.seed, args.force, log=print)


def _plan(dataset_name: str, episodes: int | None, dataset_dir: str):
    """The generation plan, or for a visual name the rendering plan; refuses names it cannot build."""
    from flowrl.suites.data.plans import plan_generation, plan_rendering
    from flowrl.suites.data.protocol import can_produce, require_spec
    from flowrl.suites.ogbench_envs import is_visual

    if not can_produce(dataset_name):
        require_spec(dataset_name, dataset_dir)  # raises, naming the directory given
    if is_visual(dataset_name):
        return plan_rendering(dataset_name, episodes)
    return plan_generation(dataset_name, episodes)


def run_plan(args) -> None:
    from flowrl.making.generate import default_workers, describe_plan
    from flowrl.making.render import describe_render_plan
    from flowrl.suites.data.plans import RenderPlan

    plan = _plan(_dataset_name(args.dataset), args.episodes, args.dataset_dir)
    workers = args.workers or default_workers()
    state = plan.state if isinstance(plan, RenderPlan) else plan
    if isinstance(plan, RenderPlan):
        print(f"dataset            {plan.name} (the frames of {state.spec.name}, rendered in {plan.render_env_id})")
        print(f"files              {plan.file_stem}.npz, {plan.file_stem}-val.npz")
    else:
        print(f"dataset            {state.spec.name} ({state.spec.dataset_type}, collected in {state.spec.env_id})")
        print(f"files              {state.file_stem}.npz, {state.file_stem}-val.npz")
    print(f"episodes           {state.train_episodes} train + {state.val_episodes} val")
    print(f"steps per episode  {state.steps_per_episode}")
    print(f"steps stored       {state.train_steps:,} train + {state.val_steps:,} val")
    print(f"transitions        {state.train_transitions:,} train + {state.val_transitions:,} val (after loading)")
    if isinstance(plan, RenderPlan):
        print(f"If {state.file_stem} is not in the dataset directory, it is generated first: "
              + describe_plan(state, workers, 0, args.dataset_dir))
        print(describe_render_plan(plan, workers, args.dataset_dir))
    else:
        print(describe_plan(plan, workers, 0, args.dataset_dir))


def run_verify(args) -> None:
    from flowrl.suites.data.loading import resolve_dataset_files

    train_file, source = resolve_dataset_files(
        _dataset_name(args.dataset),
        dataset_path=None,
        dataset_dir=args.dataset_dir,
        dataset_episodes=args.episodes,
        generate=False,
        workers=None,
        seed=0,
        log=print,
        download=False,
    )
    print(f"OK: {source}")


def run_locomotion(args) -> None:
    from flowrl.making.locomotion import RecipeSettings, make_datasets

    settings = RecipeSettings(**{k: v for k, v in vars(args).items() if k != "command"})
    try:
        make_datasets(settings)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM / SIGUSR1 as flowrl.stopping.Stopped
        signum = getattr(stop, "signum", signal.SIGINT)
        raise Interrupted(f"Stopped by {stopping.signal_name(signum)}; the last checkpoint in {settings.work_path} is "
                          "kept: run the same command again to continue.", signum) from None


class Interrupted(Exception):
    """A stop of the locomotion recipe, with what was kept."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"generate": run_generate, "plan": run_plan, "verify": run_verify, "locomotion": run_locomotion}
    try:
        with stopping.stop_signals_raise():
            handlers[args.command](args)
    except UserError as error:  # a full disk included (flowrl.disk.NoSpace)
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Interrupted as interrupted:
        print(interrupted, file=sys.stderr)
        return stopping.exit_code(interrupted.signum)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM / SIGUSR1 as flowrl.stopping.Stopped
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"Stopped by {stopping.signal_name(signum)}; no partial dataset was left behind and an existing one "
              "was kept.", file=sys.stderr)
        return stopping.exit_code(signum)
    return 0
