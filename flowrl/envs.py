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


def make_env(spec: EnvSpec, **kwargs):
    """One evaluation environment (gymnasium, with OGBench's own time limit)."""
    import ogbench  # noqa: F401

    return gymnasium.make(spec.env_id, **kwargs)
