"""The console moves while training whatever --log_interval is, and where the chunks are cut
never changes what a run writes (flowrl.run.progress)."""

import os

import pytest

from flowrl import run_files
from flowrl.run.progress import ChunkPacer, Progress, format_duration
from flowrl.run.runner import Run
from flowrl.testing import max_abs_diff, tiny_run_settings, use_fake_world

pytestmark = pytest.mark.xdist_group('test_crash')  # shares test_crash's compiled tiny runs


class FixedPacer:
    def __init__(self, size):
        self._size = size

    def size(self):
        return self._size

    def record(self, updates, seconds):
        pass


def test_pacer_aims_at_the_wanted_seconds_per_chunk_and_grows_gradually():
    pacer = ChunkPacer(seconds=2.0, first=16, growth=4.0)
    assert pacer.size() == 16
    pacer.record(16, 8.0)  # the first chunk also compiled: 2 updates/s seen
    assert pacer.size() == 4
    pacer.record(4, 0.001)  # 4000 updates/s: 8000 wanted, but at most 4x the last chunk
    assert pacer.size() == 16
    for _ in range(10):
        pacer.record(pacer.size(), pacer.size() / 4000)
    assert pacer.size() == 8000
    pacer.record(8000, 80.0)  # the machine got busy: 100 updates/s
    assert pacer.size() == 200
    pacer.record(1, 0.0)
    assert pacer.size() == 800  # no time measured: grow by the factor


def test_plain_lines_give_position_speed_eta_losses_and_last_evaluation():
    lines = []
    progress = Progress(total=1000, initial=0, name='fql', log=lines.append, interactive=False)
    progress.advanced(100, 2.0, {'critic/loss': 0.25, 'actor/loss': 1.5, 'actor/q': 3.0})
    progress.evaluated(100, 0.42)
    progress.logged()
    progress.close()
    (line,) = lines
    assert line.startswith('fql 100/1,000 (10.0%) | 50.0 upd/s | ETA ')
    assert line.endswith(' | critic loss 0.25, actor loss 1.5 | last eval 42.0% at 100')
    assert format_duration(3725) == '1:02:05'


def test_rows_and_states_do_not_depend_on_where_chunks_are_cut(tmp_path, monkeypatch):
    use_fake_world(monkeypatch)
    outcomes = []
    for name, size in (('one_per_interval', 1000), ('cut_small', 3)):
        monkeypatch.setattr('flowrl.run.runner.ChunkPacer', lambda size=size: FixedPacer(size))
        lines = []
        run = Run(tiny_run_settings(tmp_path / name, num_seeds=2, log_interval=4, eval_interval=8), log=lines.append)
        run.train()
        rows = run_files.CsvLog(os.path.join(run.run_dir, run_files.TRAIN_CSV)).read()
        outcomes.append((rows, run.states))
        # Without a terminal: one plain progress line per train.csv row (rows at 4 and 8).
        assert sum(line.startswith('flow_bc ') and 'upd/s' in line for line in lines) == 2
    assert outcomes[0][0] == outcomes[1][0]
    assert max_abs_diff(outcomes[0][1], outcomes[1][1]) == 0.0
