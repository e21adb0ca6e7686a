"""Sharded OGBench datasets: a directory of `*.npz` shards (whole episodes each) and a `-val.npz`.

OGBench's 100M and 1B datasets (`cube-quadruple-play-100m-v0`, the horizon-reduction datasets)
come as one directory of shards, each a complete dataset file of whole episodes. The authors'
code (seohongpark/horizon-reduction, ColinQiyangLi/qc) lists them as
`sorted(glob(f'{dir}/*.npz'))` without the names ending in '-val.npz'; so does `shard_files`.

A directory given with --dataset_dir is read as shards when it does not hold the dataset's own
file (`<dataset>.npz`) and holds at least two shard files, all numbered (`<name>-<digits>.npz`),
so that a directory of whole datasets (`cube-double-play-v0.npz`, `puzzle-3x3-play-v0.npz`, ...)
missing the one a run asks for is never taken for shards (`is_shard_directory`). This module
only describes and reads the layout; streaming the shards through a run is flowrl.run.stream's.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from flowrl.errors import UserError

VAL_SUFFIX = "-val.npz"
ROWS_FIELD = "terminals"  # every OGBench file holds it, one value per row
NUMBERED = re.compile(r"^.+-\d+\.npz$")  # a shard's name: '<dataset>-000.npz'


class Shards(NamedTuple):
    """A sharded dataset as a task describes it (flowrl.suites: `task.shards(settings, log)`)."""
    files: tuple  # every shard file, sorted (str paths)
    val: dict | None  # the validation split (rewards as stored), or None without a -val.npz
    read: Callable  # path -> the transitions of one shard (rewards as stored), float32
    source: str  # one line for the log
    record: dict  # recorded with the run (flags.json 'data')
    env_shapes: tuple | None = None  # (observation shape, action dimensions), where the suite knows them


def shard_files(directory: str | Path) -> list[Path]:
    """The shard files of `directory`, sorted: every `*.npz` but the `*-val.npz`."""
    directory = Path(directory).expanduser()
    return [path for path in sorted(directory.glob("*.npz")) if not path.name.endswith(VAL_SUFFIX)]


def validation_file(directory: str | Path) -> Path | None:
    """The directory's validation file (the first `*-val.npz` by name), or None."""
    found = sorted(Path(directory).expanduser().glob(f"*{VAL_SUFFIX}"))
    return found[0] if found else None


def is_shard_directory(directory: str | Path | None, dataset_name: str) -> bool:
    """Whether `directory` holds `dataset_name` as shards: not its single file, and two numbered
    shards or more (every file but the -val.npz numbered)."""
    if directory is None or not Path(directory).expanduser().is_dir():
        return False
    if (Path(directory).expanduser() / f"{dataset_name}.npz").exists():
        return False
    found = shard_files(directory)
    return len(found) >= 2 and all(NUMBERED.match(path.name) for path in found)


def file_rows(path: str | Path) -> int:
    """The rows of an OGBench file, from the header of its `terminals` array (nothing else is read)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{ROWS_FIELD}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, _ = read_header(member)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"Shard {path} is not a readable OGBench dataset file ({type(error).__name__}: {error}); "
                        "replace it with a complete copy.") from None
    return int(shape[0])


def require_equal_rows(paths: list) -> int:
    """The rows every shard holds; refuses shards of different sizes in one sentence (a stream's
    window has a fixed shape, so that swapping a shard never compiles the training program again)."""
    rows = {str(path): file_rows(path) for path in paths}
    sizes = sorted(set(rows.values()))
    if len(sizes) > 1:
        odd = next(path for path, count in rows.items() if count != rows[str(paths[0])])
        raise UserError(f"The shards differ in size: {paths[0]} holds {rows[str(paths[0])]:,} rows and {odd} "
                        f"{rows[odd]:,}; a streamed dataset needs shards of equal size (OGBench's are).")
    return sizes[0]


def episode_transitions(raw: dict) -> dict:
    """OGBench's rows (one per step, `terminals` 1 on an episode's last row) as transitions: every
    row but an episode's last, with the next row's observation (what OGBench's `load_dataset`
    with compact_dataset=False does); `terminals` 1 on an episode's last transition."""
    terminals = np.asarray(raw["terminals"], np.float32)
    rows = np.nonzero(terminals == 0)[0]
    out = {key: np.asarray(raw[key][rows], np.float32) for key in ("observations", "actions", "rewards")
           if key in raw}
    out["next_observations"] = np.asarray(raw["observations"][rows + 1], np.float32)
    out["terminals"] = terminals[rows + 1]
    out["masks"] = np.asarray(raw["masks"][rows], np.float32) if "masks" in raw else 1.0 - out["terminals"]
    return out
