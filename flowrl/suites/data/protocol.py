"""The published OGBench collection protocol, as a table, and dataset-name parsing.

Everything the generator needs to know about a dataset (environment, number of episodes,
steps per episode, oracle kind, random-action probability, cube stacking probability) is
decided here, from the facts in docs/DATA.md, so that the collection loops in
`manipulation.py` and `pointmaze.py` stay free of per-dataset special cases.

Names:
- an *env name* is what the user trains on, e.g. ``cube-double-play-singletask-task2-v0``;
- a *dataset name* is the file it reads, e.g. ``cube-double-play-v0`` (OGBench drops the
  ``singletask`` and ``taskN`` words);
- a *reduced* dataset built with ``episodes=N`` is stored as ``<dataset>-ep<N>``, e.g.
  ``cube-double-play-v0-ep4.npz``, a name OGBench never publishes, so it cannot be
  mistaken for the official file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from flowrl.suites.ogbench_envs import VISUAL_PREFIX, is_visual, state_twin
from flowrl.errors import UserError

# OGBench's own default (ogbench.make_env_and_datasets): where every dataset command and run looks
# for, downloads and generates files unless --dataset_dir says otherwise.
DEFAULT_DATASET_DIR = "~/.ogbench/data"

OFFICIAL_URL = "https://rail.eecs.berkeley.edu/datasets/ogbench"

MANIPULATION_FAMILIES = ("cube", "scene", "puzzle")
EXPERT_POLICY_PREFIXES = ("antmaze", "humanoidmaze", "antsoccer")

# Manipulation: (variant, dataset type) -> (episodes, p_random_action). 1001 steps each.
_MANIPULATION_TABLE = {
    ("cube", "single", "play"): (1000, 0.0),
    ("cube", "double", "play"): (1000, 0.0),
    ("cube", "triple", "play"): (3000, 0.0),
    ("cube", "quadruple", "play"): (5000, 0.0),
    ("cube", "single", "noisy"): (1000, 0.1),
    ("cube", "double", "noisy"): (1000, 0.1),
    ("cube", "triple", "noisy"): (3000, 0.1),
    ("cube", "quadruple", "noisy"): (5000, 0.1),
    ("scene", "", "play"): (1000, 0.0),
    ("scene", "", "noisy"): (1000, 0.1),
    ("puzzle", "3x3", "play"): (1000, 0.0),
    ("puzzle", "4x4", "play"): (1000, 0.0),
    ("puzzle", "4x5", "play"): (3000, 0.0),
    ("puzzle", "4x6", "play"): (5000, 0.0),
    ("puzzle", "3x3", "noisy"): (1000, 0.2),
    ("puzzle", "4x4", "noisy"): (1000, 0.2),
    ("puzzle", "4x5", "noisy"): (3000, 0.2),
    ("puzzle", "4x6", "noisy"): (5000, 0.2),
}
MANIPULATION_STEPS = 1001

# Pointmaze: (maze, dataset type) -> (episodes, steps per episode).
_POINTMAZE_TABLE = {
    ("medium", "navigate"): (1000, 1001),
    ("large", "navigate"): (1000, 1001),
    ("teleport", "navigate"): (1000, 1001),
    ("giant", "navigate"): (500, 2001),
    ("medium", "stitch"): (5000, 201),
    ("large", "stitch"): (5000, 201),
    ("giant", "stitch"): (5000, 201),
    ("teleport", "stitch"): (5000, 201),
}
POINTMAZE_ACTION_NOISE = 0.5
POINTMAZE_STITCH_DISTANCE = 4

# Per-episode noise scale for noisy manipulation data: xi ~ U(0, 0.1), and the action noise
# std is xi times these factors (yaw and gripper get larger noise, as published).
NOISY_XI_MAX = 0.1
NOISY_STD_FACTORS = np.array([1.0, 1.0, 1.0, 3.0, 10.0])

# Cube stacking probability, drawn once per episode: uniform bounds per cube count.
_STACK_PROBABILITY_BOUNDS = {
    "single": (0.0, 0.0),
    "double": (0.0, 0.25),
    "triple": (0.05, 0.35),
    "quadruple": (0.1, 0.5),
    "octuple": (0.0, 0.35),
}
DEFAULT_STACK_PROBABILITY = 0.5

# Rough single-process throughput and compressed bytes per stored step, measured on the 2-core
# CPU dev machine (mujoco 4.0.0) with benchmarks/data_generation.py and small generated files;
# used only for the "expected size and time" announcement before generating.
_APPROX_STEPS_PER_SEC = {"cube": 270.0, "scene": 240.0, "puzzle": 200.0, "pointmaze": 3000.0}
_APPROX_BYTES_PER_STEP = {"cube": 300.0, "scene": 290.0, "puzzle": 300.0, "pointmaze": 40.0}

_REDUCED_SUFFIX = re.compile(r"^(?P<base>.+-v\d+)-ep(?P<episodes>\d+)$")


@dataclass(frozen=True)
class DatasetSpec:
    """How one OGBench dataset was collected (and how we regenerate it)."""

    name: str  # dataset name, e.g. 'cube-double-play-v0'
    env_id: str  # goal-conditioned env used for collection, e.g. 'cube-double-v0'
    family: str  # 'cube' | 'scene' | 'puzzle' | 'pointmaze'
    variant: str  # 'double', '3x3', 'medium', or '' for scene
    dataset_type: str  # 'play' | 'noisy' | 'navigate' | 'stitch'
    episodes: int  # training episodes of the full dataset
    steps_per_episode: int
    p_random_action: float

    @property
    def val_episodes(self) -> int:
        return self.episodes // 10

    @property
    def has_button_states(self) -> bool:
        return self.family in ("scene", "puzzle")

    @property
    def approx_steps_per_sec(self) -> float:
        return _APPROX_STEPS_PER_SEC[self.family]

    @property
    def approx_bytes_per_step(self) -> float:
        return _APPROX_BYTES_PER_STEP[self.family]


def dataset_name_for_env(env_name: str) -> str:
    """'cube-double-play-singletask-task2-v0' -> 'cube-double-play-v0' (OGBench's own rule)."""
    words = env_name.split("-")
    if "singletask" not in words:
        raise UserError(
            f"'{env_name}' is not an OGBench single-task environment name; "
            "pass one such as 'cube-double-play-singletask-task1-v0'."
        )
    position = words.index("singletask")
    return "-".join(words[:position] + words[-1:])


def singletask_env_id(env_name: str) -> str:
    """'cube-double-play-singletask-task2-v0' -> 'cube-double-singletask-task2-v0'."""
    words = env_name.split("-")
    position = words.index("singletask")
    return "-".join(words[: position - 1] + words[position:])


def collection_env_id(dataset_name: str) -> str:
    """'cube-double-play-v0' -> 'cube-double-v0' (drop the dataset type word)."""
    words = dataset_name.split("-")
    return "-".join(words[:-2] + words[-1:])


def reduced_dataset_name(dataset_name: str, episodes: int) -> str:
    """Name of a reduced dataset; OGBench never publishes names ending in '-ep<N>'."""
    return f"{dataset_name}-ep{episodes}"


def split_reduced_name(file_stem: str) -> tuple[str, int | None]:
    """'cube-double-play-v0-ep4' -> ('cube-double-play-v0', 4); official names -> (name, None)."""
    match = _REDUCED_SUFFIX.match(file_stem)
    if match is None:
        return file_stem, None
    return match.group("base"), int(match.group("episodes"))


def needs_expert_policies(dataset_name: str) -> bool:
    return dataset_name.split("-")[0] in EXPERT_POLICY_PREFIXES


# OGBench registers a pixel twin of these families' environments ('visual-cube-single-v0'), so their
# visual datasets can be rendered from the state datasets (flowrl/making/render.py).
RENDERABLE_FAMILIES = MANIPULATION_FAMILIES
# OGBench registers its pixel environments at 64x64 (ogbench/manipspace/__init__.py: visual_dict).
VISUAL_FRAME_SHAPE = (64, 64, 3)


def find_render_source(dataset_name: str) -> DatasetSpec | None:
    """For a visual dataset flowrl can render, the protocol of the state dataset it is rendered
    from (same episodes, same seed); None for every other name."""
    if not is_visual(dataset_name):
        return None
    spec = find_spec(state_twin(dataset_name))
    return spec if spec is not None and spec.family in RENDERABLE_FAMILIES else None


def needs_download(dataset_name: str) -> bool:
    """A dataset OGBench publishes that flowrl cannot build: collected with expert policies, or its
    rendered twin."""
    return needs_expert_policies(dataset_name) or (
        is_visual(dataset_name) and needs_expert_policies(state_twin(dataset_name)))


def can_produce(dataset_name: str) -> bool:
    """Whether flowrl builds this dataset locally (generated with the oracles, or rendered)."""
    return find_spec(dataset_name) is not None or find_render_source(dataset_name) is not None


def find_spec(dataset_name: str) -> DatasetSpec | None:
    """The protocol for a dataset we can generate, or None if it is not in the table."""
    words = dataset_name.split("-")
    if len(words) < 3 or words[-1] != "v0":
        return None
    family, dataset_type = words[0], words[-2]
    variant = "-".join(words[1:-2])
    collection = _collection(family, variant, dataset_type)
    if collection is None:
        return None
    episodes, steps_per_episode, p_random_action = collection
    return DatasetSpec(name=dataset_name, env_id=collection_env_id(dataset_name), family=family, variant=variant,
                       dataset_type=dataset_type, episodes=episodes, steps_per_episode=steps_per_episode,
                       p_random_action=p_random_action)


def _collection(family: str, variant: str, dataset_type: str) -> tuple | None:
    """(episodes, steps per episode, probability of a random action) of a dataset in the tables."""
    if family in MANIPULATION_FAMILIES:
        entry = _MANIPULATION_TABLE.get((family, variant, dataset_type))
        return None if entry is None else (entry[0], MANIPULATION_STEPS, entry[1])
    if family == "pointmaze":
        entry = _POINTMAZE_TABLE.get((variant, dataset_type))
        return None if entry is None else (entry[0], entry[1], 0.0)
    return None


def generable_dataset_names() -> list[str]:
    names = []
    for family, variant, dataset_type in _MANIPULATION_TABLE:
        middle = f"{family}-{variant}" if variant else family
        names.append(f"{middle}-{dataset_type}-v0")
    for maze, dataset_type in _POINTMAZE_TABLE:
        names.append(f"pointmaze-{maze}-{dataset_type}-v0")
    return names


def require_spec(dataset_name: str, dataset_dir: str = DEFAULT_DATASET_DIR) -> DatasetSpec:
    """The protocol for `dataset_name`, or a UserError that says why it cannot be generated."""
    spec = find_spec(dataset_name)
    if spec is not None:
        return spec
    if needs_expert_policies(dataset_name):
        raise UserError(expert_policy_message(dataset_name, dataset_dir))
    if needs_download(dataset_name):
        raise UserError(
            f"'{dataset_name}' holds rendered images of a dataset that cannot be generated here (only cube, scene "
            f"and puzzle datasets are rendered locally): download "
            f"{dataset_name}.npz and {dataset_name}-val.npz from {OFFICIAL_URL}/ on a machine with internet "
            f"and place both in {dataset_dir} (or pass --dataset_path)."
        )
    raise UserError(
        f"Unknown OGBench dataset '{dataset_name}'; use one of: {', '.join(generable_dataset_names())}, or "
        f"'{VISUAL_PREFIX}' followed by a cube, scene or puzzle one."
    )


def expert_policy_message(dataset_name: str, dataset_dir: str = DEFAULT_DATASET_DIR) -> str:
    return (
        f"'{dataset_name}' was collected with OGBench's expert policies, which are not distributed, so it "
        f"cannot be generated here: download {dataset_name}.npz and {dataset_name}-val.npz from "
        f"{OFFICIAL_URL}/ on a machine with internet and place both in {dataset_dir} (or pass --dataset_path)."
    )


def draw_stack_probability(spec: DatasetSpec, rng: np.random.Generator) -> float:
    """Per-episode probability that a new cube target is on top of another cube."""
    if spec.family == "cube":
        low, high = _STACK_PROBABILITY_BOUNDS[spec.variant]
        # Draw even when low == high so every cube variant consumes the same random numbers.
        return float(rng.uniform(low, high))
    return DEFAULT_STACK_PROBABILITY
