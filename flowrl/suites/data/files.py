"""Dataset files on disk: names, atomic writes, metadata, integrity checks and download.

Layout (OGBench's own, so generated files are drop-in replacements):
    <dir>/<dataset>.npz, <dir>/<dataset>-val.npz                 official or generated, full size
    <dir>/<dataset>-ep<N>.npz, <dir>/<dataset>-ep<N>-val.npz      reduced (generated only)
    <file>.npz.meta.json                                          beside every generated file

Safety rules:
- every file is written to `<final>.tmp-<pid>` and moved into place with `os.replace`, so a
  reader sees either the old file or the complete new one, never a partial one;
- generated `.npz` files are written deterministically (fixed zip timestamps), so the same
  seed gives byte-identical files and `sha256` in the metadata is the hash of the file bytes;
- generation stages the training file, the validation file and both metadata files under
  temporary names and renames them only once all four are complete (`staged_outputs`), so an
  interrupted `generate --force` leaves the previous dataset in place;
- a generated file is verified against its metadata's sha256; an official file (no metadata)
  is verified by opening the zip, checking the required arrays and their lengths, and reading
  every member so that zip CRC-32 checks catch corruption;
- a generated training file and its `-val` file must come from one generation run (same seed,
  size and generator versions in both metadata files; `check_same_generation`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowrl import stopping
from flowrl.suites.data.protocol import DEFAULT_DATASET_DIR, OFFICIAL_URL
from flowrl.disk import NoSpace, is_no_space, naming_no_space
from flowrl.errors import UserError
from flowrl.suites.ogbench_envs import state_twin

METADATA_SUFFIX = ".meta.json"
NO_DOWNLOAD_ENV_VAR = "FLOWRL_NO_DOWNLOAD"
DOWNLOAD_HOST = "rail.eecs.berkeley.edu"
NETWORK_CHECK_TIMEOUT_S = 3.0
DOWNLOAD_TIMEOUT_S = 30.0
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_HASH_CHUNK = 1 << 22

BASE_FIELDS = ("observations", "actions", "terminals")
STATE_FIELDS = ("qpos", "qvel")
BUTTON_FAMILIES = ("scene", "puzzle")


# ----------------------------------------------------------------------------- names


def display_path(path: str | os.PathLike) -> str:
    """Path with the home directory shown as '~', for messages."""
    text = str(path)
    home = os.path.expanduser("~")
    return "~" + text[len(home):] if text.startswith(home + os.sep) else text


def cli_command(verb: str, dataset_name: str, episodes: int | None = None, dataset_dir: str = DEFAULT_DATASET_DIR,
                extra: str = "") -> str:
    """The `python -m flowrl.suites.data ...` command a message suggests, with every option the user's
    files depend on (a reduced size, a dataset directory other than the default)."""
    command = f"python -m flowrl.suites.data {verb} {dataset_name}"
    if episodes:
        command += f" --episodes {episodes}"
    if os.path.expanduser(str(dataset_dir)) != os.path.expanduser(DEFAULT_DATASET_DIR):
        command += f" --dataset_dir {display_path(dataset_dir)}"
    return command + extra


def train_path(dataset_dir: str, file_stem: str) -> Path:
    return Path(os.path.expanduser(dataset_dir)) / f"{file_stem}.npz"


def val_path_for(train_file: str | os.PathLike) -> Path:
    """OGBench's rule: the validation file replaces '.npz' by '-val.npz'."""
    train_file = Path(train_file)
    return train_file.with_name(train_file.name[: -len(".npz")] + "-val.npz")


def metadata_path_for(npz_file: str | os.PathLike) -> Path:
    npz_file = Path(npz_file)
    return npz_file.with_name(npz_file.name + METADATA_SUFFIX)


def temporary_path_for(final_path: str | os.PathLike) -> Path:
    final_path = Path(final_path)
    return final_path.with_name(f"{final_path.name}.tmp-{os.getpid()}")


def required_fields(dataset_name: str) -> tuple[str, ...]:
    """Arrays a file must hold for OGBench's singletask relabelling of this dataset (state or visual)."""
    family = state_twin(dataset_name).split("-")[0]
    buttons = ("button_states",) if family in BUTTON_FAMILIES else ()
    return BASE_FIELDS + STATE_FIELDS + buttons


# ----------------------------------------------------------------------------- writing


def sha256_of_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_npz_deterministic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """What np.savez_compressed writes (deflated .npy members), minus the wall-clock timestamps."""
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for key, array in arrays.items():
            member = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o600 << 16  # the permissions numpy gives its members
            with archive.open(member, mode="w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


@contextlib.contextmanager
def atomic_output(final_path: str | os.PathLike):
    """Yield a temporary path; move it onto `final_path` on success, delete it on any failure
    (a full disk: flowrl.disk.NoSpace naming the file)."""
    temporary = temporary_path_for(final_path)
    try:
        with naming_no_space(display_path(final_path)):
            yield temporary
            os.replace(temporary, final_path)
    finally:
        # Also runs on KeyboardInterrupt: never leave a partial file behind.
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def stage_generated_npz(staged: list, path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict) -> dict:
    """Write `arrays` and its metadata under temporary names, for `staged_outputs` to move into
    place; returns the metadata with size and sha256.

    The metadata is staged first so that it is renamed first: if the renames are cut short
    (kill -9), an old `.npz` no longer matches the new metadata and is refused on load.
    """
    path = Path(path)
    temporary_npz, temporary_meta = temporary_path_for(path), temporary_path_for(metadata_path_for(path))
    staged += [(temporary_meta, metadata_path_for(path)), (temporary_npz, path)]
    write_npz_deterministic(temporary_npz, arrays)
    metadata = dict(metadata, sha256=sha256_of_file(temporary_npz), size_bytes=temporary_npz.stat().st_size)
    temporary_meta.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metadata


@contextlib.contextmanager
def staged_outputs():
    """Yield a list for (temporary, final) pairs; when the block ends normally, move every
    temporary onto its final name, otherwise (an error, Ctrl-C) delete the temporaries.

    Files already in place are untouched until all new ones are complete, so an interrupted
    `generate --force` keeps the previous dataset. Stop signals (Ctrl-C, SIGTERM) are held back
    during the renames (flowrl.stopping.held_back). A full disk raises flowrl.disk.NoSpace.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        try:
            yield staged
        except Exception as error:
            if is_no_space(error) and not isinstance(error, NoSpace):
                where = f" in {display_path(Path(staged[0][1]).parent)}" if staged else ""
                raise NoSpace(f"the new dataset files{where}") from error
            raise
        with stopping.held_back():
            for temporary, final in staged:
                os.replace(temporary, final)
    finally:
        remove_quietly(*(temporary for temporary, _ in staged))


def remove_quietly(*paths: str | os.PathLike) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# ----------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class VerifiedFile:
    path: Path
    rows: int  # steps stored in the file (one more per episode than transitions after loading)
    episodes: int
    metadata: dict | None  # None for official (not generated) files


def read_metadata(npz_file: str | os.PathLike) -> dict | None:
    meta_file = metadata_path_for(npz_file)
    if not meta_file.exists():
        return None
    try:
        return json.loads(meta_file.read_text())
    except (OSError, ValueError) as error:
        raise UserError(
            f"The metadata file {display_path(meta_file)} is unreadable ({error}); delete it and "
            f"{display_path(npz_file)} and run again to regenerate the dataset."
        ) from None


def corrupt_file_error(path: Path, reason: str, remedy: str) -> UserError:
    return UserError(f"Dataset file {display_path(path)} is truncated or corrupt ({reason}); {remedy}.")


def verify_dataset_file(path: str | os.PathLike, required_fields: tuple[str, ...], remedy: str,
                        frame_shape: tuple[int, ...] | None = None) -> VerifiedFile:
    """Refuse a missing, truncated or corrupt dataset file with one sentence that names `remedy`.

    With `frame_shape` (a visual dataset) the observations must be uint8 images of that shape.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Dataset file {display_path(path)} does not exist; {remedy}.")
    metadata = read_metadata(path)
    if metadata is not None:
        _verify_checksum(path, metadata, remedy)
    try:
        with zipfile.ZipFile(path) as archive:
            headers = _member_headers(archive, path, required_fields, remedy)
            if metadata is None:
                # No checksum to trust: read every member so the zip CRC-32 checks run.
                bad_member = archive.testzip()
                if bad_member is not None:
                    raise corrupt_file_error(path, f"bad CRC-32 in {bad_member}", remedy)
            terminals = _read_member(archive, "terminals")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as error:
        raise corrupt_file_error(path, f"{type(error).__name__}: {error}", remedy) from None
    rows = _check_lengths(path, {field: shape for field, (shape, _) in headers.items()}, remedy)
    if frame_shape is not None:
        _check_frames(path, *headers["observations"], frame_shape, remedy)
    episodes = _check_episode_ends(path, terminals, remedy)
    return VerifiedFile(path=path, rows=rows, episodes=episodes, metadata=metadata)


def _verify_checksum(path: Path, metadata: dict, remedy: str) -> None:
    expected = metadata.get("sha256")
    actual = sha256_of_file(path)
    if expected != actual:
        size_note = ""
        if "size_bytes" in metadata and metadata["size_bytes"] != path.stat().st_size:
            size_note = f", size {path.stat().st_size} bytes instead of {metadata['size_bytes']}"
        raise corrupt_file_error(
            path, f"sha256 {actual[:12]}… does not match {str(expected)[:12]}… in its metadata{size_note}", remedy
        )


def _member_headers(archive: zipfile.ZipFile, path: Path, required_fields, remedy) -> dict[str, tuple]:
    names = set(archive.namelist())
    missing = [field for field in required_fields if f"{field}.npy" not in names]
    if missing:
        raise UserError(
            f"Dataset file {display_path(path)} lacks the arrays {', '.join(missing)} that OGBench's "
            f"single-task relabelling needs; {remedy}."
        )
    headers = {}
    for field in required_fields:
        with archive.open(f"{field}.npy") as handle:
            headers[field] = _npy_header(handle)
    return headers


def _npy_header(handle) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from a .npy header alone, without decompressing the array."""
    version = np.lib.format.read_magic(handle)
    header_readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version in header_readers:
        shape, _, dtype = header_readers[version](handle)
        return shape, dtype
    # Rare newer header versions: fall back to reading the array.
    handle.seek(0)
    array = np.lib.format.read_array(handle, allow_pickle=False)
    return array.shape, array.dtype


def _check_frames(path: Path, shape: tuple, dtype: np.dtype, frame_shape: tuple, remedy: str) -> None:
    if dtype != np.uint8 or tuple(shape[1:]) != tuple(frame_shape):
        expected = "x".join(str(size) for size in frame_shape)
        raise UserError(
            f"Dataset file {display_path(path)} holds {dtype} observations of shape {tuple(shape[1:])}, not the "
            f"{expected} uint8 frames of a visual dataset; {remedy}."
        )


def _read_member(archive: zipfile.ZipFile, field: str) -> np.ndarray:
    with archive.open(f"{field}.npy") as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)


def _check_lengths(path: Path, shapes: dict[str, tuple], remedy: str) -> int:
    lengths = {field: shape[0] if shape else 0 for field, shape in shapes.items()}
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{field} {length}" for field, length in lengths.items())
        raise corrupt_file_error(path, f"arrays have different lengths: {detail}", remedy)
    rows = next(iter(lengths.values()))
    if rows == 0:
        raise corrupt_file_error(path, "it holds no steps", remedy)
    return rows


def _check_episode_ends(path: Path, terminals: np.ndarray, remedy: str) -> int:
    if not bool(terminals[-1]):
        raise corrupt_file_error(path, "its last step does not end an episode", remedy)
    return int(np.count_nonzero(terminals))


# Metadata that one generation run writes identically into its train and -val files.
GENERATION_FIELDS = ("dataset", "file_stem", "seed", "steps_per_episode", "generator_version",
                     "ogbench_version", "mujoco_version", "numpy_version")


def check_same_generation(train: VerifiedFile, val: VerifiedFile, remedy: str) -> None:
    """Refuse a training file and a `-val` file that were not generated together (say, a val
    file left by an interrupted `--force --seed 1` beside a seed-0 training file). Official
    files carry no metadata and are not compared."""
    if train.metadata is None and val.metadata is None:
        return
    if train.metadata is None or val.metadata is None:
        generated, other = (train, val) if val.metadata is None else (val, train)
        raise UserError(
            f"{display_path(generated.path)} was generated locally but {display_path(other.path)} was not "
            f"(it has no metadata), so they are not one dataset; {remedy}."
        )
    differences = [
        f"{field} {train.metadata.get(field)!r} vs {val.metadata.get(field)!r}"
        for field in GENERATION_FIELDS
        if train.metadata.get(field) != val.metadata.get(field)
    ]
    if (train.metadata.get("split"), val.metadata.get("split")) != ("train", "val"):
        differences.append(f"split {train.metadata.get('split')!r} vs {val.metadata.get('split')!r}")
    if differences:
        raise UserError(
            f"{display_path(train.path)} and {display_path(val.path)} come from different generation runs "
            f"({', '.join(differences)}); {remedy}."
        )


# ----------------------------------------------------------------------------- download


def downloads_disabled() -> bool:
    return os.environ.get(NO_DOWNLOAD_ENV_VAR, "").strip() not in ("", "0")


def network_reachable(host: str = DOWNLOAD_HOST, timeout: float = NETWORK_CHECK_TIMEOUT_S, port: int = 443) -> bool:
    """Can we open a TCP connection to the dataset server? Never blocks much beyond `timeout`.

    The probe runs in a daemon thread because name resolution ignores socket timeouts and can
    hang for a long time on machines without DNS.
    """
    reachable = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            reachable.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(reachable)


def can_download(url: str, log) -> bool:
    """Whether a download from `url` may be tried now: downloads are on and its host answers."""
    address = urllib.parse.urlsplit(url)
    if downloads_disabled():
        log(f"Not downloading from {address.hostname}: {NO_DOWNLOAD_ENV_VAR} is set.")
        return False
    port = address.port or (443 if address.scheme == "https" else 80)
    if not network_reachable(address.hostname, port=port):
        log(f"Not downloading from {address.hostname}: it is unreachable (offline).")
        return False
    return True


def download(url: str, final: Path, log, check=None) -> bool:
    """`url` into `final` through a temporary file that takes the final name only when complete
    (and, with `check`, only once `check(temporary)` accepts it); False with one line if it fails."""
    final.parent.mkdir(parents=True, exist_ok=True)
    log(f"Downloading {url} -> {display_path(final)}")
    try:
        with atomic_output(final) as temporary, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as reply:
            with open(temporary, "wb") as handle:
                for chunk in iter(lambda: reply.read(1 << 20), b""):
                    handle.write(chunk)
            if check is not None:
                check(temporary)
    except OSError as error:
        log(f"Download of {url} failed ({error}).")
        return False
    return True


def try_download_official(dataset_name: str, dataset_dir: str, log) -> bool:
    """Fetch '<dataset>.npz' and '-val.npz' from OGBench's server; False if that is not possible.

    The validation file is fetched first so that a present training file implies a complete
    download; each file goes through a temporary name and is removed if interrupted.
    """
    if not can_download(OFFICIAL_URL, log):
        return False
    target = train_path(dataset_dir, dataset_name)
    for final in (val_path_for(target), target):
        if not final.exists() and not download(f"{OFFICIAL_URL}/{final.name}", final, log):
            return False
    return True
