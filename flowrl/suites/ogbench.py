"""OGBench single-task environments as a benchmark suite (flowrl.suites).

Names, environments and success timing live in flowrl.suites.ogbench_envs; datasets (found, downloaded,
generated with OGBench's oracles or rendered) in flowrl.suites.data. The score of an episode is
OGBench's `info['success']`, and a run's final score the mean success of its last three
evaluations (the FQL paper's protocol).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from flowrl.suites import ogbench_envs as envs
from flowrl.errors import UserError
from flowrl.suites.options import Option, TaskSettings
from flowrl.suites.transitions import LoadedData, as_float32

SUITE = 'ogbench'
OGBENCH = 'OGBench environments'
PIXELS = 'pixel observations (visual-* environments)'
# The options only OGBench's tasks accept (flowrl.suites.options); the pixel ones only its visual-* tasks.
OPTIONS = (
    Option('sparse', OGBENCH, 'rewards -1 unless the task is fully solved (the Q-chunking repository\'s --sparse)'),
    Option('success_timing', OGBENCH, 'when OGBench computes success and reward: before or after the step'),
    Option('dataset_episodes', OGBENCH, 'a reduced dataset of this many episodes, generated with OGBench\'s oracles'),
    Option('dataset_workers', OGBENCH, 'worker processes of that generation'),
    Option('frame_stack', PIXELS, 'frames stacked per observation'),
    Option('p_aug', PIXELS, 'probability that a training batch is randomly cropped'),
)
PIXEL_OPTIONS = tuple(option.name for option in OPTIONS if option.applies_to == PIXELS)


@dataclasses.dataclass(frozen=True)
class OGBenchTask:
    spec: envs.EnvSpec
    suite: str = SUITE
    metric: str = 'success'

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def short_name(self) -> str:
        return self.spec.short_name

    @property
    def display_name(self) -> str:
        """The short name users type (cube-double-play, cube-double-play-task3)."""
        return self.spec.short_name

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def task_number(self) -> int | None:
        return self.spec.task

    @property
    def pixels(self) -> bool:
        return envs.is_visual(self.spec.family)

    def canonical(self) -> 'OGBenchTask':
        return OGBenchTask(self.spec.canonical())

    # -- presets --------------------------------------------------------------------------
    @staticmethod
    def preset_tables(online: bool) -> tuple:
        return ('PRESETS', 'ONLINE_PRESETS') if online else ('PRESETS',)

    @property
    def preset_keys(self) -> tuple:
        task = () if self.spec.task is None else (f'{self.spec.family}-task{self.spec.task}',)
        return (self.spec.family,) + task

    # -- settings -------------------------------------------------------------------------
    @property
    def accepted_options(self) -> tuple:
        """OGBench's options (OPTIONS); the pixel ones only with pixel observations."""
        return tuple(option.name for option in OPTIONS if self.pixels or option.name not in PIXEL_OPTIONS)

    @property
    def option_subject(self) -> str:
        return self.short_name

    def check_settings(self, s: TaskSettings, configs) -> None:
        """Pixel observations need an image encoder and stay offline; success timing must be one
        OGBench knows. (Options the task does not accept: flowrl.suites.check_settings.)"""
        if self.pixels and any(config.get('encoder') is None for config in configs):
            raise UserError(f'{self.short_name} has pixel observations, which need an image encoder: pass '
                            '--agent.encoder=impala_small.')
        if not self.pixels and any(config.get('encoder') is not None for config in configs):
            raise UserError(f'--agent.encoder applies to pixel observations (visual-* environments), not to '
                            f'{self.short_name}; leave it out.')
        if self.pixels and s.online_steps:
            raise UserError('Online fine-tuning is not supported with pixel observations yet; use --online_steps=0.')
        envs.resolve_success_timing(self.spec, s.success_timing)

    # -- data -----------------------------------------------------------------------------
    def load(self, s: TaskSettings, log=print) -> LoadedData:
        from flowrl.suites.data import load_singletask_data

        data = load_singletask_data(self.spec.name, dataset_path=s.dataset_path, dataset_dir=s.dataset_dir,
                                    dataset_episodes=s.dataset_episodes, workers=s.dataset_workers,
                                    frame_stack=s.frame_stack or 1, log=log)
        return LoadedData(data.train, data.val, data.source, dict(source=data.source))

    def shards(self, s: TaskSettings, log=print):
        """The dataset as shards (flowrl.suites.data.shards.Shards) when --dataset_dir holds it so
        (OGBench's 100M/1B layout: `*.npz` shards of whole episodes and a `-val.npz`); None otherwise."""
        from flowrl.suites.data import shards
        from flowrl.suites.data.protocol import dataset_name_for_env, singletask_env_id

        if s.dataset_path is not None or not shards.is_shard_directory(s.dataset_dir, dataset_name_for_env(self.name)):
            return None
        if self.pixels:
            raise UserError(f'{self.short_name} has pixel observations, which are not streamed from shards yet; '
                            'pass a single dataset file.')
        if s.dataset_episodes is not None:
            raise UserError(f'--dataset_episodes reduces a single dataset file and {s.dataset_dir} holds shards; '
                            'leave it out.')
        from flowrl.suites.data.loading import read_shard

        files = tuple(str(path) for path in shards.shard_files(s.dataset_dir))
        val_file = shards.validation_file(s.dataset_dir)
        read = functools.partial(read_shard, singletask_env_id(self.spec.name))
        val = None if val_file is None else read(str(val_file))
        source = f'{len(files)} shards in {s.dataset_dir}' + ('' if val_file else ' (no -val.npz: no validation)')
        return shards.Shards(files, val, read, source, dict(source=source, shards=len(files),
                                                             shard_names=[p.rsplit('/', 1)[-1] for p in files]))

    def reward_function(self, s: TaskSettings):
        """The run's rewards from OGBench's, for the dataset and for online transitions alike."""
        return sparse_rewards if s.sparse else as_float32

    # -- evaluation -----------------------------------------------------------------------
    def env_factory(self, s: TaskSettings, data_record: dict | None = None):
        """A picklable () -> evaluation env with the run's success timing (whatever file was read)."""
        return functools.partial(envs.make_env, self.spec,
                                 success_timing=envs.resolve_success_timing(self.spec, s.success_timing),
                                 frame_stack=s.frame_stack or 1)

    @staticmethod
    def episode_scores(returns, successes):
        return np.asarray(successes, np.float64)

    def description(self, s: TaskSettings) -> dict:
        """What decides how success is counted (docs/ALGORITHMS.md, "Evaluation timing")."""
        return dict(suite=SUITE, metric=self.metric, ogbench_version=envs.ogbench_version(),
                    success_timing=envs.resolve_success_timing(self.spec, s.success_timing))


def sparse_rewards(rewards):
    """--sparse of the Q-chunking repository (github.com/ColinQiyangLi/qc; the FQL repository has
    no such flag): -1 on every step that is not fully successful, 0 otherwise."""
    return (np.asarray(rewards) != 0.0).astype(np.float32) * -1.0


def parse(name: str) -> OGBenchTask | None:
    """The task of an OGBench singletask name; None for a name that is not OGBench's (a D4RL
    name, a Minari id, a typo: flowrl.suites.resolve then offers the nearest names of every
    suite); a UserError for an OGBench name it refuses (a task its environment lacks)."""
    if not envs.looks_like_ogbench(name):
        return None
    return OGBenchTask(envs.parse_env_name(name))


def known_names() -> tuple:
    return envs.DATASET_FAMILIES
