"""Sharded datasets made on this machine, in OGBench's layout for its 100M/1B datasets (one
directory: `<dataset>-000.npz`, `<dataset>-001.npz`, ... of whole episodes each, and
`<dataset>-val.npz`), so that tests and machines without internet can stream shards end to end
(`python -m flowrl.suites.data generate cube-single-play-v0 --shards=8 --episodes=2 --dataset_dir=DIR`).

The episodes are generated once with OGBench's oracles as a reduced dataset of shards x episodes
(flowrl.making.generate, in a temporary directory beside the shards) and split at episode ends;
the validation file is that generation's. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from flowrl.errors import UserError
from flowrl.making.generate import build_dataset
from flowrl.suites.data import files
from flowrl.suites.data.plans import plan_generation


def shard_path(dataset_dir: str, dataset_name: str, index: int) -> Path:
    return Path(dataset_dir).expanduser() / f'{dataset_name}-{index:03d}.npz'


def episode_bounds(terminals: np.ndarray) -> np.ndarray:
    """[episodes + 1] row offsets of the episodes of an OGBench file (`terminals` 1 on their last row)."""
    return np.concatenate([[0], np.nonzero(np.asarray(terminals) > 0)[0] + 1])


def split_file(arrays: dict, shards: int) -> list[dict]:
    """The rows of one file as `shards` files of equally many whole episodes."""
    bounds = episode_bounds(arrays['terminals'])
    episodes = len(bounds) - 1
    if episodes % shards:
        raise ValueError(f'{episodes} episodes do not split into {shards} equal shards.')
    each = episodes // shards
    return [{k: v[bounds[i * each]:bounds[(i + 1) * each]] for k, v in arrays.items()} for i in range(shards)]


def make_shards(dataset_name: str, dataset_dir: str, shards: int, episodes: int, workers: int, seed: int = 0,
                force: bool = False, log=print) -> list[Path]:
    """`shards` files of `episodes` episodes each and a -val.npz in `dataset_dir` (refusing to replace
    shards already there unless `force`); returns the shard files."""
    directory = Path(dataset_dir).expanduser()
    first = shard_path(dataset_dir, dataset_name, 0)
    if first.exists() and not force:
        raise UserError(f'{files.display_path(first)} already exists; pass --force to replace the shards.')
    if (directory / f'{dataset_name}.npz').exists():
        raise UserError(f'{files.display_path(directory)} holds {dataset_name}.npz, so a run would read that file and '
                        'not the shards; give the shards a directory of their own.')
    directory.mkdir(parents=True, exist_ok=True)
    log(f'Generating {shards} shards of {episodes} episode(s) of {dataset_name} in {files.display_path(directory)}.')
    with tempfile.TemporaryDirectory(dir=directory, prefix='.making-shards-') as work:
        train_file = build_dataset(plan_generation(dataset_name, shards * episodes), work, workers, seed, log)
        with np.load(train_file) as train, np.load(files.val_path_for(train_file)) as val:
            parts = split_file({k: train[k] for k in train.files}, shards)
            written = []
            for index, part in enumerate(parts):
                written.append(write(shard_path(dataset_dir, dataset_name, index), part))
            write(directory / f'{dataset_name}-val.npz', {k: val[k] for k in val.files})
    log(f'Wrote {files.display_path(written[0])} ... {written[-1].name} and {dataset_name}-val.npz: pass '
        f'--dataset_dir={files.display_path(directory)} to stream them.')
    return written


def write(path: Path, arrays: dict) -> Path:
    with files.atomic_output(path) as temporary:
        files.write_npz_deterministic(temporary, arrays)
    return path
