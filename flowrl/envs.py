"""OGBench singletask environment names and construction.

Accepted names: the full OGBench name (`cube-double-play-singletask-task2-v0`,
`cube-double-play-singletask-v0` for the default task) or the short forms
`cube-double-play` (default task) and `cube-double-play-task3`.
"""

import dataclasses
import re

import gymnasium

from flowrl.errors import UserError

_FULL = re.compile(r'^(?P<family>[a-z0-9-]+?)-singletask(?:-task(?P<task>\d+))?-v0$')
_SHORT = re.compile(r'^(?P<family>[a-z0-9-]+?)(?:-task(?P<task>\d+))?$')


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    family: str  # dataset family, e.g. 'cube-double-play' (the key of configs/ presets)
    task: int | None  # None: OGBench's default task for the environment

    @property
    def name(self) -> str:
        """Full OGBench singletask name (what ogbench.make_env_and_datasets takes)."""
        task = '' if self.task is None else f'-task{self.task}'
        return f'{self.family}-singletask{task}-v0'

    @property
    def env_id(self) -> str:
        """Gymnasium id of the environment (the dataset type is not part of it)."""
        task = '' if self.task is None else f'-task{self.task}'
        return f'{self.family.rsplit("-", 1)[0]}-singletask{task}-v0'

    @property
    def dataset_name(self) -> str:
        """OGBench dataset file stem, e.g. 'cube-double-play-v0'."""
        return f'{self.family}-v0'

    @property
    def short_name(self) -> str:
        return self.family if self.task is None else f'{self.family}-task{self.task}'


def parse_env_name(name: str) -> EnvSpec:
    """Resolves a full or short singletask name; raises UserError for anything OGBench lacks."""
    import ogbench  # noqa: F401  (registers the environments with gymnasium)

    match = _FULL.match(name) or _SHORT.match(name)
    if match is None or '-' not in match['family']:
        raise UserError(f'Unknown environment {name!r}: expected an OGBench singletask name such as '
                        'cube-double-play, cube-double-play-task3 or cube-double-play-singletask-task3-v0.')
    spec = EnvSpec(match['family'], int(match['task']) if match['task'] else None)
    if spec.env_id not in gymnasium.registry:
        raise UserError(f'Unknown environment {name!r}: OGBench has no singletask environment {spec.env_id!r}.')
    return spec


SUCCESS_TIMINGS = ('pre', 'post')


def ogbench_version() -> str:
    import importlib.metadata

    return importlib.metadata.version('ogbench')


def default_success_timing(spec: EnvSpec) -> str:
    """When OGBench computes a singletask step's success, reward and termination by default:
    'pre' (before the action is applied; ogbench >= 1.2 registers this) or 'post' (after it;
    ogbench 1.1.0, the version of the FQL paper, which has no such option)."""
    import ogbench  # noqa: F401

    return gymnasium.spec(spec.env_id).kwargs.get('success_timing', 'post')


def resolve_success_timing(spec: EnvSpec, requested: str | None) -> str:
    """`requested` ('pre' | 'post'), or OGBench's default for the environment when None."""
    if requested is None:
        return default_success_timing(spec)
    if requested not in SUCCESS_TIMINGS:
        raise UserError(f"--success_timing must be 'pre' or 'post', got {requested!r}.")
    if 'success_timing' not in gymnasium.spec(spec.env_id).kwargs and requested != 'post':
        raise UserError(f'ogbench {ogbench_version()} has no success_timing option (it always computes '
                        "success after the step): use --success_timing=post or leave it unset.")
    return requested


def make_env(spec: EnvSpec, success_timing: str | None = None, **kwargs):
    """One evaluation environment (gymnasium, with OGBench's own time limit); `success_timing`
    ('pre' | 'post') overrides OGBench's default (None keeps it)."""
    import ogbench  # noqa: F401

    if success_timing is not None and success_timing != default_success_timing(spec):
        kwargs['success_timing'] = success_timing  # passed only when it changes something (ogbench 1.1 lacks it)
    return gymnasium.make(spec.env_id, **kwargs)
