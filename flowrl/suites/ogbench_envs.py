"""OGBench singletask environment names and construction.

Accepted names: the full OGBench name (`cube-double-play-singletask-task2-v0`,
`cube-double-play-singletask-v0` for the default task) or the short forms
`cube-double-play` (default task) and `cube-double-play-task3`. The dataset family
(`cube-double-play`) must be one OGBench publishes and the task one its environment registers,
so a typo fails with the nearest names instead of training on something else.
"""

import dataclasses
import difflib
import re
import warnings

import gymnasium
import numpy as np

from flowrl.errors import UserError

VISUAL_PREFIX = 'visual-'  # the pixel twin of a family: 'visual-cube-single-play'

# The dataset families OGBench publishes (its README: 85 datasets; powderworld's 3 have no
# single-task version). ogbench registers environments but lists no datasets, hence this table:
# (environments, dataset types), each environment also with a 'visual-' twin where marked.
_PUBLISHED = (
    (('pointmaze-medium', 'pointmaze-large', 'pointmaze-giant', 'pointmaze-teleport'), ('navigate', 'stitch'), False),
    (('antmaze-medium', 'antmaze-large', 'antmaze-teleport'), ('navigate', 'stitch', 'explore'), True),
    (('antmaze-giant',), ('navigate', 'stitch'), True),
    (('humanoidmaze-medium', 'humanoidmaze-large', 'humanoidmaze-giant'), ('navigate', 'stitch'), True),
    (('antsoccer-arena', 'antsoccer-medium'), ('navigate', 'stitch'), False),
    (('cube-single', 'cube-double', 'cube-triple', 'cube-quadruple', 'scene',
      'puzzle-3x3', 'puzzle-4x4', 'puzzle-4x5', 'puzzle-4x6'), ('play', 'noisy'), True),
)
DATASET_FAMILIES = tuple(
    f'{prefix}{env}-{kind}'
    for envs, kinds, visual in _PUBLISHED for prefix in (('', VISUAL_PREFIX) if visual else ('',))
    for env in envs for kind in kinds)

# The task OGBench's `<family>-singletask-v0` stands for, where we know it (docs/ALGORITHMS.md,
# "Default task per environment"): `cube-double-play` and `cube-double-play-task2` are one task.
DEFAULT_TASKS = {
    'antmaze-large-navigate': 1, 'humanoidmaze-medium-navigate': 1, 'humanoidmaze-large-navigate': 1,
    'antsoccer-arena-navigate': 4, 'cube-single-play': 2, 'cube-double-play': 2, 'scene-play': 2,
    'puzzle-3x3-play': 4, 'puzzle-4x4-play': 4,
}


def is_visual(name: str) -> bool:
    """Whether an environment, family or dataset name is a pixel-observation one ('visual-...')."""
    return name.startswith(VISUAL_PREFIX)


def state_twin(visual_name: str) -> str:
    """'visual-cube-single-play-v0' -> 'cube-single-play-v0': the state name a visual name shows."""
    return visual_name.removeprefix(VISUAL_PREFIX)


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

    def canonical(self) -> 'EnvSpec':
        """The same task under one name: the family alone when it is the family's default task."""
        return EnvSpec(self.family, None) if self.task == DEFAULT_TASKS.get(self.family) else self

    @property
    def short_name(self) -> str:
        return self.family if self.task is None else f'{self.family}-task{self.task}'


def looks_like_ogbench(name: str) -> bool:
    """A full singletask name, or a short one whose family OGBench publishes."""
    short = _SHORT.match(name)
    return bool(_FULL.match(name)) or (short is not None and short['family'] in DATASET_FAMILIES)


def parse_env_name(name: str) -> EnvSpec:
    """Resolves a full or short singletask name; raises UserError for anything OGBench lacks."""
    import ogbench  # noqa: F401  (registers the environments with gymnasium)

    match = _FULL.match(name) or _SHORT.match(name)
    if match is None or '-' not in match['family']:
        raise UserError(f'Unknown environment {name!r}: expected an OGBench singletask name such as '
                        'cube-double-play, cube-double-play-task3 or cube-double-play-singletask-task3-v0.')
    spec = EnvSpec(match['family'], int(match['task']) if match['task'] else None)
    if spec.family not in DATASET_FAMILIES:
        raise UserError(f'Unknown environment {name!r}: OGBench publishes no dataset {spec.dataset_name!r}'
                        + _did_you_mean(spec.family, spec.task))
    if spec.env_id not in gymnasium.registry:
        tasks = [t for t in range(1, 10) if EnvSpec(spec.family, t).env_id in gymnasium.registry]
        first, last = (EnvSpec(spec.family, t).short_name for t in (tasks[0], tasks[-1]))
        raise UserError(f'Unknown environment {name!r}: OGBench registers tasks {tasks[0]} to {tasks[-1]} for '
                        f'{spec.family}; pass one of {first} to {last}, or {spec.family} for its default task.')
    return spec


def _did_you_mean(family: str, task: int | None) -> str:
    """The end of the sentence: the nearest published families (difflib), keeping the task."""
    close = difflib.get_close_matches(family, DATASET_FAMILIES, n=3, cutoff=0.6)
    if not close:
        return '; see the dataset list in the OGBench README.'
    names = [EnvSpec(c, task).short_name for c in close]
    return f'; did you mean {", ".join(names[:-1]) + " or " if len(names) > 1 else ""}{names[-1]}?'


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


def make_env(spec: EnvSpec, success_timing: str | None = None, frame_stack: int = 1, **kwargs):
    """One evaluation environment (gymnasium, with OGBench's own time limit); `success_timing`
    ('pre' | 'post') overrides OGBench's default (None keeps it); `frame_stack` > 1 stacks that
    many observations (pixel tasks)."""
    import ogbench  # noqa: F401

    if success_timing is not None and success_timing != default_success_timing(spec):
        kwargs['success_timing'] = success_timing  # passed only when it changes something (ogbench 1.1 lacks it)
    env = gym_make(spec.env_id, **kwargs)
    return FrameStack(env, frame_stack) if frame_stack > 1 else env


class FrameStack(gymnasium.Wrapper):
    """The last `num_frames` observations concatenated on the last (channel) axis, oldest first;
    a reset fills the stack with the first observation. This is how training batches stack a
    dataset's frames (flowrl.kit.pixels) and how the authors' code stacks them."""

    def __init__(self, env, num_frames: int):
        super().__init__(env)
        self.num_frames, self.frames = num_frames, []
        space = env.observation_space
        self.observation_space = gymnasium.spaces.Box(
            np.concatenate([space.low] * num_frames, axis=-1), np.concatenate([space.high] * num_frames, axis=-1),
            dtype=space.dtype)

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self.frames = [observation] * self.num_frames
        return self._stacked(), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.frames = self.frames[1:] + [observation]
        return self._stacked(), reward, terminated, truncated, info

    def _stacked(self):
        return np.concatenate(self.frames, axis=-1)


def gym_make(env_id: str, **kwargs):
    """`gymnasium.make` for an OGBench environment, without gymnasium's float64-bounds warning.

    OGBench's manipulation environments build their action space from float64 bounds on every
    read, their own resets included (ogbench/manipspace/envs/manipspace_env.py), and gymnasium
    warns that it casts them to float32 ("Box low's precision lowered by casting to float32").
    The cast is what we want and the source is not ours, so exactly that message, and only
    when gymnasium's Box issues it, is ignored from the first environment on.
    """
    import ogbench  # noqa: F401  (registers the environments)

    warnings.filterwarnings('ignore', message=r'.*Box (low|high)\'s precision lowered by casting to float32',
                            module=r'gymnasium\.spaces\.box')
    return gymnasium.make(env_id, **kwargs)
