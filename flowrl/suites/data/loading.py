"""Resolve, verify and load an OGBench single-task dataset as transitions.

Resolution order (first that applies wins):
1. `dataset_path` given explicitly: used as is (its '-val.npz' sibling is optional);
2. `<dataset_dir>/<dataset>.npz` and `-val.npz` (OGBench's names; official or generated);
3. OGBench's server, when reachable within a few seconds (skipped if FLOWRL_NO_DOWNLOAD=1);
4. a dataset flowrl can make (generated with OGBench's oracles, or rendered): this layer does not
   make it (making is flowrl.making's, a layer above the suites) but raises `MissingDataset`,
   which says what is missing and carries the order to make it (`DatasetOrder`); the caller that
   runs the loading makes it and loads again (`flowrl.making.ogbench.loaded_with_making`, which
   flowrl.run.runner.load_dataset uses). Uncaught, it is the one sentence of a `UserError` saying
   which command makes the dataset.
A reduced dataset (`dataset_episodes=N`) skips 3: it is only ever made locally, under its own name
'<dataset>-ep<N>.npz'.

Every file is verified before use (see `files.verify_dataset_file`) and refused with a one
sentence `UserError` naming the remedy. Rewards and masks come from OGBench's own
`load_dataset` + `relabel_dataset`, the functions `ogbench.make_env_and_datasets` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from flowrl.suites.data import files
from flowrl.suites.data.plans import plan_generation, plan_rendering
from flowrl.suites.data.protocol import (
    VISUAL_FRAME_SHAPE,
    can_produce,
    dataset_name_for_env,
    needs_download,
    reduced_dataset_name,
    require_spec,
    singletask_env_id,
)
from flowrl.suites.ogbench_envs import gym_make, is_visual
from flowrl.errors import UserError

# The FQL paper clips dataset actions just inside the action bounds.
ACTION_CLIP = 1.0 - 1e-5
TRANSITION_KEYS = ("observations", "actions", "rewards", "masks", "terminals", "next_observations")
FRAME_TRANSITION_KEYS = ("actions", "rewards", "masks", "terminals")  # visual: observations are frames


@dataclass(frozen=True)
class DatasetOrder:
    """What to make for a dataset that is missing: the arguments of
    `flowrl.making.ogbench.produce_dataset` (`seed` and `workers` of a generation, and whether the
    state dataset of a visual one may be downloaded)."""

    dataset_name: str
    dataset_dir: str
    dataset_episodes: int | None = None
    workers: int | None = None
    seed: int = 0
    download: bool = True


class MissingDataset(UserError):
    """A dataset flowrl can make is not on disk (`order` says what to make). Raised by the loading
    (a layer that reads data and never makes it); whoever runs the loading and can make data
    catches it, makes `order` and loads again."""

    def __init__(self, message: str, order: DatasetOrder):
        super().__init__(message)
        self.order = order


class Datasets(NamedTuple):
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] | None
    source: str


def load_singletask_data(
    env_name: str,
    *,
    dataset_path: str | None = None,
    dataset_dir: str | None = None,
    dataset_episodes: int | None = None,
    generate: bool = True,
    workers: int | None = None,
    seed: int = 0,
    frame_stack: int = 1,
    log=print,
) -> Datasets:
    """env_name is a full OGBench singletask name, e.g. 'cube-double-play-singletask-task2-v0'.

    Resolves (explicit path -> dataset_dir official name -> ogbench download if network ->
    `MissingDataset` for a dataset flowrl makes, with `generate`), verifies integrity, relabels
    with OGBench's own relabelling, clips actions to +-(1 - 1e-5) and returns float32 numpy arrays
    (the training loop moves them to the device). A visual dataset's images stay uint8 frames with
    `frame_stack` frames per observation (flowrl.kit.pixels). `seed` and `workers` only go into the
    order of a missing dataset. `dataset_dir=None` (a run without --dataset_dir) is OGBench's default directory.
    """
    dataset_dir = dataset_dir or files.DEFAULT_DATASET_DIR
    dataset_name = dataset_name_for_env(env_name)
    env_id = singletask_env_id(env_name)
    _require_registered(env_name, env_id)
    train_file, source = resolve_dataset_files(
        dataset_name,
        dataset_path=dataset_path,
        dataset_dir=dataset_dir,
        dataset_episodes=dataset_episodes,
        generate=generate,
        workers=workers,
        seed=seed,
        log=log,
    )
    val_file = files.val_path_for(train_file)
    train, val = relabel_files(env_id, train_file, val_file if val_file.exists() else None, frame_stack)
    if val is None:
        log(f"No validation file {files.display_path(val_file)}; continuing without validation data.")
    return Datasets(train=train, val=val, source=source)


def _require_registered(env_name: str, env_id: str) -> None:
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    if env_id not in gymnasium.registry:
        raise UserError(
            f"Unknown OGBench environment '{env_name}'; pass a single-task name such as "
            "'cube-double-play-singletask-task1-v0'."
        )


# ----------------------------------------------------------------------------- resolution


def resolve_dataset_files(
    dataset_name: str,
    *,
    dataset_path: str | None,
    dataset_dir: str,
    dataset_episodes: int | None,
    generate: bool,
    workers: int | None,
    seed: int,
    log=print,
    download: bool = True,
) -> tuple[Path, str]:
    """Verified training file for `dataset_name` and a source line. A missing dataset flowrl can
    make raises `MissingDataset` (with `generate`; a plain UserError without, as a check of
    existing files does): a visual one is made by rendering its state dataset, which is itself
    resolved exactly as this function resolves the state name (flowrl.making.ogbench).
    """
    fields = files.required_fields(dataset_name)
    frame_shape = VISUAL_FRAME_SHAPE if is_visual(dataset_name) else None
    if dataset_path is not None:
        if dataset_episodes is not None:
            log(f"--dataset_path is given, so --dataset_episodes={dataset_episodes} is ignored.")
        return _verified_explicit_file(Path(dataset_path).expanduser(), fields, frame_shape)

    if dataset_episodes is not None:
        file_stem = reduced_dataset_name(dataset_name, dataset_episodes)
        _state_plan(dataset_name, dataset_episodes)  # refuses a reduced dataset that cannot be built, first
    else:
        file_stem = dataset_name
    train_file = files.train_path(dataset_dir, file_stem)

    if not train_file.exists() and dataset_episodes is None and download:
        _download_or_explain(dataset_name, dataset_dir, log)

    if not train_file.exists():
        missing = f"Dataset {files.display_path(train_file)} does not exist; " + _how_to_get(
            dataset_name, dataset_episodes, dataset_dir, train_file) + "."
        if not generate:  # a check of existing files (`verify`): say how to get the dataset
            raise UserError(missing)
        reason = "it could not be downloaded" if dataset_episodes is None else "reduced datasets are only built locally"
        log(f"Dataset {files.display_path(train_file)} not found ({reason}).")
        raise MissingDataset(missing, DatasetOrder(dataset_name, dataset_dir, dataset_episodes, workers, seed, download))

    return _verified_directory_files(train_file, fields, dataset_name, dataset_episodes, frame_shape)


def _how_to_get(dataset_name: str, dataset_episodes: int | None, dataset_dir: str, train_file: Path) -> str:
    """How a missing dataset is made (generated, rendered) or, for one flowrl cannot build, fetched."""
    if can_produce(dataset_name):
        return f"make it with `{files.cli_command('generate', dataset_name, dataset_episodes, dataset_dir)}`"
    return (f"download {files.OFFICIAL_URL}/{train_file.name} and its -val.npz into "
            f"{files.display_path(train_file.parent)}")


def _state_plan(dataset_name: str, dataset_episodes: int | None):
    """The generation plan of a dataset, or of the state dataset a visual one is rendered from."""
    if is_visual(dataset_name):
        return plan_rendering(dataset_name, dataset_episodes).state
    return plan_generation(dataset_name, dataset_episodes)


def _download_or_explain(dataset_name: str, dataset_dir: str, log) -> None:
    """Try OGBench's server for a missing full dataset; fail now if it cannot be built here either."""
    if can_produce(dataset_name):
        files.try_download_official(dataset_name, dataset_dir, log)
        return
    if not needs_download(dataset_name):
        require_spec(dataset_name)  # unknown name: fails here, before any network access
    if not files.try_download_official(dataset_name, dataset_dir, log):
        require_spec(dataset_name, files.display_path(Path(dataset_dir).expanduser()))


def _regenerate_remedy(train_file: Path, dataset_name: str, dataset_episodes: int | None) -> str:
    command = files.cli_command('generate', dataset_name, dataset_episodes, str(train_file.parent), ' --force')
    return (
        f"delete {files.display_path(train_file)} and its -val/.meta.json siblings and run again, or run "
        f"`{command}`"
    )


def _verified_directory_files(
    train_file: Path, fields: tuple[str, ...], dataset_name: str, dataset_episodes: int | None,
    frame_shape: tuple[int, ...] | None = None,
) -> tuple[Path, str]:
    generated = files.metadata_path_for(train_file).exists()
    if generated or can_produce(dataset_name):
        remedy = _regenerate_remedy(train_file, dataset_name, dataset_episodes)
    else:
        remedy = f"download it again from {files.OFFICIAL_URL}/{train_file.name}"
    val_file = files.val_path_for(train_file)
    if not val_file.exists():
        raise UserError(f"Validation file {files.display_path(val_file)} is missing (incomplete dataset); {remedy}.")
    train = files.verify_dataset_file(train_file, fields, remedy, frame_shape)
    val = files.verify_dataset_file(val_file, fields, remedy, frame_shape)
    files.check_same_generation(train, val, remedy)
    if train.metadata is None:
        return train_file, f"official file: {files.display_path(train_file)} ({train.episodes} episodes)"
    _check_generated_matches_name(train, val, dataset_name, dataset_episodes, remedy)
    return train_file, _generated_source(train)


def _generated_source(train: files.VerifiedFile) -> str:
    meta = train.metadata
    if meta.get("source_state_file") is None:
        how = f"generated locally: {files.display_path(train.path)} (seed {meta['seed']}"
    elif meta.get("source_state_generated"):
        how = f"rendered locally: {files.display_path(train.path)} (from {meta['source_state_file']}, seed {meta['seed']}"
    else:
        how = f"rendered locally: {files.display_path(train.path)} (from the official {meta['source_state_file']}"
    return how + f", {meta['episodes']} episodes" + (", reduced" if meta.get("reduced") else "") + ")"


def _check_generated_matches_name(train, val, dataset_name: str, dataset_episodes: int | None, remedy: str) -> None:
    """A generated file must hold what its name promises (protocol size, or the reduced size)."""
    expected = _state_plan(dataset_name, dataset_episodes)
    for verified, episodes in ((train, expected.train_episodes), (val, expected.val_episodes)):
        meta = verified.metadata
        if meta is None:
            continue
        if meta.get("dataset") != dataset_name or meta.get("episodes") != episodes or verified.episodes != episodes:
            raise UserError(
                f"Generated file {files.display_path(verified.path)} holds {verified.episodes} episodes of "
                f"'{meta.get('dataset')}' but its name promises {episodes} episodes of '{dataset_name}'; {remedy}."
            )


def _verified_explicit_file(path: Path, fields: tuple[str, ...], frame_shape: tuple[int, ...] | None) -> tuple[Path, str]:
    if path.suffix != ".npz":
        raise UserError(f"--dataset_path must name an OGBench '.npz' file, not {path}; pass e.g. ~/data/cube-double-play-v0.npz.")
    remedy = "pass a complete OGBench dataset file with --dataset_path"
    verified = files.verify_dataset_file(path, fields, remedy, frame_shape)
    val_file = files.val_path_for(path)
    if val_file.exists():
        files.check_same_generation(verified, files.verify_dataset_file(val_file, fields, remedy, frame_shape), remedy)
    kind = "generated file" if verified.metadata else "explicit file"
    return path, f"{kind}: {files.display_path(path)} ({verified.episodes} episodes, from --dataset_path)"


# ----------------------------------------------------------------------------- loading


def relabel_files(env_id: str, train_file: Path, val_file: Path | None, frame_stack: int = 1):
    """Load, relabel rewards/masks for the task with OGBench's relabelling, clip actions, float32.
    Image observations (visual-* datasets) stay uint8 frames, stacked by index (`load_frames`)."""
    load = load_frames if is_visual(env_id) else load_states
    env = gym_make(env_id)
    try:
        return tuple(None if path is None else load(env_id, env, path, frame_stack) for path in (train_file, val_file))
    finally:
        env.close()


def read_shard(env_id: str, path: str) -> dict[str, np.ndarray]:
    """One shard of a sharded dataset (flowrl.suites.data.shards) as transitions, relabelled for
    the task as a whole file is (`relabel_files`); called from a stream's loading thread."""
    return relabel_files(env_id, Path(path), None)[0]


def load_states(env_id: str, env, path: Path, frame_stack: int = 1) -> dict[str, np.ndarray]:
    """OGBench's own loader and relabelling: the six transition arrays, float32."""
    from ogbench.relabel_utils import relabel_dataset
    from ogbench.utils import load_dataset

    dataset = load_dataset(str(path), ob_dtype=np.float32, compact_dataset=False, add_info=True)
    relabel_dataset(env_id, env, dataset)
    return to_transitions(dataset)


def load_frames(env_id: str, env, path: Path, frame_stack: int) -> dict[str, np.ndarray]:
    """A visual dataset as frames and transitions (flowrl.kit.pixels): the file's frames once, uint8,
    instead of OGBench's observations and next_observations copies (2 x 12 GB for 1M steps).

    The transitions are OGBench's (`load_dataset(compact_dataset=False)`): every row but an
    episode's last is one, with the next row as its next observation, and rewards and masks from
    `relabel_dataset` on the transitions' qpos/button_states; tests/test_pixels.py checks both
    give the same arrays."""
    from ogbench.relabel_utils import relabel_dataset

    from flowrl.kit import pixels

    with np.load(path) as file:
        frames = file["observations"]
        terminals = file["terminals"].astype(np.float32)
        rows = np.nonzero(terminals == 0)[0]  # rows with a next row in their episode
        dataset = {key: file[key][rows] for key in ("actions", "qpos", "qvel", "button_states") if key in file.files}
    dataset["terminals"] = terminals[rows + 1]  # 1 on an episode's last transition
    relabel_dataset(env_id, env, dataset)
    episode_ends = np.nonzero(terminals)[0]
    episode_firsts = np.concatenate([[0], episode_ends[:-1] + 1])
    first_rows = episode_firsts[np.searchsorted(episode_firsts, rows, side="right") - 1]
    fields = to_transitions(dataset, keys=FRAME_TRANSITION_KEYS)
    return pixels.frame_dataset(np.asarray(frames, np.uint8), rows, first_rows, frame_stack, **fields)


def to_transitions(dataset: dict[str, np.ndarray], keys=TRANSITION_KEYS) -> dict[str, np.ndarray]:
    """The transition arrays `keys`, float32, actions clipped."""
    transitions = {key: np.asarray(dataset[key], dtype=np.float32) for key in keys}
    transitions["actions"] = np.clip(transitions["actions"], -ACTION_CLIP, ACTION_CLIP)
    return transitions
