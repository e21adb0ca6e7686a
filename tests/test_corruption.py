"""Damaged checkpoints are caught, never trusted: every checkpoint carries the sha256 of its
files; a resume falls back to the newest good one (saying so) with exactly the results of the
uninterrupted run, or refuses in one sentence. Never rc 0 with silently different results."""

import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from flowrl import run_files
from flowrl.engine import checkpoints
from flowrl.errors import UserError
from flowrl.run.runner import Run, resume
from flowrl.testing import tiny_run_settings, use_fake_world

QUIET = lambda *_: None


def flip_one_bit(path):
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0x01
    open(path, 'wb').write(bytes(data))


def garble_16_bytes(path):
    data = bytearray(open(path, 'rb').read())
    start = max(0, len(data) // 2 - 8)
    data[start:start + 16] = np.random.default_rng(0).integers(0, 256, 16, dtype=np.uint8).tobytes()
    open(path, 'wb').write(bytes(data))


def truncate(path):
    os.truncate(path, os.path.getsize(path) // 2)


def largest_array_file(step_path):
    """The largest file of array data (orbax's ocdbt chunks), where a flip changes weights silently."""
    files = [os.path.join(root, name) for root, _, names in os.walk(step_path) for name in names
             if os.path.basename(root) == 'd']
    return max(files, key=os.path.getsize)


# One xdist worker builds the module's fixtures once and runs every test that reads them.
pytestmark = pytest.mark.xdist_group('test_corruption')


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
    """2 seeds, 8 updates, checkpoints at 4 and 8; run once for the module."""
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        run = Run(tiny_run_settings(tmp_path_factory.mktemp('run'), num_seeds=2), log=QUIET)
        run.train()
        yield run.run_dir


@pytest.fixture
def damaged_copy(finished_run, tmp_path, monkeypatch):
    """A copy of the finished run without its results, to damage and resume."""
    use_fake_world(monkeypatch)
    copy = str(tmp_path / 'run')
    shutil.copytree(finished_run, copy)
    os.remove(os.path.join(copy, run_files.RESULTS_FILE))
    return copy, os.path.join(copy, run_files.CHECKPOINT_DIR)


@pytest.mark.parametrize('damage', [flip_one_bit, garble_16_bytes, truncate])
def test_resume_falls_back_from_a_damaged_latest_checkpoint(finished_run, damaged_copy, damage):
    copy, directory = damaged_copy
    damage(largest_array_file(os.path.join(directory, '8')))
    lines = []
    results = resume(copy, log=lines.append)
    (fallback,) = [line for line in lines if line.startswith('Checkpoint 8')]
    assert 'does not match its checksum' in fallback
    assert fallback.endswith('using checkpoint 4 instead (set aside as rejected-8).')
    assert checkpoints.steps(directory) == [4, 8]  # 8 saved again, the damaged one kept aside
    assert checkpoints.damage(directory, 8) is None
    original = run_files.read_json(os.path.join(finished_run, run_files.RESULTS_FILE))
    assert results['members'] == original['members']


def test_resume_refuses_when_no_checkpoint_is_good(damaged_copy):
    copy, directory = damaged_copy
    for step in (4, 8):
        flip_one_bit(largest_array_file(os.path.join(directory, str(step))))
    with pytest.raises(UserError, match=r'^No usable checkpoint in .*: 8 has a file that does not match its '
                                        r'checksum .*; 4 has a file that does not match its checksum'):
        resume(copy, log=QUIET)


TREE = dict(w=jnp.arange(6.0).reshape(2, 3), key=jnp.array([1, 2], jnp.uint32))


def test_a_checkpoint_without_its_manifest_is_used_only_when_no_verified_one_exists(tmp_path):
    for step in (1, 2):
        checkpoints.save(tmp_path, step, {k: v + step for k, v in TREE.items()})
    os.remove(os.path.join(tmp_path, '2', checkpoints.MANIFEST))  # interrupted before its manifest
    lines = []
    assert checkpoints.pick_step(tmp_path, log=lines.append) == 1
    assert lines == ['Checkpoint 2 has no checksum manifest: using checkpoint 1 instead.']
    os.remove(os.path.join(tmp_path, '1', checkpoints.MANIFEST))  # a run saved before manifests existed
    lines.clear()
    restored = checkpoints.restore(tmp_path, TREE, log=lines.append)
    assert int(restored['w'][0, 0]) == 2 and 'restoring it unverified' in lines[0]


def test_evaluating_a_damaged_step_refuses_and_leaves_the_files_alone(tmp_path):
    for step in (1, 2):
        checkpoints.save(tmp_path, step, TREE)
    truncate(largest_array_file(os.path.join(tmp_path, '2')))
    with pytest.raises(UserError, match=r'^Checkpoint 2 in .* has a file that does not match its checksum'):
        checkpoints.restore(tmp_path, TREE, step=2, log=QUIET)
    lines = []
    assert checkpoints.pick_step(tmp_path, log=lines.append) == 1 and checkpoints.steps(tmp_path) == [1, 2]
    assert lines[0].endswith('using checkpoint 1 instead.')
