"""Stops that lose nothing and say so (flowrl.stopping, flowrl.disk): Ctrl-C, SIGTERM and SIGUSR1
end a run at the next safe point with a checkpoint and one line, a second Ctrl-C at once, a full
disk with one sentence; every such run resumes to exactly the uninterrupted results.

Signals are raised with `signal.raise_signal` from a known point of the run (a wrapped function):
it runs the Python handler before it returns, so no test depends on when the interpreter gets to
it. Tiny in-process runs (`flowrl.testing.use_fake_world`); main.py end to end: tests/test_main.py.
"""

import errno
import os
import re
import shutil
import signal

import jax
import numpy as np
import pytest

from flowrl import disk, run_files, stopping
from flowrl.run import space
from flowrl.run.files import ROW_SUMS_FILE
from flowrl.engine import checkpoints
from flowrl.engine.env_pool import EnvPool
from flowrl.errors import UserError
from flowrl.engine.online import MemberEnvs
from flowrl.run.runner import Run, resume
from flowrl.testing import OneUpdateChunks, stop_online_after_step, tiny_run_settings, use_fake_world
from flowrl.engine.training import ChunkRunner

QUIET = lambda *_: None
SETTINGS = dict(num_seeds=2, save_interval=0)  # 8 updates, rows every 2, checkpoints before the evaluations at 4 and 8
ONLINE = dict(offline_steps=4, online_steps=8, buffer_size=300)  # updates 1-4 offline, 5-12 online

pytestmark = pytest.mark.xdist_group('test_stopping')


@pytest.fixture(scope='module')
def world():
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        patch.setattr('flowrl.run.runner.ChunkPacer', OneUpdateChunks)
        yield patch


def read(run_dir, name):
    rows = run_files.CsvLog(os.path.join(run_dir, name)).read()
    return [{k: v for k, v in row.items() if k != 'env_steps_per_s'} for row in rows]


def assert_same_run(run_dir, reference_dir, upto=None):
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        rows = [read(d, name) for d in (run_dir, reference_dir)]
        if upto is not None:
            rows = [[r for r in rs if int(r['step']) <= upto] for rs in rows]
        assert rows[0] == rows[1], name
    if upto is None:
        results = [run_files.read_json(os.path.join(d, run_files.RESULTS_FILE)) for d in (run_dir, reference_dir)]
        assert results[0]['members'] == results[1]['members']


@pytest.fixture(scope='module')
def straight(world, tmp_path_factory):
    run = Run(tiny_run_settings(tmp_path_factory.mktemp('straight'), **SETTINGS), log=QUIET)
    run.train()
    return run.run_dir


@pytest.fixture(scope='module')
def straight_online(world, tmp_path_factory):
    run = Run(tiny_run_settings(tmp_path_factory.mktemp('straight_online'), **SETTINGS, **ONLINE), log=QUIET)
    run.train()
    return run.run_dir


def signal_after_chunk(monkeypatch, first_step: int, *signums):
    """Raises `signums` in this process right after the chunk that starts at `first_step`."""
    original = ChunkRunner.run

    def run_then_signal(self, states, rngs, totals, dataset, num_updates, start=0, alive=None):
        result = original(self, states, rngs, totals, dataset, num_updates, start, alive)
        if start == first_step:
            for signum in signums:
                signal.raise_signal(signum)
        return result

    monkeypatch.setattr(ChunkRunner, 'run', run_then_signal)


def stopped_run(tmp_path, **changes):
    run = Run(tiny_run_settings(tmp_path / 'stopped', **{**SETTINGS, **changes}), log=QUIET)
    with pytest.raises(stopping.Stopped) as stop:
        run.train()
    return run, stop.value


def resume_command(run):
    return re.escape(f'continue with: python main.py --resume={run.run_dir}')


# ----------------------------------------------------------------------------- the stopping module


def test_exit_codes_are_what_a_shell_reports_for_the_signal():
    assert [stopping.exit_code(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)] == [130, 143, 138]
    assert stopping.Stopped(signal.SIGTERM).exit_code == 143


def test_a_command_raises_at_once_and_a_training_loop_records_the_first_request():
    before = {s: signal.getsignal(s) for s in stopping.STOP_SIGNALS}
    with stopping.stop_signals_raise():
        with pytest.raises(stopping.Stopped) as stop:
            signal.raise_signal(signal.SIGTERM)
        assert (stop.value.signum, stop.value.at_once) == (signal.SIGTERM, True)

        described = []
        with pytest.raises(stopping.Stopped) as stop:
            with stopping.at_safe_points(lambda s: described.append(s.signum) or 'the line'):
                signal.raise_signal(signal.SIGTERM)  # recorded, not raised
                signal.raise_signal(signal.SIGUSR1)  # a stop is under way: nothing more
                assert stopping.requested() == signal.SIGTERM
                signal.raise_signal(signal.SIGINT)  # a second Ctrl-C: at once
        assert (stop.value.signum, stop.value.at_once, stop.value.message) == (signal.SIGINT, True, 'the line')
        assert described == [signal.SIGINT] and stopping.requested() is None

        with stopping.at_safe_points():
            stopping.raise_if_requested()  # nothing asked: nothing raised
            signal.raise_signal(signal.SIGUSR1)
            with pytest.raises(stopping.Stopped) as stop:
                stopping.raise_if_requested()
            assert (stop.value.signum, stop.value.at_once) == (signal.SIGUSR1, False)
    assert {s: signal.getsignal(s) for s in stopping.STOP_SIGNALS} == before


def test_signals_held_back_are_delivered_after_the_block_in_order():
    done = []
    with stopping.stop_signals_raise():
        with pytest.raises(stopping.Stopped) as stop:
            with stopping.held_back():
                signal.raise_signal(signal.SIGUSR1)
                signal.raise_signal(signal.SIGTERM)
                done.append('the whole block')
        assert done == ['the whole block'] and stop.value.signum == signal.SIGUSR1


# ----------------------------------------------------------------------------- a run stopped gracefully


@pytest.mark.parametrize('signum, after_chunk_at, stop_at, rows', [
    (signal.SIGTERM, 2, 3, [2]),  # between two rows: the checkpoint keeps the sums of update 3
    (signal.SIGUSR1, 3, 4, [2, 4]),  # at an evaluation: saved, then stopped before evaluating
])
def test_a_stopped_run_saves_where_it_stopped_and_resumes_exactly(straight, tmp_path, monkeypatch, signum,
                                                                  after_chunk_at, stop_at, rows):
    signal_after_chunk(monkeypatch, after_chunk_at, signum)
    run, stop = stopped_run(tmp_path)
    assert stop.exit_code == 128 + signum and not stop.at_once
    assert re.fullmatch(rf'Stopped by {stopping.signal_name(signum)} at update {stop_at} of 8, with a checkpoint in '
                        rf'{re.escape(run.checkpoint_dir)}; {resume_command(run)}', stop.message)
    assert checkpoints.steps(run.checkpoint_dir) == [stop_at]
    assert checkpoints.damage(run.checkpoint_dir, stop_at) is None  # the sums are covered by the checksums
    sums = checkpoints.attachment(run.checkpoint_dir, stop_at, ROW_SUMS_FILE)
    assert (sums is not None) == (stop_at % 2 == 1)
    assert sorted({int(r['step']) for r in read(run.run_dir, run_files.TRAIN_CSV)}) == rows
    assert read(run.run_dir, run_files.EVAL_CSV) == []
    assert run.evaluation.envs is None or run.evaluation.envs.pool.closed
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight)


def test_a_stop_during_an_evaluation_keeps_the_checkpoint_before_it(straight, tmp_path, monkeypatch):
    original, steps = EnvPool.step, []

    def step_then_ctrl_c(self, actions, active):
        steps.append(1)
        if len(steps) == 2:  # in the middle of the first evaluation
            signal.raise_signal(signal.SIGINT)
        return original(self, actions, active)

    monkeypatch.setattr(EnvPool, 'step', step_then_ctrl_c)
    run, stop = stopped_run(tmp_path)
    assert stop.exit_code == 130 and len(steps) == 2  # abandoned at its next step
    assert re.fullmatch(r'Stopped by Ctrl-C \(SIGINT\) during the evaluation at update 4; the checkpoint saved before '
                        rf'it is kept and the resumed run evaluates again; {resume_command(run)}', stop.message)
    assert checkpoints.steps(run.checkpoint_dir) == [4] and read(run.run_dir, run_files.EVAL_CSV) == []
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight)


def test_a_second_ctrl_c_during_a_save_stops_once_the_checkpoint_is_complete(straight, tmp_path, monkeypatch):
    original = checkpoints.write_manifest

    def ctrl_c_twice_while_saving(path):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        original(path)

    monkeypatch.setattr(checkpoints, 'write_manifest', ctrl_c_twice_while_saving)
    run, stop = stopped_run(tmp_path)
    assert stop.at_once and stop.exit_code == 130
    assert re.fullmatch(rf'Stopped at once by Ctrl-C \(SIGINT\) at update 4; continue from update 4 with: python '
                        rf'main.py --resume={re.escape(run.run_dir)}', stop.message)
    assert checkpoints.steps(run.checkpoint_dir) == [4] and checkpoints.damage(run.checkpoint_dir, 4) is None
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight)


def test_a_second_ctrl_c_stops_at_once_losing_only_what_follows_the_checkpoint(straight, tmp_path, monkeypatch):
    signal_after_chunk(monkeypatch, 5, signal.SIGINT, signal.SIGINT)
    run, stop = stopped_run(tmp_path)
    assert stop.at_once and 'Stopped at once by Ctrl-C (SIGINT) at update 5; continue from update 4 with:' in stop.message
    assert checkpoints.steps(run.checkpoint_dir) == [4]
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight)


def test_a_run_stopped_online_saves_its_buffers_and_resumes(straight_online, tmp_path, monkeypatch):
    stop_online_after_step(monkeypatch, 7)
    run, stop = stopped_run(tmp_path, **ONLINE)
    assert stop.exit_code == 143 and 'Stopped by SIGTERM at update 7 of 12, with a checkpoint' in stop.message
    assert checkpoints.steps(run.checkpoint_dir) == [4, 7]
    assert run.online.envs.pool.closed
    monkeypatch.undo()
    restored = Run(run.s, run_dir=run.run_dir, log=QUIET)
    restored.restore()
    np.testing.assert_array_equal(restored.position.buffers.size, [3, 3])  # the transitions of updates 5-7
    assert resume(run.run_dir, log=QUIET)['steps'] == 12
    assert_same_run(run.run_dir, straight_online, upto=6)


def test_a_run_stopped_online_resumes_exactly(straight_online, tmp_path, monkeypatch):
    stop_online_after_step(monkeypatch, 7)
    run, _ = stopped_run(tmp_path, **ONLINE)
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight_online)


def test_an_unfinished_save_is_removed_on_resume_in_one_line(straight, tmp_path, monkeypatch):
    signal_after_chunk(monkeypatch, 5, signal.SIGTERM)
    run, _ = stopped_run(tmp_path)
    monkeypatch.undo()
    leftover = os.path.join(run.checkpoint_dir, '8.orbax-checkpoint-tmp')  # a save cut short by kill -9
    shutil.copytree(os.path.join(run.checkpoint_dir, '6'), leftover)
    lines = []
    resume(run.run_dir, log=lines.append)
    assert not os.path.exists(leftover)
    assert [line for line in lines if 'orbax-checkpoint-tmp' in line] == [
        f'Removed 8.orbax-checkpoint-tmp from {run.checkpoint_dir}: a checkpoint whose save was cut short.']
    assert_same_run(run.run_dir, straight)


# ----------------------------------------------------------------------------- a full disk


def no_space(path=None):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def test_a_full_disk_while_appending_a_row_leaves_the_log_as_it_was(straight, tmp_path, monkeypatch):
    import csv

    original, before = csv.DictWriter.writerows, {}

    def half_a_row_then_full(self, rows):
        if rows[0]['step'] == 6:
            before['text'] = open(run_path(tmp_path)).read()
            self.writer.writerow(list(rows[0].values())[:3])  # part of the line reaches the file
            raise no_space()
        return original(self, rows)

    monkeypatch.setattr(csv.DictWriter, 'writerows', half_a_row_then_full)
    run = Run(tiny_run_settings(tmp_path / 'stopped', **SETTINGS), log=QUIET)
    with pytest.raises(disk.NoSpace) as error:
        run.train()
    train_csv = os.path.join(run.run_dir, run_files.TRAIN_CSV)
    assert str(error.value) == (
        f'No space left on the device for {train_csv} at update 6: the half-written file was removed and nothing else '
        f'was changed; the newest good checkpoint is update 4; free some space, then continue with: '
        f'python main.py --resume={run.run_dir}.')
    assert open(train_csv).read() == before['text']  # the half row is gone
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight)


def run_path(tmp_path):
    (run_dir,) = [os.path.join(root, d) for root, ds, _ in os.walk(tmp_path / 'stopped') for d in ds
                  if d.startswith('flow_bc_')]
    return os.path.join(run_dir, run_files.TRAIN_CSV)


def test_a_full_disk_while_saving_a_checkpoint_removes_it_and_names_the_good_one(straight, tmp_path, monkeypatch):
    original = checkpoints.write_manifest

    def full_at_8(path):
        if path.endswith(f'{os.sep}8'):
            raise no_space(os.path.join(path, checkpoints.MANIFEST))
        original(path)

    monkeypatch.setattr(checkpoints, 'write_manifest', full_at_8)
    run = Run(tiny_run_settings(tmp_path / 'stopped', **SETTINGS), log=QUIET)
    with pytest.raises(disk.NoSpace, match=re.escape(
            f'No space left on the device for checkpoint 8 in {run.checkpoint_dir} at update 8: the half-written file '
            'was removed and nothing else was changed; the newest good checkpoint is update 4;')):
        run.train()
    assert sorted(os.listdir(run.checkpoint_dir)) == ['4']
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight)


def test_a_full_disk_while_writing_a_json_file_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / 'results.json'
    path.write_text('{"old": 1}\n')

    def full_fsync(fd):
        raise no_space()

    monkeypatch.setattr(os, 'fsync', full_fsync)
    with pytest.raises(disk.NoSpace, match=rf'^No space left on the device for {re.escape(str(path))}: the '):
        run_files.write_json(str(path), dict(new=2))
    assert os.listdir(tmp_path) == ['results.json'] and path.read_text() == '{"old": 1}\n'


def test_disk_space_is_checked_before_a_run_starts(world, tmp_path, monkeypatch):
    free = {'bytes': 10**12}
    monkeypatch.setattr(disk, 'free_bytes', lambda path: free['bytes'])
    run = Run(tiny_run_settings(tmp_path / 'first', **SETTINGS), log=QUIET)
    size = sum(x.nbytes for x in jax.tree.leaves(dict(states=run.position.states, rngs=run.position.rngs)))
    # Two checkpoints (at 4 and 8; orbax would keep two and write a third); rows: 4 logged, 2 at
    # checkpoints, 2 evaluations, of 2 members each.
    logs = (4 + 2 + 2) * 2 * space.ROW_BYTES
    free['bytes'] = 2 * size + logs - 1
    save_dir = str(tmp_path / 'second')
    with pytest.raises(UserError) as error:
        Run(tiny_run_settings(save_dir, **SETTINGS), log=QUIET)
    assert str(error.value) == (
        f'--save_dir {save_dir!r} has {disk.format_bytes(2 * size + logs - 1)} free and this run needs about '
        f'{disk.format_bytes(2 * size + logs)} there (2 checkpoint(s) of {disk.format_bytes(size)}: '
        f'{disk.format_bytes(2 * size)}, logs and report: {disk.format_bytes(logs)}); free some space or pass '
        'another --save_dir.')
    assert not os.path.exists(save_dir)  # refused before the run directory was made
    free['bytes'] += 1
    Run(tiny_run_settings(save_dir, **SETTINGS), log=QUIET)


def test_the_space_refusal_gives_the_place_the_sizes_and_the_way_out(monkeypatch):
    monkeypatch.setattr(disk, 'free_bytes', lambda path: 999)
    disk.require_space('/x', {'logs': 999}, 'X', 'free some')  # fits exactly
    with pytest.raises(UserError) as error:
        disk.require_space('/x', {'1 checkpoint(s) of 1.2 GB': 1_234_567_890, 'logs and report': 300},
                           "The run directory '/x'", 'free some space first')
    assert str(error.value) == ("The run directory '/x' has 999 B free and this run needs about 1.2 GB there "
                                "(1 checkpoint(s) of 1.2 GB: 1.2 GB, logs and report: 300 B); free some space first.")


# ----------------------------------------------------------------------------- workers


def test_environment_workers_ignore_stop_signals_and_leave_quietly_with_their_parent(capfd):
    from flowrl.testing import FakeEnv

    pool = EnvPool(FakeEnv, 2, workers=2)
    first = pool.reset(np.arange(2))  # both workers are in their loop
    for process in pool.processes:  # what a terminal's Ctrl-C or a batch system's SIGTERM sends
        for signum in stopping.STOP_SIGNALS:
            os.kill(process.pid, signum)
    np.testing.assert_array_equal(pool.reset(np.arange(2)), first)  # still there, still answering
    for connection in pool.connections:  # the parent is gone (stopped at once, or killed)
        connection.close()
    for process in pool.processes:
        process.join(timeout=30)
    assert [process.exitcode for process in pool.processes] == [0, 0]
    pool.close()
    assert 'Traceback' not in capfd.readouterr().err


FULL_DISK_SCRIPT = '''
import os, sys
import numpy as np
from flowrl import disk
from flowrl.engine import checkpoints
directory = os.path.join(sys.argv[1], 'checkpoints')
checkpoints.save(directory, 1, dict(a=np.zeros(10, np.float32)))
rng = np.random.default_rng(0)
try:  # 8 MB that do not compress, in 100 arrays (orbax writes them concurrently), on a 512 KB filesystem
    checkpoints.save(directory, 2, {f'a{i}': rng.random(20_000, np.float32) for i in range(100)})
except disk.NoSpace as error:
    print(error)
print(sorted(os.listdir(directory)))
'''


@pytest.mark.skipif(shutil.which('unshare') is None, reason='needs unshare (util-linux) to mount a tiny filesystem')
def test_orbax_on_a_full_filesystem_gives_one_sentence_and_keeps_the_checkpoint_before(tmp_path):
    """A real 512 KB tmpfs, mounted in a mount namespace of its own (no privileges needed where
    user namespaces are allowed): orbax's own error is recognised, its temporary directory
    removed, and none of its error reports reach the console."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mount = 'mount -t tmpfs -o size=512k tmpfs "$0" && echo MOUNTED && exec "$1" -c "$2" "$0"'
    result = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', mount, str(tmp_path),
                             sys.executable, FULL_DISK_SCRIPT], cwd=repo, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=repo))
    if not result.stdout.startswith('MOUNTED'):
        pytest.skip(f'no tiny filesystem could be mounted here: {result.stderr.strip()[-200:]}')
    assert result.returncode == 0, result.stderr
    checkpoint_dir = os.path.join(tmp_path, 'checkpoints')
    assert result.stdout.splitlines()[1:] == [
        f'No space left on the device for checkpoint 2 in {checkpoint_dir}: the half-written file was removed and '
        'nothing else was changed; free some space and run the command again.', "['1']"]
    assert result.stderr == ''


def sigterm_when_the_first_episodes_start(monkeypatch):
    """Raises SIGTERM in this process while the environments start their first online episodes."""
    original = MemberEnvs.restart

    def restart_then_sigterm(self, step):
        signal.raise_signal(signal.SIGTERM)
        return original(self, step)

    monkeypatch.setattr(MemberEnvs, 'restart', restart_then_sigterm)


def test_a_stop_before_the_first_online_step_keeps_the_checkpoint_it_has(straight_online, tmp_path, monkeypatch):
    sigterm_when_the_first_episodes_start(monkeypatch)
    run, stop = stopped_run(tmp_path, **ONLINE)
    assert stop.message.startswith('Stopped by SIGTERM at update 4 of 12, with a checkpoint in ')
    assert checkpoints.steps(run.checkpoint_dir) == [4]
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight_online)


def test_a_stop_before_the_first_online_step_without_a_checkpoint_there_resumes_exactly(world, tmp_path,
                                                                                      monkeypatch):
    """No checkpoint at the last offline update (evaluations at 6 and 12): the stop saves one after
    the environments started their first episodes and drew their first actions; those checkpoints
    hold no episodes, so the resumed run starts them again and must draw the same actions."""
    changes = dict(**ONLINE, eval_interval=6)
    straight = Run(tiny_run_settings(tmp_path / 'straight', **SETTINGS, **changes), log=QUIET)
    straight.train()
    sigterm_when_the_first_episodes_start(monkeypatch)
    run, stop = stopped_run(tmp_path, **changes)
    assert stop.message.startswith('Stopped by SIGTERM at update 4 of 12, with a checkpoint in ')
    assert checkpoints.steps(run.checkpoint_dir) == [4]
    monkeypatch.undo()
    resume(run.run_dir, log=QUIET)
    assert_same_run(run.run_dir, straight.run_dir)
