"""Parallel, deterministic, interrupt-safe generation of OGBench datasets.

Determinism: episode `i` (training episodes first, then validation episodes, as in the
published loop) draws all its randomness from `np.random.SeedSequence([seed, i, attempt])`:
one child seeds the environment's reset, one seeds NumPy's global state (which OGBench's
oracles and maze goal noise use), one feeds the generator our own choices come from. No
random state is carried from one episode to the next, so the files are identical whatever the
number of workers (`attempt` only moves past 0 when a scene episode fails its health check).

Safety: episodes are gathered in memory, then every file is written under a temporary name
and all are renamed together once complete (see `files.py`); an interruption (Ctrl-C, an
exception in a worker) terminates the workers, leaves no partial dataset behind and keeps a
previous dataset of the same name. Workers also end when the generating process is killed
outright (kill -9), which no handler in it can see: see `flowrl.stopping.die_with_parent`.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flowrl import stopping
from flowrl.suites.data import files
from flowrl.suites.data.plans import GenerationPlan, plan_generation
from flowrl.suites.data.protocol import DatasetSpec
from flowrl.errors import UserError

GENERATOR_VERSION = "1"
# A scene episode is redone when the cube leaves the view; give up after this many tries.
MAX_EPISODE_ATTEMPTS = 50


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def describe_plan(plan: GenerationPlan, workers: int, seed: int, dataset_dir: str) -> str:
    """The one-line announcement printed before generating: what, where, how big, how long."""
    duration = format_duration(plan.approx_seconds(workers))
    return (
        f"Generating {plan.file_stem} locally with OGBench's scripted oracles: "
        f"{plan.train_episodes} + {plan.val_episodes} (val) episodes x {plan.steps_per_episode} steps = "
        f"{plan.total_steps:,} steps, about {plan.approx_bytes() / 1e6:,.0f} MB in "
        f"{files.display_path(os.path.expanduser(dataset_dir))}, expected to take about {duration} "
        f"on {workers} worker(s) (seed {seed})."
    )


def format_duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


# ----------------------------------------------------------------------------- one episode


@dataclass(frozen=True)
class EpisodeSeeds:
    env_seed: int
    global_seed: int
    rng: np.random.Generator


def episode_seeds(seed: int, index: int, attempt: int) -> EpisodeSeeds:
    env_sequence, global_sequence, rng_sequence = np.random.SeedSequence([seed, index, attempt]).spawn(3)
    return EpisodeSeeds(
        env_seed=int(env_sequence.generate_state(1)[0]),
        global_seed=int(global_sequence.generate_state(1)[0]),
        rng=np.random.default_rng(rng_sequence),
    )


class EpisodeCollector:
    """One environment (and its oracles) that collects episodes by index, in any order."""

    def __init__(self, spec: DatasetSpec, steps_per_episode: int):
        self.spec = spec
        self.steps = steps_per_episode
        if spec.family == "pointmaze":
            from flowrl.making.pointmaze import make_pointmaze_env

            self.env = make_pointmaze_env(spec, steps_per_episode)
            self.oracles = None
        else:
            from flowrl.making.manipulation import make_manipulation_env, make_oracles

            self.env = make_manipulation_env(spec, steps_per_episode)
            self.oracles = make_oracles(spec, self.env)

    def collect(self, seed: int, index: int) -> tuple[int, dict[str, np.ndarray], int]:
        """(index, arrays, redone attempts) for episode `index` of the sequence seeded by `seed`."""
        from flowrl.making.manipulation import UnhealthyEpisode

        for attempt in range(MAX_EPISODE_ATTEMPTS):
            seeds = episode_seeds(seed, index, attempt)
            np.random.seed(seeds.global_seed)
            try:
                arrays = self._collect_once(seeds)
            except UnhealthyEpisode:
                continue
            self._check_length(arrays, index)
            return index, arrays, attempt
        raise RuntimeError(f"episode {index} failed the health check {MAX_EPISODE_ATTEMPTS} times")

    def _collect_once(self, seeds: EpisodeSeeds) -> dict[str, np.ndarray]:
        if self.spec.family == "pointmaze":
            from flowrl.making.pointmaze import collect_pointmaze_episode

            return collect_pointmaze_episode(self.spec, self.env, seeds.rng, seeds.env_seed, self.steps)
        from flowrl.making.manipulation import collect_manipulation_episode

        return collect_manipulation_episode(self.spec, self.env, self.oracles, seeds.rng, seeds.env_seed, self.steps)

    def _check_length(self, arrays: dict[str, np.ndarray], index: int) -> None:
        terminals = arrays["terminals"]
        if len(terminals) != self.steps or not terminals[-1] or terminals[:-1].any():
            raise RuntimeError(f"episode {index} has {len(terminals)} steps, expected exactly {self.steps}")


# Each worker process keeps its state (an episode collector, a renderer) here between tasks.
_WORKER_STATE = None


def _init_worker(make_state, make_args: tuple, parent_pid: int) -> None:
    global _WORKER_STATE
    # Stop signals are handled once, by the parent, which then ends the pool; a worker dies with
    # a parent killed outright (kill -9), which no handler in it can see (flowrl.stopping).
    stopping.become_worker(parent_pid)
    _WORKER_STATE = make_state(*make_args)


def _run_in_worker(work, task):
    return work(_WORKER_STATE, task)


def _collect(collector: EpisodeCollector, task: tuple[int, int]):
    return collector.collect(*task)


# ----------------------------------------------------------------------------- assembly


class _SplitBuffers:
    """Preallocated arrays for the train and val splits, filled episode by episode."""

    def __init__(self, plan: GenerationPlan):
        self.plan = plan
        self.arrays: dict[str, dict[str, np.ndarray]] | None = None

    def store(self, index: int, episode: dict[str, np.ndarray]) -> None:
        if self.arrays is None:
            self.arrays = {
                "train": self._allocate(episode, self.plan.train_episodes),
                "val": self._allocate(episode, self.plan.val_episodes),
            }
        split, position = ("train", index) if index < self.plan.train_episodes else ("val", index - self.plan.train_episodes)
        start = position * self.plan.steps_per_episode
        for key, values in episode.items():
            self.arrays[split][key][start : start + len(values)] = values

    def _allocate(self, episode: dict[str, np.ndarray], episodes: int) -> dict[str, np.ndarray]:
        rows = episodes * self.plan.steps_per_episode
        return {key: np.zeros((rows,) + values.shape[1:], dtype=values.dtype) for key, values in episode.items()}


def run_tasks(tasks: list, workers: int, make_state, make_args: tuple, work, on_result) -> None:
    """Call on_result(work(state, task)) for every task, as each finishes, where `state` is built
    once per worker process by make_state(*make_args); `make_state` and `work` must be module-level
    functions (or classes), which spawned workers import by name. workers=1 runs in this process."""
    if workers == 1:
        # In-process: avoids start-up cost.
        state = make_state(*make_args)
        for task in tasks:
            on_result(work(state, task))
        return
    # 'spawn' so that workers never inherit a forked JAX / MuJoCo state from the parent. An
    # executor (unlike multiprocessing.Pool) reports workers that die instead of respawning
    # them forever, e.g. when an unguarded main script re-runs itself in every worker.
    executor = concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(make_state, make_args, os.getpid()),
    )
    try:
        with stopping.starting_workers():  # the first submit starts the workers
            pending = [executor.submit(_run_in_worker, work, task) for task in tasks]
        for future in concurrent.futures.as_completed(pending):
            on_result(future.result())
    except concurrent.futures.process.BrokenProcessPool:
        raise UserError(
            "A dataset worker process died; if you call flowrl from your own script, put its entry point under "
            "`if __name__ == '__main__':` (spawned workers re-import the main script), otherwise rerun with "
            "workers=1 to see the underlying error."
        ) from None
    finally:
        # On Ctrl-C or an error: drop queued tasks; running ones end within one task.
        executor.shutdown(wait=True, cancel_futures=True)


def _run_episodes(plan: GenerationPlan, seed: int, workers: int, on_episode) -> None:
    """Collect every episode of `plan`, calling on_episode(index, arrays, redone) as each ends."""
    tasks = [(seed, index) for index in range(plan.total_episodes)]
    # The oracles draw from NumPy's global state: an in-process run must not disturb the caller's.
    saved_state = np.random.get_state()
    try:
        run_tasks(tasks, workers, EpisodeCollector, (plan.spec, plan.steps_per_episode), _collect,
                  lambda result: on_episode(*result))
    finally:
        np.random.set_state(saved_state)


def _metadata(plan: GenerationPlan, split: str, seed: int, first_index: int, episodes: int, redone: int) -> dict:
    steps = episodes * plan.steps_per_episode
    return {
        "generator": "flowrl.suites.data",
        "generator_version": GENERATOR_VERSION,
        **software_metadata(),
        "dataset": plan.spec.name,
        "file_stem": plan.file_stem,
        "split": split,
        "reduced": plan.reduced,
        "seed": seed,
        "episodes": episodes,
        "first_episode_index": first_index,
        "steps_per_episode": plan.steps_per_episode,
        "steps": steps,
        "transitions": steps - episodes,
        "unhealthy_episodes_redone": redone,
        "collection_env": plan.spec.env_id,
        "dataset_type": plan.spec.dataset_type,
        "p_random_action": plan.spec.p_random_action,
    }


def software_metadata() -> dict:
    """Metadata every file flowrl writes carries: the versions that made it, what sha256 covers, when."""
    return {
        "ogbench_version": importlib.metadata.version("ogbench"),
        "mujoco_version": importlib.metadata.version("mujoco"),
        "numpy_version": np.__version__,
        "sha256_covers": "file bytes (deterministic zip, fixed timestamps)",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _write_splits(plan, buffers, redone, seed, train_file: Path, val_file: Path) -> None:
    """Write both splits (and their metadata) under temporary names, then move all four into
    place together: a failure or Ctrl-C while writing removes only the temporary files and
    leaves any previous dataset of this name as it was. Validation files are renamed first, so
    a training file from this run on disk implies its validation file."""
    with files.staged_outputs() as staged:
        for split, path, first, episodes in (
            ("val", val_file, plan.train_episodes, plan.val_episodes),
            ("train", train_file, 0, plan.train_episodes),
        ):
            metadata = _metadata(plan, split, seed, first, episodes, redone[split])
            files.stage_generated_npz(staged, path, buffers.arrays[split], metadata)


# Without a terminal, a progress line at least this often, however slow the job: a full visual
# dataset renders for hours, and a line per tenth of it would leave a log silent for hours.
PROGRESS_LOG_INTERVAL_S = 600.0


class Progress:
    """A bar on a terminal; in a log file, one plain line per tenth of the episodes (and at least
    every PROGRESS_LOG_INTERVAL_S) instead of a carriage-return redraw per episode."""

    def __init__(self, label: str, total_episodes: int, total_units: int, unit: str, log):
        self.label, self.total_episodes, self.unit, self.log = label, total_episodes, unit, log
        self.interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total_units, unit=unit, unit_scale=True, desc=label, smoothing=0.05,
                        disable=not self.interactive)
        self.started = self.last_line = time.perf_counter()
        self.finished = self.units = 0
        self.elapsed = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.elapsed = time.perf_counter() - self.started
        self.bar.close()

    def episode_done(self, units: int) -> None:
        self.finished += 1
        self.units += units
        self.bar.update(units)
        self.bar.set_postfix_str(f"episodes {self.finished}/{self.total_episodes}", refresh=False)
        now = time.perf_counter()
        new_tenth = self.finished * 10 // self.total_episodes > (self.finished - 1) * 10 // self.total_episodes
        # The first episode gets a line too: a log file shows at once that generation is under way,
        # and at what rate, instead of staying silent for the first tenth (minutes).
        first = self.finished == 1
        if not self.interactive and (first or new_tenth or now - self.last_line >= PROGRESS_LOG_INTERVAL_S):
            self.last_line = now
            self.log(f"{self.label}: {self.finished}/{self.total_episodes} episodes "
                     f"({100 * self.finished // self.total_episodes}%), "
                     f"{self.units / max(now - self.started, 1e-9):,.0f} {self.unit}s/s")


def build_dataset(plan: GenerationPlan, dataset_dir: str, workers: int, seed: int, log=print) -> Path:
    """Generate the files described by `plan`; returns the training file path."""
    if seed < 0:
        raise UserError(f"The generation seed must be a non-negative integer, not {seed}; pass --seed 0 or higher.")
    workers = max(1, min(int(workers), plan.total_episodes))
    train_file = files.train_path(dataset_dir, plan.file_stem)
    val_file = files.val_path_for(train_file)
    train_file.parent.mkdir(parents=True, exist_ok=True)
    log(describe_plan(plan, workers, seed, dataset_dir))

    buffers = _SplitBuffers(plan)
    redone = {"train": 0, "val": 0}
    with Progress(plan.file_stem, plan.total_episodes, plan.total_steps, "step", log) as progress:

        def on_episode(index: int, episode: dict[str, np.ndarray], attempts_redone: int) -> None:
            buffers.store(index, episode)
            redone["train" if index < plan.train_episodes else "val"] += attempts_redone
            progress.episode_done(len(episode["terminals"]))

        _run_episodes(plan, seed, workers, on_episode)
    elapsed = progress.elapsed

    _write_splits(plan, buffers, redone, seed, train_file, val_file)
    log(
        f"Generated {files.display_path(train_file)} and {val_file.name} in {elapsed:.0f} s "
        f"({plan.total_steps / max(elapsed, 1e-9):,.0f} steps/s on {workers} worker(s))."
    )
    return train_file


def generate_dataset(
    dataset_name: str,
    *,
    dataset_dir: str = files.DEFAULT_DATASET_DIR,
    episodes: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    log=print,
) -> str:
    """Generate '<dataset_name>.npz' and '-val.npz' (+ metadata JSON) per the published protocol.

    With `episodes=N` a reduced dataset is built instead, named '<dataset_name>-ep<N>.npz' and
    '<dataset_name>-ep<N>-val.npz' (max(1, N // 10) validation episodes), a name OGBench never
    uses, so it can never be mistaken for the official file. Existing files are replaced
    atomically. Returns the training file's path.
    """
    plan = plan_generation(dataset_name, episodes)
    return str(build_dataset(plan, dataset_dir, workers or default_workers(), seed, log))

