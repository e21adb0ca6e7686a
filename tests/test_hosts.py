"""One sweep over several processes of JAX's multi-controller runtime (flowrl.engine.placement), on
this machine: CPU processes on localhost joined with jax.distributed and gloo collectives, each
one running tests/hosts_worker.py (the tiny flow BC run of flowrl.testing on the fake world).
The inactive members that pad a member count: one process with forced host devices."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from flowrl import run_files
from flowrl.engine import checkpoints
from flowrl.run.runner import Run
from flowrl.testing import use_fake_world
from flowrl.testing import write_fake_shards
from hosts_worker import run_settings

# One xdist worker runs the module: its runs (module fixtures) are made once and shared.
pytestmark = pytest.mark.xdist_group('test_hosts')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, 'tests', 'hosts_worker.py')
QUIET = lambda *_: None  # noqa: E731
TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_processes(count: int, save_dir, scenario: str, *extra) -> list:
    """Runs `count` worker processes together; their (return code, stdout, stderr)."""
    port, env = free_port(), dict(os.environ, JAX_PLATFORMS='cpu', FLOWRL_NO_DOWNLOAD='1')
    env.pop('XLA_FLAGS', None)
    workers = [subprocess.Popen([sys.executable, WORKER, str(i), str(count), str(port), str(save_dir), scenario,
                                 *map(str, extra)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(count)]
    try:
        outputs = [w.communicate(timeout=TIMEOUT) for w in workers]
        return [(w.returncode, *output) for w, output in zip(workers, outputs)]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()


def run_dirs(save_dir) -> list:
    group = os.path.join(save_dir, 'Debug')
    return sorted(os.path.join(group, name) for name in os.listdir(group)) if os.path.isdir(group) else []


def read_rows(run_dir, name, drop=('env_steps_per_s',)):
    return [{k: v for k, v in row.items() if k not in drop} for row in run_files.CsvLog(os.path.join(run_dir, name)).read()]


def saved_states(run_dir, step: int) -> dict:
    """Every array of checkpoint `step` (states and keys), on this process's host."""
    directory = os.path.join(run_dir, run_files.CHECKPOINT_DIR)
    path = os.path.join(checkpoints.step_dir(directory, step), 'default')
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.metadata(path).item_metadata
        like = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
        return jax.tree.map(np.asarray, checkpointer.restore(path, like))


def assert_same_run(run_dir, reference_dir):
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        assert read_rows(run_dir, name) == read_rows(reference_dir, name), name
    results, reference = (run_files.read_json(os.path.join(d, run_files.RESULTS_FILE)) for d in (run_dir, reference_dir))
    assert {**results, 'run_dir': None} == {**reference, 'run_dir': None}
    final, expected = saved_states(run_dir, 8), saved_states(reference_dir, 8)
    assert jax.tree.structure(final) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(got, want)  # bit for bit


@pytest.fixture(scope='module')
def one_process(tmp_path_factory):
    """The 4-seed run in this process (one process, one CPU device)."""
    save_dir = tmp_path_factory.mktemp('one_process')
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        Run(run_settings(save_dir), log=QUIET).train()
    (run_dir,) = run_dirs(save_dir)
    return run_dir


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
    save_dir = tmp_path_factory.mktemp('two_processes')
    outcomes = run_processes(2, save_dir, 'train')
    for code, out, err in outcomes:
        assert code == 0, err[-3000:]
    return save_dir, outcomes


def test_two_processes_train_the_sweep_of_one_process_bit_for_bit_and_write_its_files_once(two_processes, one_process):
    save_dir, outcomes = two_processes
    (run_dir,) = run_dirs(save_dir)  # one run directory, made by process 0 and used by both
    assert [out.splitlines()[0] for _, out, _ in outcomes] == [
        'Process 0 of 2: 1 cpu device(s), 1 used, members 0-1 of 4.',
        'Process 1 of 2: 1 cpu device(s), 1 used, members 2-3 of 4.']
    train = read_rows(run_dir, run_files.TRAIN_CSV)
    assert [(int(r['step']), int(r['member'])) for r in train] == [(s, m) for s in (2, 4, 6, 8) for m in range(4)]
    flags = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    assert flags['placement'] == dict(processes=2, devices=2, padded_members=4)
    assert_same_run(run_dir, one_process)


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_a_run_whose_process_was_killed_resumes_exactly_on_two_processes(tmp_path, one_process):
    outcomes = run_processes(2, tmp_path, 'die_after_first_save')
    (code0, _, err0), (code1, _, _) = outcomes
    assert code1 == 9 and code0 == 1, err0[-3000:]  # process 1 was killed; process 0 stopped, not hung
    (run_dir,) = run_dirs(tmp_path)
    assert f'the latest checkpoint is update 4 in {run_dir}/checkpoints' in err0
    assert 'Another process of this run stopped' in err0
    for code, _, err in run_processes(2, tmp_path, 'resume', run_dir):
        assert code == 0, err[-3000:]
    assert_same_run(run_dir, one_process)


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_a_run_whose_process_was_killed_before_the_first_checkpoint_starts_over_on_two_processes(tmp_path,
                                                                                                 one_process):
    (code0, _, err0), (code1, _, _) = run_processes(2, tmp_path, 'die_before_first_save')
    assert code1 == 9 and code0 == 1, err0[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    assert 'no checkpoint was saved before it: resume with --resume=RUN_DIR on every process' in err0
    assert checkpoints.steps(os.path.join(run_dir, run_files.CHECKPOINT_DIR)) == []
    assert [int(r['step']) for r in read_rows(run_dir, run_files.TRAIN_CSV)] == [2] * 4  # written by process 0
    for code, _, err in run_processes(2, tmp_path, 'resume', run_dir):
        assert code == 0, err[-3000:]
    assert_same_run(run_dir, one_process)


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_a_signal_to_one_process_stops_every_process_at_the_same_update_and_the_run_resumes_exactly(
        tmp_path, one_process):
    outcomes = run_processes(2, tmp_path, 'stop_on_one')
    for code, _, err in outcomes:
        assert code == 128 + 15, err[-3000:]  # both stopped (not hung, not killed), as by SIGTERM
    (run_dir,) = run_dirs(tmp_path)
    lines = [err.strip().splitlines()[-1] for _, _, err in outcomes]
    assert lines[0] == lines[1] and lines[0].startswith('Stopped by SIGTERM at update '), lines
    assert f'--resume={run_dir}' in lines[0]
    for code, _, err in run_processes(2, tmp_path, 'resume', run_dir):
        assert code == 0, err[-3000:]
    assert_same_run(run_dir, one_process)


@pytest.fixture(scope='module')
def streamed_on_two(tmp_path_factory):
    """A streamed run on two processes (tests/hosts_worker.py `shard_settings`), never stopped."""
    save_dir = tmp_path_factory.mktemp('streamed_on_two')
    write_fake_shards(save_dir / 'shards', shards=8)
    outcomes = run_processes(2, save_dir, 'shards')
    for code, _, err in outcomes:
        assert code == 0, err[-3000:]
    return save_dir, outcomes


def test_two_processes_stream_disjoint_shards_train_and_evaluate(streamed_on_two):
    """Each process streams its own shards (process i: i, i+2, ...), and its members train on them."""
    save_dir, outcomes = streamed_on_two
    streamed = [next(line for line in out.splitlines() if line.startswith('SHARDS')) for _, out, _ in outcomes]
    assert streamed == ['SHARDS 0 ' + ' '.join(f'fake-play-v0-00{i}.npz' for i in (0, 2, 4, 6)),
                        'SHARDS 1 ' + ' '.join(f'fake-play-v0-00{i}.npz' for i in (1, 3, 5, 7))]
    (run_dir,) = run_dirs(save_dir)
    rows = read_rows(run_dir, run_files.TRAIN_CSV)
    assert [(int(r['step']), int(r['member'])) for r in rows] == [(s, m) for s in (2, 4, 6, 8, 10, 12) for m in range(4)]
    assert sorted({int(r['step']) for r in read_rows(run_dir, run_files.EVAL_CSV)}) == [4, 8, 12]


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_a_streamed_run_stopped_on_one_of_two_processes_resumes_exactly(streamed_on_two, tmp_path):
    """A run stopped by a signal to one process resumes to the train.csv and eval.csv of the run never stopped."""
    write_fake_shards(tmp_path / 'shards', shards=8)
    for code, _, err in run_processes(2, tmp_path, 'shards_stop_on_one'):
        assert code == 128 + 15, err[-3000:]
    (run_dir,), (straight_dir,) = run_dirs(tmp_path), run_dirs(streamed_on_two[0])
    for code, _, err in run_processes(2, tmp_path, 'resume', run_dir):
        assert code == 0, err[-3000:]
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        assert read_rows(run_dir, name) == read_rows(straight_dir, name), name


def test_processes_that_loaded_other_data_all_refuse_to_train(tmp_path):
    for code, _, err in run_processes(2, tmp_path, 'other_data'):
        assert code == 1
        assert 'error: The training data differs between processes: process(es) 1 loaded other data' in err
    assert not run_dirs(tmp_path)  # refused before any file was written


def test_a_checkpoint_of_two_processes_resumes_on_one_process_with_the_same_padding(two_processes, one_process,
                                                                                    tmp_path, monkeypatch):
    """4 members over 2 processes of 1 device are 4 rows, as on 1 process: the checkpoint re-shards."""
    save_dir, _ = two_processes
    (trained,) = run_dirs(save_dir)
    copy = tmp_path / 'copy'
    subprocess.run(['cp', '-r', trained, str(copy)], check=True)
    use_fake_world(monkeypatch)
    from flowrl.run.runner import resume
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV, run_files.RESULTS_FILE):
        os.remove(copy / name)
    checkpoints._set_aside(copy / 'checkpoints', 8)  # resumes from update 4
    resume(str(copy), log=QUIET)
    final, expected = saved_states(str(copy), 8), saved_states(one_process, 8)
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(got, want)


PADDING_SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from flowrl.agents import flow_bc
    from flowrl.engine.placement import Placement
    from flowrl.testing import index, synthetic_batch, tiny_config
    from flowrl.engine.training import ChunkRunner, init_members
    for members in (7, 8, 9, 3):
        p = Placement.build(members)
        print('LAYOUT', members, p.mesh.devices.size, p.padded)
    # 3 members on 2 devices: a pad makes 4 rows, 2 per device; it never trains.
    p = Placement.build(3, jax.devices()[:2])
    dataset, config = synthetic_batch(batch_size=256), tiny_config(flow_bc, batch_size=8)
    states, rngs = init_members(flow_bc, [config] * 4, [0, 1, 2, 0], dataset)
    runner = ChunkRunner(flow_bc, 8, 'map', placement=p)
    trained, _, _ = runner(p.put(states), p.put(rngs), jax.device_put(dataset, p.replicated), 5, alive=p.active)
    alone, alone_rngs = init_members(flow_bc, [config] * 3, [0, 1, 2], dataset)
    reference, _, _ = ChunkRunner(flow_bc, 8, 'map')(alone, alone_rngs, dataset, 5)
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print('DEVICES', len(jax.tree.leaves(trained.params)[0].sharding.device_set))
    print('REAL', all(same(index(trained, i), index(reference, i)) for i in range(3)))
    print('PAD_UNTOUCHED', same(index(trained, 3), index(states, 3)))
    # A run of 3 seeds on those 2 devices: the pad is never evaluated nor logged.
    import sys, pytest
    from flowrl.run import runner
    from flowrl.testing import tiny_run_settings, use_fake_world
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        patch.setattr(runner.Placement, 'build', lambda n: p)  # 3 members on 2 devices
        runner.Run(tiny_run_settings(sys.argv[1], num_seeds=3, offline_steps=2, online_steps=6, buffer_size=300),
                   log=lambda *_: None).train()
''')


def test_inactive_members_pad_a_member_count_so_that_every_device_works(tmp_path, one_process):
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu')
    out = subprocess.run([sys.executable, '-c', PADDING_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                         text=True, cwd=REPO, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.split() for line in out.stdout.splitlines()]
    # (members, devices used, rows): one member per device up to 8, then pads to 2 per device.
    assert [tuple(map(int, line[1:])) for line in lines if line[0] == 'LAYOUT'] == [
        (7, 7, 7), (8, 8, 8), (9, 8, 16), (3, 3, 3)]
    assert ['DEVICES', '2'] in lines and ['REAL', 'True'] in lines and ['PAD_UNTOUCHED', 'True'] in lines
    (run_dir,) = run_dirs(tmp_path)
    assert run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))['placement'] == dict(
        processes=1, devices=2, padded_members=4)
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):  # the 4-seed run's rows of seeds 0-2, and no others
        assert read_rows(run_dir, name) == [r for r in read_rows(one_process, name) if r['member'] != '3'], name
    results = run_files.read_json(os.path.join(run_dir, run_files.RESULTS_FILE))
    assert [m['seed'] for m in results['members']] == [0, 1, 2]


@pytest.mark.parametrize('args, message', [
    (('auto', '127.0.0.1:1234', 2, None), '--coordinator_address, --num_processes and --process_id go together'),
    (('auto', None, 2, 0), '--coordinator_address, --num_processes and --process_id go together'),
    (('off', '127.0.0.1:1234', 2, 0), '--distributed=off contradicts --coordinator_address'),
    (('auto', '127.0.0.1:1234', 2, 2), '--process_id must be in 0..1'),
])
def test_start_up_flags_that_do_not_fit_together_are_refused_in_one_sentence(args, message):
    from flowrl.errors import UserError
    from flowrl.engine.placement import join

    with pytest.raises(UserError, match=message):
        join(*args)


def test_one_process_joins_nothing_unless_the_environment_names_several(monkeypatch):
    from flowrl.engine import placement

    for name in ('SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('SLURM_NTASKS', '1')  # a one-task Slurm job runs as one process
    assert placement._environment_processes() == 1 and placement.join('auto') is False
    monkeypatch.setenv('SLURM_NTASKS', '4')
    assert placement._environment_processes() == 4
    assert placement.join('off') is False
