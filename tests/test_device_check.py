"""benchmarks/device_check.py, the script a machine with an accelerator runs first, runs as is at
tiny size on this CPU and prints its one table: every row measured (a number, not a placeholder),
the rows against the authors' code skipped with one line when no checkout is given."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_device_check_runs_at_tiny_size_and_prints_one_table():
    env = dict(os.environ, JAX_PLATFORMS='cpu', FLOWRL_NO_DOWNLOAD='1')
    done = subprocess.run([sys.executable, os.path.join('benchmarks', 'device_check.py'), '--size', 'tiny'], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    table = lines[lines.index("| measurement | flowrl | authors' code | note |"):]
    assert table[1] == '|---|---:|---:|---|' and all(line.startswith('| ') and line.endswith(' |') for line in table[2:])
    cells = {line[2:-2].split(' | ')[0].strip(): line[2:-2].split(' | ')[1:] for line in table[2:]}
    number = re.compile(r'^\d+(\.\d+)?$')
    measured = ['FQL updates/s, 1 member, training loop', 'offline updates/s, 1 seed(s) in one program (each seed)',
                'offline updates/s, 8 seed(s) in one program (each seed)',
                'online steps/s, 1 member (one update each, no environment)',
                'evaluation env steps/s, 2 cube-double episodes, batched policy']
    for label in measured:
        assert number.match(cells[label][0]) and float(cells[label][0]) > 0, (label, cells.get(label))
    (stream,) = [cells[label] for label in cells if label.startswith('updates/s streamed from shards (window 2 of 4')]
    assert float(stream[0]) > 0 and re.search(r'\d+\.\d % of one shard in memory', stream[2])
    assert cells["flowrl vs the authors' FQL code"] == [
        'skipped', 'skipped', 'pass --official_dir=CHECKOUT of github.com/seohongpark/fql']
    assert re.search(r'\| --size tiny \| \d{4}-\d{2}-\d{2} \|', done.stdout)
