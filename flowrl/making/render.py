"""Visual OGBench datasets, rendered from state datasets with OGBench's own pixel camera.

A visual dataset such as 'visual-cube-single-play-v0' (or a reduced 'visual-cube-single-play-v0-ep2')
is the state dataset of the same name without 'visual-' (same episodes, same seed) with
`observations` replaced by the 64x64x3 uint8 frames that OGBench's pixel environment
('visual-cube-single-v0': camera 'front_pixels', purple transparent arm, no task markers) shows
for each recorded state. Every other array (actions, terminals, qpos, qvel, button_states) is
copied unchanged, so the file has the official visual files' fields and row layout and
`ogbench.utils.load_dataset(path, ob_dtype=np.uint8)` reads it.

Which frame a recorded state gets (checked frame for frame against the environment's own pixel
observations, tests/test_render.py): OGBench collected its visual datasets in the pixel
environment itself, so each stored frame is the observation `reset` or `step` returned.
`set_state(qpos, qvel[, button_states])` + `render()` reproduces it, with one subtlety: MuJoCo's
mj_step computes body positions and then integrates qpos, so right after a step the bodies it
renders are one physics substep (2 ms) behind the qpos the step records, unless the environment
recomputes them (scene and puzzle do, in post_step; cube does not). For such environments every
frame but an episode's first (a reset, whose positions are current) is rendered at the qpos one
substep back (`mj_integratePos` with -timestep, exact for the implicit/Euler integrators).
Not bit-identical: state files store qpos/qvel as float32 (as OGBench's do), and rounding the
arm's joint angles to float32 moves some anti-aliased edge pixels by 1 to 3 levels of 255.

Files are written like generated ones (files.py): deterministic zip, metadata with sha256 (and
the source state file's sha256, the renderer, the plan), all four files staged under temporary
names and renamed together. Frames go straight into a uint8 memory map beside the output (a full
dataset is 12 GB), so memory stays flat; a stopped render keeps it, with the list of episodes it
holds, and the same command continues from there (a full dataset takes hours on a CPU).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowrl.suites.data import files
from flowrl.making.generate import Progress, format_duration, run_tasks, software_metadata
from flowrl.suites.data.plans import RenderPlan
from flowrl.suites.data.protocol import VISUAL_FRAME_SHAPE
from flowrl.errors import UserError

RENDER_VERSION = "1"

def describe_render_plan(plan: RenderPlan, workers: int, dataset_dir: str) -> str:
    """The announcement printed before rendering: what, from what, how big, how long."""
    shape = "x".join(str(size) for size in VISUAL_FRAME_SHAPE)
    return (
        f"Rendering {plan.file_stem} from {plan.state.file_stem} with OGBench's pixel camera ({plan.render_env_id}, "
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}): {plan.state.train_episodes} + {plan.state.val_episodes} "
        f"(val) episodes = {plan.frames:,} frames of {shape} uint8 ({plan.uncompressed_bytes() / 1e9:,.2f} GB once "
        f"loaded), about {plan.approx_bytes() / 1e6:,.0f} MB in {files.display_path(os.path.expanduser(dataset_dir))}, "
        f"expected to take about {format_duration(plan.approx_seconds(workers))} on {workers} worker(s) at "
        f"~{plan.approx_frames_per_sec:g} frames/s each."
    )


# ----------------------------------------------------------------------------- one state -> one frame


class StateRenderer:
    """OGBench's pixel environment for one dataset, showing recorded states as its observations."""

    def __init__(self, render_env_id: str):
        from flowrl.suites.ogbench_envs import gym_make

        # Without gymnasium's checker, which would reset (and render) once more.
        self.env = gym_make(render_env_id, terminate_at_goal=False, mode="data_collection", disable_env_checker=True)
        self.world = self.env.unwrapped
        frame, _ = self.env.reset(seed=0)
        self.frame_shape = frame.shape
        self.frames_lag_one_substep = step_leaves_positions_behind(self.env)

    def render(self, qpos, qvel, button_states=None, *, after_step: bool = True) -> np.ndarray:
        """The frame the environment returned in this state: from `step` (after_step) or `reset`."""
        import mujoco

        qpos, qvel = np.array(qpos, dtype=np.float64), np.array(qvel, dtype=np.float64)
        if after_step and self.frames_lag_one_substep:
            model = self.world.model
            mujoco.mj_integratePos(model, qpos, qvel, -model.opt.timestep)
        if button_states is None:
            self.world.set_state(qpos, qvel)
        else:
            self.world.set_state(qpos, qvel, np.asarray(button_states))
        return self.world.render()

    def render_rows(self, qpos, qvel, button_states=None, episode_starts=None) -> np.ndarray:
        """Frames for consecutive rows of a dataset; `episode_starts` marks the rows that are reset
        observations (default: the first row only, i.e. the rows of one episode)."""
        if episode_starts is None:
            episode_starts = np.arange(len(qpos)) == 0
        frames = np.empty((len(qpos),) + self.frame_shape, dtype=np.uint8)
        for row in range(len(qpos)):
            buttons = None if button_states is None else button_states[row]
            frames[row] = self.render(qpos[row], qvel[row], buttons, after_step=not episode_starts[row])
        return frames

    def close(self) -> None:
        self.env.close()


_LAG_TOLERANCE = 1e-9  # metres; one 2 ms substep at arm speeds moves bodies by ~1e-4 m


def step_leaves_positions_behind(env) -> bool:
    """Whether the frame `step` returns shows the bodies one physics substep before the recorded qpos.

    Asked of the environment (one step from where it is, e.g. just reset) instead of listed per
    family, so that a change in OGBench cannot silently make the frames differ from its observations.
    """
    import mujoco

    world = env.unwrapped
    model = world.model
    if model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4:
        raise NotImplementedError(f"{env.spec.id} integrates with RK4; replaying its frames is not supported")
    env.step(np.full(env.action_space.shape, 0.5, dtype=np.float32))
    data = world.data
    if not np.any(data.qvel):
        raise RuntimeError(f"a step of {env.spec.id} moved nothing, so it cannot show whether frames lag")
    current = mujoco.MjData(model)
    current.qpos[:], current.mocap_pos[:], current.mocap_quat[:] = data.qpos, data.mocap_pos, data.mocap_quat
    mujoco.mj_kinematics(model, current)
    return not np.allclose(current.xpos, data.xpos, rtol=0.0, atol=_LAG_TOLERANCE)


def _render_task(renderer: StateRenderer, task):
    split, start, qpos, qvel, button_states = task
    return split, start, renderer.render_rows(qpos, qvel, button_states)


# ----------------------------------------------------------------------------- files


@dataclass
class _Split:
    name: str  # 'train' | 'val'
    state: files.VerifiedFile
    arrays: dict[str, np.ndarray]  # every field but observations, in the file's order (None there)
    output: Path
    frames: np.ndarray | None = None


def _state_remedy(plan: RenderPlan, state_train_file: Path) -> str:
    command = files.cli_command("generate", plan.state.spec.name, plan.state.train_episodes if plan.reduced else None,
                                str(state_train_file.parent), " --force")
    return f"regenerate the state dataset with `{command}` (or replace the official file)"


def _verified_source(plan: RenderPlan, state_train_file: Path) -> tuple[files.VerifiedFile, files.VerifiedFile]:
    """The state train and -val files, verified, and holding what `plan` expects."""
    remedy = _state_remedy(plan, state_train_file)
    fields = files.required_fields(plan.state.spec.name)
    train = files.verify_dataset_file(state_train_file, fields, remedy)
    val = files.verify_dataset_file(files.val_path_for(state_train_file), fields, remedy)
    files.check_same_generation(train, val, remedy)
    for verified, episodes, rows in ((train, plan.state.train_episodes, plan.state.train_steps),
                                     (val, plan.state.val_episodes, plan.state.val_steps)):
        if (verified.episodes, verified.rows) != (episodes, rows):
            raise UserError(
                f"State file {files.display_path(verified.path)} holds {verified.episodes} episodes in {verified.rows} "
                f"steps but {plan.file_stem} shows {episodes} episodes in {rows} steps; {remedy}."
            )
    return train, val


def _load_without_observations(path: Path) -> dict[str, np.ndarray | None]:
    with np.load(path) as archive:
        return {key: None if key == "observations" else archive[key] for key in archive.files}


PARTIAL_SUFFIX = ".frames-partial"  # <visual file>.frames-partial.npy / .json: a render in progress


def _partial_paths(output: Path) -> tuple[Path, Path, Path]:
    """(frames memory map, record of the episodes whose frames it holds, lock) of `output`'s render."""
    base = output.with_name(output.name + PARTIAL_SUFFIX)
    return base.with_name(base.name + ".npy"), base.with_name(base.name + ".json"), base.with_name(base.name + ".lock")


class _PartialFrames:
    """A split's frames, rendered into a uint8 memory map under a fixed name beside its output, with
    a record of the episodes already in it: a render that is stopped (Ctrl-C, kill, a crash)
    continues from the episodes it finished when run again. The record names the source state
    file's sha256, the renderer version and the frame shape; any other render starts afresh.
    An episode is recorded only after its frames are flushed to disk, so a record never claims
    frames that a crash lost. A lock keeps two processes from rendering into the same map."""

    def __init__(self, split: _Split, frame_shape: tuple, log):
        self.frames_path, self.record_path, lock_path = _partial_paths(split.output)
        self._lock = open(lock_path, "a")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UserError(f"Another process is rendering {files.display_path(split.output)} (it holds "
                            f"{files.display_path(lock_path)}); wait for it to finish.") from None
        self.key = {"source_state_sha256": files.sha256_of_file(split.state.path), "render_version": RENDER_VERSION,
                    "shape": [split.state.rows, *frame_shape]}
        self.done = self._resumable_episodes()
        if self.done:
            self.frames = np.lib.format.open_memmap(self.frames_path, mode="r+")
            log(f"Resuming {split.output.name}: {len(self.done)} episode(s) already rendered in "
                f"{files.display_path(self.frames_path)}.")
        else:
            self.frames = np.lib.format.open_memmap(self.frames_path, mode="w+", dtype=np.uint8,
                                                    shape=tuple(self.key["shape"]))
            self._write_record()

    def _resumable_episodes(self) -> set[int]:
        try:
            record = json.loads(self.record_path.read_text())
            frames = np.lib.format.open_memmap(self.frames_path, mode="r")
        except (OSError, ValueError):
            return set()
        if record.get("key") != self.key or list(frames.shape) != self.key["shape"] or frames.dtype != np.uint8:
            return set()
        return {int(start) for start in record.get("done", [])}

    def _write_record(self) -> None:
        with files.atomic_output(self.record_path) as temporary:
            Path(temporary).write_text(json.dumps({"key": self.key, "done": sorted(self.done)}))

    def store(self, start: int, frames: np.ndarray) -> None:
        self.frames[start:start + len(frames)] = frames
        self.frames.flush()
        self.done.add(start)
        self._write_record()

    def close(self, finished: bool) -> None:
        """Drop the map; its files go only when the render `finished` (they are what a rerun resumes)."""
        self.frames = None
        if finished:
            files.remove_quietly(self.frames_path, self.record_path, self._lock.name)
        self._lock.close()


@contextlib.contextmanager
def _frame_stores(splits: list[_Split], frame_shape: tuple, log):
    """Give each split its resumable frame store (`_PartialFrames`) as `split.frames`; on success the
    stores' files are removed, on any failure kept for the next run to continue from."""
    stores: list[_PartialFrames] = []
    finished = False
    try:
        for split in splits:
            stores.append(_PartialFrames(split, frame_shape, log))
            split.frames = stores[-1].frames
        yield {split.name: store for split, store in zip(splits, stores)}
        finished = True
    finally:
        for split, store in zip(splits, stores):
            split.frames = None
            store.close(finished)
        if not finished and stores:
            done = sum(len(store.done) for store in stores)
            log(f"Stopped with {done} rendered episode(s) kept beside {files.display_path(splits[-1].output)} "
                f"({PARTIAL_SUFFIX}.*); the same command continues from them.")


def _episode_tasks(split: _Split) -> list[tuple]:
    ends = np.flatnonzero(split.arrays["terminals"]) + 1
    starts = np.concatenate([[0], ends[:-1]])
    buttons = split.arrays.get("button_states")
    return [
        (split.name, int(start), split.arrays["qpos"][start:end], split.arrays["qvel"][start:end],
         None if buttons is None else buttons[start:end])
        for start, end in zip(starts, ends)
    ]


def _metadata(plan: RenderPlan, split: _Split, workers: int, seconds: float, frames: int) -> dict:
    """`seconds` and `frames`: this run's rendering (a resumed render counts only what it rendered)."""
    import mujoco

    source = split.state.metadata or {}
    episodes = split.state.episodes
    return {
        "generator": "flowrl.suites.data.render",  # its name when files began to record it
        "generator_version": RENDER_VERSION,
        **software_metadata(),
        "dataset": plan.name,
        "file_stem": plan.file_stem,
        "split": split.name,
        "reduced": plan.reduced,
        "seed": source.get("seed"),
        "episodes": episodes,
        "steps_per_episode": plan.state.steps_per_episode,
        "steps": split.state.rows,
        "transitions": split.state.rows - episodes,
        "source_state_file": split.state.path.name,
        "source_state_sha256": files.sha256_of_file(split.state.path),
        "source_state_generated": split.state.metadata is not None,
        "source_state_generator_version": source.get("generator_version"),
        "renderer": {
            "env": plan.render_env_id,
            "camera": "front_pixels",
            "frame_shape": list(VISUAL_FRAME_SHAPE),
            "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
            "mujoco_version": mujoco.__version__,
            "replay": "set_state + render per row; after a step, positions one physics substep back when the "
                      "environment renders them so (cube), as its own observations are",
        },
        "plan": {
            "frames": plan.frames,
            "uncompressed_bytes": plan.uncompressed_bytes(),
            "approx_bytes": plan.approx_bytes(),
            "approx_seconds": plan.approx_seconds(workers),
            "approx_frames_per_sec_per_worker": plan.approx_frames_per_sec,
            "workers": workers,
        },
        "render_seconds": round(seconds, 1),
        "frames_rendered": frames,
        "frames_per_sec": round(frames / max(seconds, 1e-9), 2),
    }


def render_dataset(plan: RenderPlan, state_train_file: str | os.PathLike, dataset_dir: str, workers: int,
                   log=print) -> Path:
    """Render the verified state dataset at `state_train_file` (and its -val file) into the visual
    dataset of `plan` in `dataset_dir`; returns the visual training file's path. An existing visual
    dataset of that name is replaced only once the new one is complete."""
    if os.environ.get("MUJOCO_GL") == "disable":
        raise UserError(
            f"{plan.file_stem} must be rendered, but MuJoCo has no rendering backend here (MUJOCO_GL=disable: neither "
            f"EGL nor OSMesa initialised); install Mesa's EGL or OSMesa libraries, or place the official "
            f"{plan.file_stem}.npz and -val.npz in {files.display_path(os.path.expanduser(dataset_dir))}."
        )
    state_train_file = Path(state_train_file)
    train_file = files.train_path(dataset_dir, plan.file_stem)
    train_file.parent.mkdir(parents=True, exist_ok=True)
    train_state, val_state = _verified_source(plan, state_train_file)
    splits = [
        _Split("val", val_state, _load_without_observations(val_state.path), files.val_path_for(train_file)),
        _Split("train", train_state, _load_without_observations(train_state.path), train_file),
    ]
    tasks = [task for split in splits for task in _episode_tasks(split)]
    workers = max(1, min(int(workers), len(tasks)))
    log(describe_render_plan(plan, workers, str(train_file.parent)))

    with _frame_stores(splits, VISUAL_FRAME_SHAPE, log) as stores:
        tasks = [task for task in tasks if task[1] not in stores[task[0]].done]
        frames_left = sum(len(task[2]) for task in tasks)
        with Progress(plan.file_stem, len(tasks), frames_left, "frame", log) as progress:

            def on_episode(result) -> None:
                split_name, start, frames = result
                stores[split_name].store(start, frames)
                progress.episode_done(len(frames))

            run_tasks(tasks, workers, StateRenderer, (plan.render_env_id,), _render_task, on_episode)
        _write_splits(plan, splits, workers, progress.elapsed, frames_left)
    log(f"Rendered {files.display_path(train_file)} and {files.val_path_for(train_file).name} in "
        f"{progress.elapsed:.0f} s ({frames_left / max(progress.elapsed, 1e-9):,.1f} frames/s on {workers} worker(s)).")
    return train_file


def _write_splits(plan: RenderPlan, splits: list[_Split], workers: int, seconds: float, frames: int) -> None:
    """Stage both visual files and their metadata, then rename all four together (val first), as
    generation does: an interruption leaves nothing under the final names, and keeps an old dataset."""
    with files.staged_outputs() as staged:
        for split in splits:
            arrays = {key: split.frames if key == "observations" else values for key, values in split.arrays.items()}
            files.stage_generated_npz(staged, split.output, arrays, _metadata(plan, split, workers, seconds, frames))
