"""The console moves while training whatever --log_interval is, and where the chunks are cut
never changes what a run writes (flowrl.run.progress)."""

import io
import os
import sys

import pytest
import tqdm

from flowrl import run_files
from flowrl.run.progress import ChunkPacer, Progress, console_line, format_duration
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


def test_once_compiled_the_run_says_how_long_the_updates_left_take():
    lines = []
    progress = Progress(total=1_000_000, initial=0, name='fql', log=lines.append, interactive=False)
    progress.advanced(16, 30.0, {})  # compiled in this chunk: no estimate from it
    assert lines == []
    progress.advanced(64, 2.0, {})  # 32 updates/s: 999,920 updates in 31,247.5 s
    progress.advanced(256, 8.0, {})
    assert lines == ['Speed once compiled: 32.0 updates/s on this machine; the 999,920 updates left take about '
                     '8:40:48 (h:mm:ss) at this speed, evaluations not included.']


def screen_lines(text: str) -> list[str]:
    """What a terminal shows of `text`: each line as its last carriage return left it."""
    return [line.split('\r')[-1] for line in text.split('\n')]


def test_a_line_printed_during_training_goes_above_the_bar_not_onto_its_end(monkeypatch):
    terminal = io.StringIO()  # stdout and stderr on one screen, as in a terminal
    monkeypatch.setattr(sys, 'stdout', terminal)
    bar = tqdm.tqdm(total=10, file=terminal, desc='fql', mininterval=0)
    bar.update(1)
    console_line('Evaluation: 2 environment(s) alive at once')
    bar.close()
    assert 'Evaluation: 2 environment(s) alive at once' in screen_lines(terminal.getvalue())
    # What print() did before: the line ran on from the bar's text.
    terminal.truncate(0)
    bar = tqdm.tqdm(total=10, file=terminal, desc='fql', mininterval=0)
    bar.update(1)
    print('Evaluation: 2 environment(s) alive at once', file=terminal)
    bar.close()
    assert 'Evaluation: 2 environment(s) alive at once' not in screen_lines(terminal.getvalue())


def test_rows_and_states_do_not_depend_on_where_chunks_are_cut(tmp_path, monkeypatch):
    use_fake_world(monkeypatch)
    outcomes = []
    for name, size in (('one_per_interval', 1000), ('cut_small', 3)):
        monkeypatch.setattr('flowrl.run.runner.ChunkPacer', lambda size=size: FixedPacer(size))
        lines = []
        run = Run(tiny_run_settings(tmp_path / name, num_seeds=2, log_interval=4, eval_interval=8), log=lines.append)
        run.train()
        rows = run_files.CsvLog(os.path.join(run.run_dir, run_files.TRAIN_CSV)).read()
        outcomes.append((rows, run.position.states))
        # Without a terminal: one plain progress line per train.csv row (rows at 4 and 8).
        assert sum(line.startswith('flow_bc ') and 'upd/s' in line for line in lines) == 2
    assert outcomes[0][0] == outcomes[1][0]
    assert max_abs_diff(outcomes[0][1], outcomes[1][1]) == 0.0
