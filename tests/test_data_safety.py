"""Data safety in generation: an interrupted `generate --force` keeps the previous dataset, a
`-val` file from another generation run is refused, and workers die with a killed parent.

Uses reduced pointmaze datasets, the quickest to generate (2 episodes of 201 steps in-process).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowrl import stopping
from flowrl.making.generate import generate_dataset
from flowrl.suites.data import files, load_singletask_data
from flowrl.suites.data.__main__ import main as data_cli
from flowrl.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET, ENV = "pointmaze-medium-stitch-v0", "pointmaze-medium-stitch-singletask-task1-v0"
STEM = "pointmaze-medium-stitch-v0-ep1"  # the reduced dataset's file stem


def _quiet(*args, **kwargs):
    pass


def _generate(directory: Path, seed: int) -> Path:
    return Path(generate_dataset(DATASET, dataset_dir=str(directory), episodes=1, workers=1, seed=seed, log=_quiet))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def seed0_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("seed0")
    _generate(directory, seed=0)
    return directory


@pytest.fixture
def existing(seed0_dir, tmp_path):
    """A private copy of a complete seed-0 dataset (4 files) that a test may replace."""
    for path in seed0_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


@pytest.mark.parametrize("failing_write", [1, 2])  # 1: the -val file, 2: the training file
def test_interrupted_regeneration_keeps_the_previous_dataset(existing, monkeypatch, failing_write):
    before = _snapshot(existing)
    assert len(before) == 4
    original_write, calls = files.write_npz_deterministic, []

    def interrupted_write(path, arrays):
        calls.append(path)
        original_write(path, arrays)
        if len(calls) == failing_write:
            raise KeyboardInterrupt  # Ctrl-C while the new files are being written

    monkeypatch.setattr(files, "write_npz_deterministic", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        _generate(existing, seed=1)
    assert _snapshot(existing) == before  # same four files, same bytes, no temporaries left
    data = load_singletask_data(ENV, dataset_dir=str(existing), dataset_episodes=1, generate=False, log=_quiet)
    assert "seed 0" in data.source and len(data.train["observations"]) == 200


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_during_the_final_renames_is_delivered_after_them(existing, monkeypatch, signum):
    """The four renames are not split by Ctrl-C or SIGTERM: the new dataset is complete, then the
    signal is acted on. raise_signal runs the handler before it returns (os.kill did not say when:
    the handler could run after the renames, once the block had put the previous one back)."""
    original_replace, renamed = os.replace, []

    def replace_with_a_stop_signal(source, target):
        if not renamed:
            signal.raise_signal(signum)
        renamed.append(Path(target).name)
        original_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_with_a_stop_signal)
    with stopping.stop_signals_raise(), pytest.raises(KeyboardInterrupt):  # SIGTERM: stopping.Stopped
        _generate(existing, seed=1)
    monkeypatch.undo()
    assert len(renamed) == 4 and len(list(existing.iterdir())) == 4
    data = load_singletask_data(ENV, dataset_dir=str(existing), dataset_episodes=1, generate=False, log=_quiet)
    assert "seed 1" in data.source


def _generate_cli(directory: Path) -> int:
    return data_cli(["generate", DATASET, "--episodes", "1", "--workers", "1", "--seed", "1", "--force",
                     "--dataset_dir", str(directory)])


def test_sigterm_stops_a_generation_with_one_line_and_keeps_the_previous_dataset(existing, monkeypatch, capsys):
    before = _snapshot(existing)

    def sigterm_while_writing(path, arrays):
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(files, "write_npz_deterministic", sigterm_while_writing)
    assert _generate_cli(existing) == 143
    assert capsys.readouterr().err == ("Stopped by SIGTERM; no partial dataset was left behind and an existing one "
                                       "was kept.\n")
    assert _snapshot(existing) == before


def test_a_full_disk_stops_a_generation_with_one_sentence_and_keeps_the_previous_dataset(existing, monkeypatch,
                                                                                          capsys):
    before = _snapshot(existing)

    def full_after_a_few_bytes(path, arrays):
        Path(path).write_bytes(b"PK partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "write_npz_deterministic", full_after_a_few_bytes)
    assert _generate_cli(existing) == 1
    assert capsys.readouterr().err == (
        f"error: No space left on the device for the new dataset files in {files.display_path(existing)}: the "
        "half-written file was removed and nothing else was changed; free some space and run the command again.\n")
    assert _snapshot(existing) == before


def _verify(directory: Path, capsys) -> tuple[int, str]:
    code = data_cli(["verify", DATASET, "--episodes", "1", "--dataset_dir", str(directory)])
    return code, capsys.readouterr().err


def test_verify_refuses_a_val_file_from_another_seed(existing, tmp_path_factory, capsys):
    other = tmp_path_factory.mktemp("seed1")
    _generate(other, seed=1)
    capsys.readouterr()  # the progress bar
    assert _verify(existing, capsys) == (0, "")
    for name in (f"{STEM}-val.npz", f"{STEM}-val.npz.meta.json"):
        shutil.copy(other / name, existing / name)
    code, stderr = _verify(existing, capsys)
    assert code == 1 and stderr.count("\n") == 1
    assert re.match(r"error: .*-ep1\.npz and .*-ep1-val\.npz come from different generation runs \(seed 0 vs 1\); ",
                    stderr), stderr


def test_generated_val_beside_a_train_file_without_metadata_is_refused(existing):
    (existing / f"{STEM}.npz.meta.json").unlink()
    with pytest.raises(UserError, match=r"-val\.npz was generated locally but .*-ep1\.npz was not"):
        load_singletask_data(ENV, dataset_dir=str(existing), dataset_episodes=1, generate=False, log=_quiet)


# ----------------------------------------------------------------------------- kill -9


def _spawned_workers(parent_pid: int) -> list[int]:
    """Pids of the multiprocessing workers whose parent is `parent_pid` (Linux /proc)."""
    workers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent_pid and b"spawn_main" in Path(f"/proc/{entry}/cmdline").read_bytes():
                workers.append(int(entry))
    return workers


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init to reap it; it holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_parent_killed_by_sigkill(tmp_path):
    env = {"FLOWRL_NO_DOWNLOAD": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    # ~20 s of episodes on 2 workers: still generating when killed, whatever the machine's load.
    parent = subprocess.Popen(
        [sys.executable, "-m", "flowrl.suites.data", "generate", "pointmaze-medium-stitch-v0", "--episodes", "600",
         "--workers", "2", "--dataset_dir", str(tmp_path)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    progress = bytearray()
    reader = threading.Thread(target=lambda: [progress.extend(c) for c in iter(lambda: parent.stdout.read1(4096), b"")],
                              daemon=True)
    reader.start()
    workers = []
    try:
        # Kill once both workers are collecting episodes (the first plain progress line, at 10 %).
        deadline = time.monotonic() + 120
        while not (len(workers) == 2 and re.search(rb"[1-9][0-9]*/\d+ episodes", bytes(progress))):
            assert parent.poll() is None, bytes(progress)[-2000:]
            assert time.monotonic() < deadline, "workers never started"
            workers = _spawned_workers(parent.pid)
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)], "workers outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:  # only our own workers, still running the spawn entry point
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
    assert not list(tmp_path.iterdir()), "a killed generation left files behind"
