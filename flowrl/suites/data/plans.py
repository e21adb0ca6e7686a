"""What an OGBench dataset file of a given name holds, computable without making it: the
generation plan of a state dataset (the published protocol, or a reduced one) and the rendering
plan of a visual one. Loading checks generated files against them; flowrl.making makes the files
they describe (and prints their sizes and expected times before it does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flowrl.errors import UserError
from flowrl.suites.data.protocol import (VISUAL_FRAME_SHAPE, VISUAL_PREFIX, DatasetSpec, find_render_source,
                                         reduced_dataset_name, require_spec)


@dataclass(frozen=True)
class GenerationPlan:
    """What a generation run will produce, computable without running it."""

    spec: DatasetSpec
    file_stem: str  # '<dataset>' for the full protocol, '<dataset>-ep<N>' for a reduced one
    train_episodes: int
    val_episodes: int
    steps_per_episode: int

    @property
    def reduced(self) -> bool:
        return self.file_stem != self.spec.name

    @property
    def total_episodes(self) -> int:
        return self.train_episodes + self.val_episodes

    @property
    def train_steps(self) -> int:
        return self.train_episodes * self.steps_per_episode

    @property
    def val_steps(self) -> int:
        return self.val_episodes * self.steps_per_episode

    @property
    def total_steps(self) -> int:
        return self.train_steps + self.val_steps

    @property
    def train_transitions(self) -> int:
        """Transitions after loading: OGBench drops each episode's last observation."""
        return self.train_episodes * (self.steps_per_episode - 1)

    @property
    def val_transitions(self) -> int:
        return self.val_episodes * (self.steps_per_episode - 1)

    def approx_bytes(self) -> float:
        return self.total_steps * self.spec.approx_bytes_per_step

    def approx_seconds(self, workers: int) -> float:
        return self.total_steps / (self.spec.approx_steps_per_sec * max(1, workers))


def plan_generation(dataset_name: str, episodes: int | None = None, *, _steps_per_episode: int | None = None) -> GenerationPlan:
    """The published protocol for `dataset_name`, or a reduced one with `episodes` episodes.

    `_steps_per_episode` is a test-only override; such files get a name that says so.
    """
    spec = require_spec(dataset_name)
    steps = spec.steps_per_episode if _steps_per_episode is None else int(_steps_per_episode)
    if episodes is None:
        if _steps_per_episode is not None:
            raise UserError("A shortened episode length needs a reduced episode count.")
        return GenerationPlan(spec, spec.name, spec.episodes, spec.val_episodes, steps)
    if episodes < 1:
        raise UserError(f"The number of episodes must be at least 1, not {episodes}; pass a positive --dataset_episodes.")
    stem = reduced_dataset_name(spec.name, episodes)
    if _steps_per_episode is not None:
        stem = f"{stem}-test{steps}steps"
    return GenerationPlan(spec, stem, episodes, max(1, episodes // 10), steps)


# Frames per second of one rendering worker while every core renders (set_state + render at 64x64,
# MUJOCO_GL=egl through Mesa's llvmpipe on the 2-core CPU dev machine, mujoco 4.0.0): 1 / CPU-seconds
# per frame (0.23, 0.23, 0.25), since llvmpipe spreads one render over more than one core (a lone
# process reaches ~5.6 frames/s); and compressed bytes per stored row (frame ~1,600-2,200 + state
# arrays). From benchmarks/render_throughput.py; used only for the announcement before rendering.
_APPROX_FRAMES_PER_SEC = {"cube": 4.3, "scene": 4.4, "puzzle": 4.0}
_APPROX_BYTES_PER_FRAME = {"cube": 2100.0, "scene": 1900.0, "puzzle": 2500.0}


@dataclass(frozen=True)
class RenderPlan:
    """What rendering a visual dataset will produce, computable without rendering."""

    name: str  # the visual dataset, e.g. 'visual-cube-single-play-v0'
    state: GenerationPlan  # the state dataset it shows (full or reduced, as the visual name)

    @property
    def file_stem(self) -> str:
        return VISUAL_PREFIX + self.state.file_stem

    @property
    def render_env_id(self) -> str:
        """OGBench's pixel twin of the collection environment, e.g. 'visual-cube-single-v0'."""
        return VISUAL_PREFIX + self.state.spec.env_id

    @property
    def reduced(self) -> bool:
        return self.state.reduced

    @property
    def frames(self) -> int:
        return self.state.total_steps

    @property
    def frame_bytes(self) -> int:
        return math.prod(VISUAL_FRAME_SHAPE)

    def uncompressed_bytes(self) -> int:
        """The frames in memory once loaded (uint8)."""
        return self.frames * self.frame_bytes

    def approx_bytes(self) -> float:
        return self.frames * _APPROX_BYTES_PER_FRAME[self.state.spec.family]

    @property
    def approx_frames_per_sec(self) -> float:
        return _APPROX_FRAMES_PER_SEC[self.state.spec.family]

    def approx_seconds(self, workers: int) -> float:
        return self.frames / (self.approx_frames_per_sec * max(1, workers))


def plan_rendering(visual_name: str, episodes: int | None = None) -> RenderPlan:
    """The visual twin of `plan_generation(name without 'visual-', episodes)`, or a UserError that
    says why this name cannot be rendered."""
    spec = find_render_source(visual_name)
    if spec is None:
        require_spec(visual_name)  # raises the sentence that fits this name
    return RenderPlan(visual_name, plan_generation(spec.name, episodes))


