"""A run's settings in one place: their defaults and help (main.py's flags are generated from
them), their checks, and how they resolve into the members' agent configs
(agent defaults <- environment presets <- command-line overrides; then sweep grid x seeds).

    flags (main.py) -> RunSettings -> check_settings -> resolve_members -> Members
"""

import dataclasses
import typing

from absl import flags

from flowrl.run.config_overrides import apply_overrides, check_config, parse_sweeps, sweep_grid
from flowrl.errors import UserError
from flowrl.kit import chunking, contract
from flowrl.run.loggers import WANDB_MODES, parse_loggers
from flowrl.registry.presets import apply_presets, presets_for, presets_name, unpublished_key_values
from flowrl.engine.training import MEMBER_EXECUTIONS
from flowrl.suites.options import TaskSettings


RESTORE_SCHEDULES = ('continue', 'restart')
EVAL_EPISODES = 50  # episodes per member and evaluation, unless --eval_episodes says otherwise


def setting(default, help: str, **extra):
    """A RunSettings field with its command-line help (and `choices` for an enum flag)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=dict(help=help, **extra))
    return dataclasses.field(default=default, metadata=dict(help=help, **extra))


@dataclasses.dataclass
class RunSettings:
    agent: str = setting('agents/fql.py', 'Agent file; --agent.KEY=VALUE overrides its config.')
    env_name: str = setting('cube-double-play-singletask-v0', 'Environment: an OGBench singletask name, full or short '
                            '(cube-double-play, cube-double-play-task3), a D4RL name (antmaze-large-play-v2, '
                            'pen-human-v1, halfcheetah-medium-v2, kitchen-mixed-v0) or a Minari dataset id '
                            '(D4RL/pen/human-v2).')
    agent_overrides: dict = setting({}, 'Raw --agent.KEY=VALUE strings (not a flag of its own).', flag=False)
    sweep: list = setting([], 'Dynamic hyperparameter values run side by side: agent.alpha=3,10,30.')
    seed: int = setting(0, 'Random seed (of the first member; seeds seed..seed+num_seeds-1).')
    num_seeds: int = setting(1, 'Independent seeds trained side by side in one program.')
    offline_steps: int = setting(1_000_000, 'Number of offline updates.')
    online_steps: int = setting(0, 'Online fine-tuning: environment steps after the offline updates, one update '
                                'after each (per member, in its own environment).')
    buffer_size: int = setting(2_000_000, 'Replay buffer capacity of online fine-tuning (the dataset is its start '
                               'unless --balanced_sampling=1).')
    balanced_sampling: int = setting(0, '1: online batches are half dataset, half online transitions (RLPD).')
    horizon_length: int = setting(1, 'Action chunk length H (the Q-chunking repository\'s --horizon_length): batches hold '
                                  'sequences of H steps and the agent acts with chunks of H actions, executed open loop '
                                  '(agents that declare chunking: agents/acfql.py); 1: single transitions and actions.')
    restore_path: str | None = setting(None, 'Run directory whose checkpointed agents this run starts from.')
    restore_epoch: int | None = setting(None, 'Checkpoint step of --restore_path (default: its newest good one).')
    restore_schedule: str = setting('continue', "What --restore_path does with the saved agents' step, which drives "
                                    "step schedules (QIPO's phases and renewals, ReBRAC's actor delay): continue "
                                    '(they go on from the saved step) or restart (they start over at 0 with the '
                                    'saved weights).', choices=RESTORE_SCHEDULES)
    log_interval: int = setting(5_000, 'Updates between train.csv rows (and progress lines without a terminal).')
    eval_interval: int = setting(100_000, 'Updates between evaluations (0: no evaluation).')
    eval_episodes: int = setting(EVAL_EPISODES, 'Evaluation episodes per member.')
    eval_workers: int = setting(0, 'Processes stepping the evaluation environments (0: one per core).')
    eval_envs: int = setting(0, 'Evaluation environments alive at once, ~160 MB each (0: chosen from cores and '
                             'memory); results do not depend on it.')
    save_interval: int = setting(1_000_000, 'Updates between checkpoints (one is always saved at the end).')
    save_dir: str = setting('exp/', 'Where run directories are created.')
    run_group: str = setting('Debug', 'Sub-directory of save_dir for this run.')
    sparse: bool = setting(False, "Sparse rewards: -1 unless the task is fully solved (the Q-chunking repository's "
                           '--sparse, github.com/ColinQiyangLi/qc; the FQL repository has no such flag).')
    dataset_path: str | None = setting(None, 'Explicit dataset file: an OGBench .npz (its -val.npz beside it is used if '
                                       'present) or a D4RL .hdf5.')
    dataset_dir: str | None = setting(None, 'Dataset directory, official file names (default: ~/.ogbench/data for '
                                      'OGBench; $D4RL_DATASET_DIR or ~/.d4rl/datasets for D4RL files; Minari datasets '
                                      'live in $MINARI_DATASETS_PATH), or a directory of OGBench shards (several *.npz '
                                      'besides *-val.npz: streamed within a memory bound); --ogbench_dataset_dir is '
                                      'the same flag.')
    dataset_replace_interval: int = setting(1000, 'With a --dataset_dir of shards: offline updates between two swaps '
                                            'of the oldest shard in memory for the next one (0: never swap), as in '
                                            'the horizon-reduction and Q-chunking code.')
    shard_window: int = setting(0, 'With a --dataset_dir of shards: shards in memory at once (0: the most that half '
                                'the free memory holds); a resumed run keeps the number it chose.')
    dataset_episodes: int | None = setting(None, 'Build and use a reduced dataset of this many episodes.')
    dataset_workers: int | None = setting(None, 'Worker processes for local dataset generation (default: all cores).')
    frame_stack: int | None = setting(None, 'Pixel observations (visual-* environments): frames stacked per '
                                      'observation (default: 1).')
    p_aug: float | None = setting(None, 'Pixel observations: probability that a training batch is randomly '
                                  'cropped (default: 0).')
    member_execution: str = setting('auto', 'How the members on one device run: vmap (batched; accelerators), map '
                                    '(one after another; CPUs), auto (map on CPU, vmap elsewhere).',
                                    choices=MEMBER_EXECUTIONS)
    success_timing: str | None = setting(None, "When OGBench computes success and reward: 'pre' (before the step; "
                                         "the default of ogbench >= 1.2) or 'post' (after it; ogbench 1.1.0, as in "
                                         "the FQL paper). Default: OGBench's own.")
    report: bool = setting(True, "Write the run's tables and plots to RUN_DIR/report/ at the end "
                           '(python -m flowrl.results.report).')
    logger: str = setting('csv', 'Loggers, comma-separated: csv (always on), tensorboard, wandb (pip install -e '
                          '".[tensorboard]" / ".[wandb]"); a missing package or service costs one warning, never '
                          'the run.')
    wandb_mode: str = setting('offline', 'W&B mode (--logger=wandb).', choices=WANDB_MODES)


def _base_type(annotation):
    """int for `int` and `int | None`, and so on."""
    return next((t for t in typing.get_args(annotation) if t is not type(None)), annotation)


# What --resume lets a user change: the length of the run, and where and how fast things run.
RESUME_CHANGES = ('offline_steps', 'eval_envs', 'eval_workers', 'dataset_dir', 'dataset_workers', 'report', 'logger',
                  'wandb_mode')


def setting_flag_names() -> list[str]:
    """The RunSettings fields that are flags, in their order."""
    return [field.name for field in dataclasses.fields(RunSettings) if field.metadata.get('flag', True)]


def define_flags(flag_values: flags.FlagValues, module_name: str) -> list[str]:
    """Defines in the registry `flag_values` one absl flag per RunSettings field (its default, help
    and type) as flags of the module `module_name` (what --help lists and what the module's flag
    lookups find); returns their names."""
    fields = {field.name: field for field in dataclasses.fields(RunSettings)}
    for name in setting_flag_names():
        field = fields[name]
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        help_text, kind = field.metadata['help'], _base_type(field.type)
        where = dict(flag_values=flag_values, module_name=module_name)
        if 'choices' in field.metadata:
            flags.DEFINE_enum(name, default, list(field.metadata['choices']), help_text, **where)
        else:
            define = {list: flags.DEFINE_multi_string, bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                      float: flags.DEFINE_float, str: flags.DEFINE_string}[kind]
            define(name, default, help_text, **where)
    return setting_flag_names()


def settings_from_values(values: dict, agent_overrides: dict) -> RunSettings:
    """RunSettings from flag values (name -> value) and the raw --agent.KEY=VALUE overrides."""
    names = {f.name for f in dataclasses.fields(RunSettings)} - {'agent_overrides'}
    return RunSettings(**{k: v for k, v in values.items() if k in names}, agent_overrides=dict(agent_overrides))


def task_settings(s: RunSettings) -> TaskSettings:
    """What the run's task reads of its settings (flowrl.suites.options.TaskSettings: fields of the
    same names as RunSettings')."""
    return TaskSettings(**{field.name: getattr(s, field.name) for field in dataclasses.fields(TaskSettings)})


def check_settings(s: RunSettings) -> None:
    """Refuses bad values in one sentence (what needs the task: flowrl.suites.check_settings)."""
    positive = dict(log_interval=s.log_interval, num_seeds=s.num_seeds, buffer_size=s.buffer_size,
                    horizon_length=s.horizon_length)
    non_negative = dict(offline_steps=s.offline_steps, online_steps=s.online_steps, eval_interval=s.eval_interval,
                        eval_episodes=s.eval_episodes, save_interval=s.save_interval,
                        dataset_replace_interval=s.dataset_replace_interval, shard_window=s.shard_window)
    automatic = dict(eval_workers='one per core', eval_envs='chosen from cores and memory')
    for name, value in positive.items():
        if value <= 0:
            raise UserError(f'--{name} must be a positive integer, got {value}.')
    for name, value in non_negative.items():
        if value < 0:
            raise UserError(f'--{name} must be zero (off) or a positive integer, got {value}.')
    for name, meaning in automatic.items():
        if getattr(s, name) < 0:
            raise UserError(f'--{name} must be zero ({meaning}) or a positive integer, got {getattr(s, name)}.')
    if s.offline_steps + s.online_steps == 0:
        raise UserError('--offline_steps and --online_steps are both 0: there is nothing to train.')
    if s.horizon_length < 1:
        raise UserError(f'--horizon_length must be a positive integer, got {s.horizon_length}.')
    if s.balanced_sampling not in (0, 1):
        raise UserError(f'--balanced_sampling must be 0 or 1, got {s.balanced_sampling}.')
    if s.restore_epoch is not None and s.restore_path is None:
        raise UserError('--restore_epoch needs --restore_path (the run directory to start from).')
    if s.restore_schedule not in RESTORE_SCHEDULES:
        raise UserError(f'--restore_schedule must be one of {", ".join(RESTORE_SCHEDULES)}, got {s.restore_schedule!r}.')
    if s.restore_schedule != 'continue' and s.restore_path is None:
        raise UserError(f'--restore_schedule={s.restore_schedule} needs --restore_path (the run directory to start from).')
    if s.seed < 0:
        raise UserError(f'--seed must be a non-negative integer, got {s.seed}.')
    if s.dataset_episodes is not None and s.dataset_episodes <= 0:
        raise UserError(f'--dataset_episodes must be a positive integer, got {s.dataset_episodes}.')
    if s.frame_stack is not None and s.frame_stack < 1:
        raise UserError(f'--frame_stack must be a positive integer, got {s.frame_stack}.')
    if s.p_aug is not None and not 0.0 <= s.p_aug <= 1.0:
        raise UserError(f'--p_aug must be a probability in [0, 1], got {s.p_aug}.')
    parse_loggers(s.logger)
    if s.wandb_mode not in WANDB_MODES:
        raise UserError(f'--wandb_mode must be one of {", ".join(WANDB_MODES)}, got {s.wandb_mode!r}.')


@dataclasses.dataclass
class Members:
    """The independent runs trained side by side: one per (sweep point, seed)."""
    configs: list  # resolved agent config per member
    labels: list  # dict(member=i, seed=s, **swept values) per member

    @property
    def seeds(self):
        return [label['seed'] for label in self.labels]



def fit_schedules(agent, members: Members, first_step: int, last_step: int, log=print) -> Members:
    """The members' configs with their step schedules fitted to the agent steps this run trains,
    `first_step` to `last_step`: the optional contract hook `fit_schedule(config, first_step,
    last_step) -> {key: value}` returns the values it changes (e.g. QIPO's phase lengths, scaled
    when asked) or refuses, in one sentence, a schedule whose parts would not happen."""
    fit = contract.hook(agent, 'fit_schedule')
    if fit is None:
        return members
    configs, changed = [], {}
    for config in members.configs:
        changes = fit(config, first_step, last_step)
        fitted = config.copy_and_resolve_references()
        for key, value in changes.items():
            fitted[key] = value
        configs.append(fitted)
        changed.update(changes)
    if changed:
        log(f'Schedule fitted to agent steps {first_step:,}-{last_step:,}: '
            + ', '.join(f'{k}={v}' for k, v in changed.items()))
    return Members(configs, members.labels)



def unpublished_line(keys: list, config, family: str, preset_name: str) -> str:
    """The first-screen line of a run whose key values (configs/<agent>.py's KEY_VALUES) have no
    published value for its task: which defaults stand in, and how to pass the paper's values."""
    plural = len(keys) > 1
    return (f'No published {", ".join(keys)} for {family} (configs/{preset_name}.py): the agent '
            f'default{"s" if plural else ""} {", ".join(f"{k}={config[k]}" for k in keys)} '
            f'appl{"y" if plural else "ies"}, not a value the paper ran here; pass '
            f'{" ".join(f"--agent.{k}=VALUE" for k in keys)} to set {"them" if plural else "it"}.')


def with_horizon(config, agent, s: RunSettings):
    """`config` with the run's --horizon_length, for an agent that trains on sequences
    (flowrl.kit.chunking); any other agent takes only 1."""
    if not chunking.takes_horizon(agent):
        if s.horizon_length != 1:
            raise UserError(f'{s.agent} does not train on action chunks, so --horizon_length must be 1 (got '
                            f'{s.horizon_length}); agents that do: agents/acfql.py.')
        return config
    if chunking.HORIZON_KEY in s.agent_overrides:
        raise UserError(f'The horizon is a run flag: use --horizon_length={s.agent_overrides[chunking.HORIZON_KEY]} '
                        f'instead of --agent.{chunking.HORIZON_KEY}.')
    config[chunking.HORIZON_KEY] = s.horizon_length
    return config


def resolve_members(s: RunSettings, agent, task, log=print) -> Members:
    """Agent config = defaults <- env presets <- command-line overrides (and --horizon_length);
    then the sweep grid x seeds."""
    source = s.agent
    config = with_horizon(apply_overrides(agent.get_config(), s.agent_overrides, source), agent, s)
    sweeps = parse_sweeps(s.sweep, config, agent.DYNAMIC_KEYS, source)
    keep = set(s.agent_overrides) | {key for key, _ in sweeps}
    preset_name = presets_name(config, s.agent)
    applied = apply_presets(config, presets_for(preset_name, task, online=s.online_steps > 0), keep)
    check_config(config, source)
    if applied:
        log(f'Presets for {task.family} (configs/{preset_name}.py): '
            + ', '.join(f'{k}={v}' for k, v in applied.items()))
    unpublished = [k for k in unpublished_key_values(preset_name, task, online=s.online_steps > 0)
                   if k not in keep and k in config]
    if unpublished:
        log(unpublished_line(unpublished, config, task.family, preset_name))
    configs, labels = [], []
    for point in sweep_grid(sweeps):
        for offset in range(s.num_seeds):
            member_config = apply_overrides(config, {}, source)
            for key, value in point.items():
                member_config[key] = value
            configs.append(member_config)
            labels.append(dict(member=len(labels), seed=s.seed + offset, **point))
    return Members(configs, labels)


