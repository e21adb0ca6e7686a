"""Do two checkouts train the same? Writes the train.csv and eval.csv of a fixed set of tiny runs
(on the test fakes: flowrl.testing.use_fake_world, no data, no download), or compares two such
directories row by row. For a change that must not move results (a refactor of the loop, a new
seam whose default must be today's behaviour):

    PYTHONPATH=OLD_CHECKOUT python benchmarks/same_rows.py write /tmp/rows_old
    python benchmarks/same_rows.py write /tmp/rows_new
    python benchmarks/same_rows.py compare /tmp/rows_old /tmp/rows_new

The runs (2 seeds each, validation rows on): flow BC offline; flow BC 4 offline updates then 8
online steps; an FQL sweep over alpha. Timing columns (`*per_s`) are left out of the comparison.
"""

import argparse
import csv
import glob
import os
import sys

RUNS = {
    'offline': dict(num_seeds=2),
    'online': dict(num_seeds=2, offline_steps=4, online_steps=8, buffer_size=300),
    'fql_sweep': dict(agent='agents/fql.py', sweep=['agent.alpha=3,30']),
}
FILES = ('train.csv', 'eval.csv')


def write(out: str) -> None:
    import pytest

    from flowrl.run import runner
    from flowrl.testing import tiny_run_settings, use_fake_world

    patch = pytest.MonkeyPatch()
    use_fake_world(patch, validation=True)
    print(f'flowrl from {os.path.dirname(os.path.dirname(runner.__file__))}')
    for name, changes in RUNS.items():
        run = runner.Run(tiny_run_settings(os.path.join(out, name), **changes), log=lambda *_: None)
        run.train()
        print(f'{name}: {run.run_dir}')
    patch.undo()


def rows(run_dir: str, name: str) -> list[dict]:
    with open(os.path.join(run_dir, name)) as f:
        return [{k: v for k, v in row.items() if not k.endswith('per_s')} for row in csv.DictReader(f)]


def compare(first: str, second: str) -> bool:
    same = True
    for name in RUNS:
        a, b = (glob.glob(os.path.join(root, name, '*', '*'))[0] for root in (first, second))
        for file in FILES:
            left, right = rows(a, file), rows(b, file)
            equal = left == right
            same &= equal
            print(f'{name} {file}: {len(left)} and {len(right)} rows, {"identical" if equal else "DIFFERENT"}')
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    commands.add_parser('write').add_argument('out')
    both = commands.add_parser('compare')
    both.add_argument('first')
    both.add_argument('second')
    args = parser.parse_args()
    if args.command == 'write':
        write(args.out)
    else:
        sys.exit(0 if compare(args.first, args.second) else 1)


if __name__ == '__main__':
    main()
