"""Sharded datasets streamed within a memory bound (flowrl.run.stream, flowrl.suites.data.shards):
the order drawn from the seed, the window swapped exactly at --dataset_replace_interval with the
next shard read in the background, refusals up front, and runs on an 8-shard directory with a
window of 2 that train, evaluate, stop and resume exactly. Tiny in-process runs on the fake
world (flowrl.testing.use_fake_world, use_fake_shards); two processes: tests/test_hosts.py."""

import os
import signal
import threading

import jax
import numpy as np
import pytest

from flowrl import run_files, stopping
from flowrl.errors import UserError
from flowrl.engine.training import ChunkRunner
from flowrl.run import stream as stream_module
from flowrl.run.offline import OfflineChunks
from flowrl.run.runner import Run, resume
from flowrl.run.stream import (StreamState, after_swap, choose_window, first_state, nth_shard, process_shards,
                               shard_reader, swaps_before)
from flowrl.suites.data import shards
from flowrl.testing import OneUpdateChunks, tiny_run_settings, use_fake_shards, use_fake_world, write_fake_shards

pytestmark = pytest.mark.xdist_group('test_shards')
QUIET = lambda *_: None  # noqa: E731
# 8 offline updates with a window of 2 of the 8 shards swapped every 3 (before updates 4 and 7),
# then 4 online steps on the last window; rows every 2, evaluations and checkpoints at 4, 8, 12.
STREAM = dict(shard_window=2, dataset_replace_interval=3, offline_steps=8, online_steps=4, buffer_size=300,
              save_interval=0)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        use_fake_shards(patch)
        patch.setattr('flowrl.run.runner.ChunkPacer', OneUpdateChunks)
        yield write_fake_shards(tmp_path_factory.mktemp('shards'), shards=8)


def settings(save_dir, dataset_dir, **changes):
    return tiny_run_settings(save_dir, dataset_dir=dataset_dir, **{**STREAM, **changes})


def read(run_dir, name):
    return [{k: v for k, v in row.items() if k != 'env_steps_per_s'}
            for row in run_files.CsvLog(os.path.join(run_dir, name)).read()]


@pytest.fixture(scope='module')
def straight(world, tmp_path_factory):
    run = Run(settings(tmp_path_factory.mktemp('straight'), world), log=QUIET)
    run.train()
    return run


# ----------------------------------------------------------------------------- the order
def test_the_order_is_a_permutation_per_pass_drawn_from_the_seed():
    passes = [[nth_shard(7, 8, p * 8 + i) for i in range(8)] for p in range(3)]
    assert all(sorted(order) == list(range(8)) for order in passes)  # each pass: every shard once
    assert len({tuple(order) for order in passes}) == 3  # a new order per pass
    assert passes == [[nth_shard(7, 8, p * 8 + i) for i in range(8)] for p in range(3)]  # the seed alone decides
    assert passes[0] != [nth_shard(8, 8, i) for i in range(8)]
    assert passes[0] == list(np.random.default_rng([7, 0]).permutation(8))


def test_a_swap_replaces_the_oldest_slot_with_the_next_shard_not_in_the_window():
    state = first_state(3, 5, 2)
    assert state == StreamState(0, 2, (nth_shard(3, 5, 0), nth_shard(3, 5, 1)))
    states = [state]
    for _ in range(40):
        states.append(after_swap(states[-1], 3, 5))
    for before, after in zip(states, states[1:]):
        slot = before.swaps % 2
        assert after.slots[1 - slot] == before.slots[1 - slot]  # the other slot stays
        assert after.slots[slot] not in before.slots and len(set(after.slots)) == 2
    entered = [after.slots[before.swaps % 2] for before, after in zip(states, states[1:])]
    order, n, window = [nth_shard(3, 5, n) for n in range(400)], 2, list(state.slots)
    for swap, shard in enumerate(entered):  # the order, less the shards in the window when their turn came
        while order[n] in window:
            n += 1
        assert shard == order[n]
        window[swap % 2], n = shard, n + 1
    assert StreamState.from_row(states[-1].as_row()) == states[-1]


def test_swaps_are_due_at_every_interval_of_offline_updates_and_online_steps_keep_the_last_window():
    assert [swaps_before(step, 3, 8) for step in range(13)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2]
    assert [swaps_before(step, 0, 8) for step in (0, 5, 9)] == [0, 0, 0]


def test_each_process_streams_its_own_disjoint_shards():
    files = [f'f{i}' for i in range(9)]
    assert process_shards(files, 0, 2) == ['f0', 'f2', 'f4', 'f6']
    assert process_shards(files, 1, 2) == ['f1', 'f3', 'f5', 'f7']  # f8: the remainder, left out
    with pytest.raises(UserError, match=r'^2 shard\(s\) cannot be split among 3 processes'):
        process_shards(files[:2], 0, 3)


# ----------------------------------------------------------------------------- the layout
def test_a_directory_of_shards_is_told_from_a_directory_of_whole_datasets(tmp_path):
    directory = write_fake_shards(tmp_path / 'shards', shards=3)
    assert [p.name for p in shards.shard_files(directory)] == [f'fake-play-v0-00{i}.npz' for i in range(3)]
    assert shards.validation_file(directory).name == 'fake-play-v0-val.npz'
    assert shards.is_shard_directory(directory, 'fake-play-v0')
    np.savez(os.path.join(directory, 'fake-play-v0.npz'), terminals=np.ones(3))  # the dataset's own file: not shards
    assert not shards.is_shard_directory(directory, 'fake-play-v0')
    assert not shards.is_shard_directory(write_fake_shards(tmp_path / 'one', shards=1), 'fake-play-v0')
    assert not shards.is_shard_directory(None, 'fake-play-v0')
    whole = tmp_path / 'datasets'  # a directory of whole datasets without the one asked for: not shards
    whole.mkdir()
    for name in ('cube-double-play-v0', 'cube-double-play-v0-ep2', 'puzzle-3x3-play-v0'):
        np.savez(whole / f'{name}.npz', terminals=np.ones(3))
        np.savez(whole / f'{name}-val.npz', terminals=np.ones(3))
    assert not shards.is_shard_directory(whole, 'scene-play-v0')


def test_shard_sizes_come_from_the_file_headers_and_unequal_shards_are_refused(tmp_path):
    directory = write_fake_shards(tmp_path, shards=2, episodes=3, steps=6)
    files = shards.shard_files(directory)
    assert shards.file_rows(files[0]) == 18 and shards.require_equal_rows(files) == 18
    np.savez(files[1], terminals=np.ones(5), observations=np.zeros((5, 6)))
    with pytest.raises(UserError, match=r'^The shards differ in size: .*-000.npz holds 18 rows and .*-001.npz 5;'):
        shards.require_equal_rows(files)


def test_a_shard_becomes_the_transitions_ogbench_loads():
    raw = dict(observations=np.arange(6, dtype=np.float32)[:, None], actions=np.zeros((6, 1)),
               rewards=np.arange(6, dtype=np.float32), terminals=np.asarray([0, 0, 1, 0, 0, 1], np.float32))
    got = shards.episode_transitions(raw)
    np.testing.assert_array_equal(got['observations'][:, 0], [0, 1, 3, 4])
    np.testing.assert_array_equal(got['next_observations'][:, 0], [1, 2, 4, 5])
    np.testing.assert_array_equal(got['terminals'], [0, 1, 0, 1])  # each shard ends with an episode's end
    np.testing.assert_array_equal(got['rewards'], [0, 1, 3, 4])


# ----------------------------------------------------------------------------- refusals
def test_a_window_larger_than_the_shards_or_the_memory_is_refused_in_one_sentence(world, tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r'^--shard_window=9 is more than the 8 shard\(s\) this process streams; '
                                        r'pass at most 8\.$'):
        Run(settings(tmp_path, world, shard_window=9), log=QUIET)
    shard = 15 * 4 * (6 + 6 + 3 + 1 + 1 + 1)  # 15 transitions of float32 fields
    monkeypatch.setattr(stream_module, 'free_bytes', lambda device: 2 * shard)
    with pytest.raises(UserError) as refused:
        Run(settings(tmp_path, world, shard_window=2), log=QUIET)
    message = str(refused.value)
    assert message.startswith('A window of 2 shard(s) needs 3.2 KiB (the window plus one loading shard, 1.1 KiB each) '
                              'and 2.1 KiB is free;')
    assert message.endswith('pass a smaller --shard_window.') and '\n' not in message
    assert not os.path.exists(os.path.join(tmp_path, 'Debug'))  # before anything was made


def test_the_default_window_takes_half_the_free_memory_less_the_loading_shard():
    assert choose_window(0, 8, 100, 1000) == 4  # 500 bytes: 5 shards, one of them loading
    assert choose_window(0, 3, 100, 10**6) == 3  # every shard fits: no swaps
    assert choose_window(0, 8, 100, None) == 8
    with pytest.raises(UserError, match='or use a machine with more memory'):
        choose_window(0, 8, 100, 150)


def test_agents_with_dataset_work_are_refused_a_stream(world, tmp_path):
    with pytest.raises(UserError, match=r'does work over its whole dataset \(the dataset_work hook\)'):
        Run(settings(tmp_path, world, agent='agents/qipo.py', agent_overrides=dict(phase_scale='auto')), log=QUIET)


# ----------------------------------------------------------------------------- runs
def test_the_window_is_swapped_exactly_at_the_interval_with_the_next_shard_read_in_the_background(world, tmp_path,
                                                                                                 monkeypatch):
    seen, readers = [], []
    chunk = OfflineChunks.chunk

    def chunk_and_note(self, position, updates, agent_step):
        moved = chunk(self, position, updates, agent_step)
        window = jax.device_get(self.stream.device)
        seen.append((position.step, moved[0].stream, window['observations'][:, 0].round().tolist()))
        return moved

    def noting_reader(*args):
        read = shard_reader(*args)
        return lambda path: readers.append((os.path.basename(path), threading.current_thread().name)) or read(path)

    monkeypatch.setattr(OfflineChunks, 'chunk', chunk_and_note)
    monkeypatch.setattr('flowrl.run.runner.shard_reader', noting_reader)
    run = Run(settings(tmp_path, world, online_steps=0), log=QUIET)
    run.train()
    states = [run.stream.first()]
    for _ in range(2):
        states.append(after_swap(states[-1], 0, 8))
    assert [(step, state) for step, state, _ in seen] == [(s, states[s // 3]) for s in range(8)]
    for step, state, offsets in seen:  # fake shard i's observations are i + N(0, 1): the slots' shards, in order
        assert np.allclose(np.asarray(offsets).reshape(2, 15).mean(axis=1), state.slots, atol=1.0)
    entered = [states[1].slots[0], states[2].slots[1]]
    first_window = [(f'fake-play-v0-{states[0].slots[0]:03d}.npz', 'MainThread'),  # set-up: the window's shards
                    (f'fake-play-v0-{states[0].slots[1]:03d}.npz', 'MainThread')]
    # then each shard that enters, read beside the chunks (not in the loop), as soon as its swap is the next
    assert readers == first_window + [(f'fake-play-v0-{s:03d}.npz', 'flowrl-shards_0') for s in entered]
    flags = run_files.read_json(os.path.join(run.run_dir, run_files.FLAGS_FILE))
    assert flags['settings']['shard_window'] == 2 and flags['data']['shard_window'] == 2
    assert flags['data']['transitions'] == 8 * 15 and flags['data']['shard_names'][0] == 'fake-play-v0-000.npz'


def test_a_streamed_run_trains_evaluates_and_fine_tunes_online_on_its_last_window(straight):
    rows = read(straight.run_dir, run_files.TRAIN_CSV)
    assert sorted({int(r['step']) for r in rows}) == [2, 4, 6, 8, 10, 12]
    assert sorted({int(r['step']) for r in read(straight.run_dir, run_files.EVAL_CSV)}) == [4, 8, 12]
    last_offline = after_swap(after_swap(straight.stream.first(), 0, 8), 0, 8)
    assert straight.position.stream == last_offline and straight.stream.state == last_offline


@pytest.mark.parametrize('stop_after_chunk_at', [4, 9])  # offline, between two swaps; online
def test_a_stopped_streamed_run_resumes_exactly(straight, world, tmp_path, monkeypatch, stop_after_chunk_at):
    original = ChunkRunner.run if stop_after_chunk_at < 8 else None
    if original is not None:
        def run_then_stop(self, states, rngs, totals, dataset, num_updates, start=0, alive=None):
            result = original(self, states, rngs, totals, dataset, num_updates, start, alive)
            if start == stop_after_chunk_at:
                signal.raise_signal(signal.SIGTERM)
            return result

        monkeypatch.setattr(ChunkRunner, 'run', run_then_stop)
    else:
        from flowrl.run.online_steps import OnlineSteps

        step = OnlineSteps.step

        def step_then_stop(self, position, update):
            moved = step(self, position, update)
            if moved[0].step == stop_after_chunk_at + 1:
                signal.raise_signal(signal.SIGTERM)
            return moved

        monkeypatch.setattr(OnlineSteps, 'step', step_then_stop)
    run = Run(settings(tmp_path, world), log=QUIET)
    with pytest.raises(stopping.Stopped):
        run.train()
    monkeypatch.undo()
    resumed = []
    resume(run.run_dir, log=resumed.append)
    assert any(line.startswith('Shards: 8 (fake shards in') and 'a window of 2' in line for line in resumed)
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        assert read(run.run_dir, name) == read(straight.run_dir, name), name


# ----------------------------------------------------------------------------- local shards
def test_generate_writes_shards_of_whole_episodes_that_a_run_of_the_task_streams(tmp_path, monkeypatch, capsys):
    from flowrl.making.command import main as data_main
    from flowrl.suites import TaskSettings, resolve
    from flowrl.testing import short_manipulation_episodes

    short_manipulation_episodes(monkeypatch, steps=6)
    directory = tmp_path / 'cube-single-play-shards'
    assert data_main(['generate', 'cube-single-play-v0', '--shards=2', '--episodes=2', '--workers=1',
                      f'--dataset_dir={directory}']) == 0
    assert sorted(os.listdir(directory)) == ['cube-single-play-v0-000.npz', 'cube-single-play-v0-001.npz',
                                             'cube-single-play-v0-val.npz']
    for name in ('cube-single-play-v0-000.npz', 'cube-single-play-v0-001.npz'):
        with np.load(directory / name) as shard:
            terminals = shard['terminals']
            assert len(terminals) == 2 * 6 and terminals[-1] == 1 and int(terminals.sum()) == 2  # 2 whole episodes
            assert {'qpos', 'qvel', 'observations', 'actions'} <= set(shard.files)
    found = resolve('cube-single-play').shards(TaskSettings(dataset_dir=str(directory)))
    assert [os.path.basename(f) for f in found.files] == ['cube-single-play-v0-000.npz', 'cube-single-play-v0-001.npz']
    transitions = found.read(found.files[0])  # OGBench's loading and relabelling, as a run's loading thread does
    assert len(transitions['actions']) == 2 * 5 and transitions['terminals'].tolist() == ([0.0] * 4 + [1.0]) * 2
    assert found.val is not None and len(found.val['actions']) == 5
    assert data_main(['generate', 'cube-single-play-v0', '--shards=2', '--episodes=2', '--workers=1',
                      f'--dataset_dir={directory}']) == 1
    assert 'already exists; pass --force to replace the shards.' in capsys.readouterr().err
