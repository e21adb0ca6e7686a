"""The first check of a machine with an accelerator: one command, one table, under 10 minutes.

    python benchmarks/device_check.py                                   # paper sizes (a GPU/TPU machine)
    python benchmarks/device_check.py --official_dir ~/src/fql --official_python ~/src/fql-venv/bin/python
    python benchmarks/device_check.py --size tiny                       # seconds on a CPU (tests/test_device_check.py)

Rows, each measured by the benchmark that owns it (imported, not copied):
- efficiency: FQL's matrix-product GFLOP per update (flowrl.engine.costs), its updates/s in the
  training loop (one member) and the fraction of the machine's matrix-product peak
  (benchmarks/train_throughput.py, EfficiencyCase and matmul_peak);
- offline training of 1 and 8 seeds in one program (train_throughput.scanned_updates_per_second);
- online fine-tuning steps per second, one update each (benchmarks/online_step.py);
- evaluation: cube-double environment steps per second with batched policy calls
  (train_throughput.eval_env_steps_per_second);
- a streamed-shards run against one shard in memory (benchmarks/shard_stream.py; the target is >= 95 %);
- with --official_dir, a checkout of github.com/seohongpark/fql: the authors' code beside flowrl
  (benchmarks/vs_official.py: updates of 1 and 8 seeds, one evaluation, online steps); without it,
  one line says those rows were skipped.
`--size` picks every size at once: paper (FQL's 4 x 512 networks, batch 256, 100k rows, 1M-row
shards) or tiny (8 x 8 networks, 2 flow steps, batch 8: it only shows that every row runs).
"""

import argparse
import os
import platform
import sys
import tempfile
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(BENCHMARKS), BENCHMARKS]  # this checkout's flowrl; the benchmarks beside this one

import jax  # noqa: E402
import numpy as np  # noqa: E402

import online_step  # noqa: E402
import shard_stream  # noqa: E402
import train_throughput  # noqa: E402
from flowrl.agents import fql  # noqa: E402
from flowrl.engine.costs import matmul_peak  # noqa: E402

SIZES = dict(
    tiny=dict(rows=2_000, hidden=(8, 8), flow_steps=2, batch_size=8, chunk=20, repeats=2, seeds=(1, 8), online_steps=10,
              capacity=1_000, eval_episodes=2, eval_steps=5, peak_seconds=0.2, stream=shard_stream.SIZES['tiny'],
              official=dict(updates=20, rounds=1, eval_episodes=2, online_warmup=5, online_timed=10,
                            dataset_episodes=2)),
    paper=dict(rows=100_000, hidden=None, flow_steps=None, batch_size=256, chunk=1_000, repeats=3, seeds=(1, 8), online_steps=300,
               capacity=1_000_000, eval_episodes=50, eval_steps=100, peak_seconds=2.0,
               stream=dict(shard_stream.SIZES['paper'], chunks=4),
               official=dict(updates=300, rounds=1, eval_episodes=50, online_warmup=100, online_timed=300,
                             dataset_episodes=20)),
)


def efficiency_rows(size: dict, dataset: dict) -> list:
    case = train_throughput.EfficiencyCase('fql', fql, shard_stream.fql_config(size), 0, dataset, size['chunk'])
    rate = case.updates_per_second(size['repeats'])
    peak = matmul_peak(size['peak_seconds']) / 1e9
    return [['FQL GFLOP per update (matrix products, from shapes)', f'{case.gflop:.3f}', '', ''],
            ['FQL updates/s, 1 member, training loop', f'{rate:.1f}', '', ''],
            ['  GFLOP/s achieved / matrix-product peak', f'{case.gflop * rate:.1f} / {peak:.0f}', '',
             f'{100 * case.gflop * rate / peak:.1f} % of peak']]


def offline_rows(size: dict, dataset: dict) -> list:
    rows = []
    for seeds in size['seeds']:
        rate, compile_s, _, _ = train_throughput.scanned_updates_per_second(seeds, size['chunk'], size['repeats'],
                                                                            dataset, config=shard_stream.fql_config(size))
        rows.append([f'offline updates/s, {seeds} seed(s) in one program (each seed)', f'{rate:.1f}', '',
                     f'{seeds * rate:.1f} member-updates/s; compile {compile_s:.1f} s'])
    return rows


def online_rows(size: dict) -> list:
    seconds = online_step.online_step_seconds(fql, shard_stream.fql_config(size), size['rows'],
                                                                    size['capacity'], 1, size['online_steps'])
    return [['online steps/s, 1 member (one update each, no environment)', f"{1 / seconds:.1f}", '',
             f'{seconds * 1e3:.2f} ms per step']]


def evaluation_rows(size: dict) -> list:
    rate = train_throughput.eval_env_steps_per_second(size['eval_episodes'], size['eval_steps'], shard_stream.fql_config(size))
    return [[f'evaluation env steps/s, {size["eval_episodes"]} cube-double episodes, batched policy', f'{rate:.1f}',
             '', '']]


def stream_rows(size: dict) -> list:
    stream = size['stream']
    result = shard_stream.stream_against_memory(stream, rounds=1, log=lambda *_: None)
    return [[f'updates/s streamed from shards (window {stream["window"]} of {stream["shards"]}, shards of '
             f'{result["rows"]:,}, a swap every {stream["interval"]})', f'{np.median(result["stream"]):.1f}', '',
             f'{100 * result["ratio"]:.1f} % of one shard in memory ({np.median(result["memory"]):.1f}); peak '
             f'{result["peak_bytes"] / 2**30:.2f} GiB']]


def official_rows(size: dict, official_dir: str | None, official_python: str) -> list:
    """The authors' code beside flowrl (benchmarks/vs_official.py), or one row saying it was skipped."""
    if official_dir is None:
        return [["flowrl vs the authors' FQL code", 'skipped', 'skipped',
                 'pass --official_dir=CHECKOUT of github.com/seohongpark/fql']]
    import vs_official

    repo = os.path.abspath(os.path.expanduser(official_dir))
    if not os.path.isfile(os.path.join(repo, 'agents', 'fql.py')):
        sys.exit(f'error: {repo} is not a checkout of seohongpark/fql (no agents/fql.py).')
    args = argparse.Namespace(official_repo=repo, official_python=official_python, seeds=list(size['seeds']),
                              **size['official'])
    with tempfile.TemporaryDirectory(prefix='device_check_') as workdir:
        compared = vs_official.updates_section(args) + vs_official.eval_section(args)
        args.seeds = [1]  # the authors' code runs one seed per process: 8 would take 8 times as long
        compared += vs_official.online_section(args, workdir)
    return [[label, ours, theirs, ratio] for label, theirs, ours, ratio in compared]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', default='paper', choices=sorted(SIZES))
    parser.add_argument('--official_dir', default=None, help='checkout of github.com/seohongpark/fql (else skipped)')
    parser.add_argument('--official_python', default=sys.executable, help="python of the authors' code's environment")
    parser.add_argument('--sections', default='efficiency,offline,online,evaluation,stream,official')
    args = parser.parse_args()
    size, sections, began = SIZES[args.size], args.sections.split(','), time.perf_counter()
    dataset = train_throughput.synthetic_dataset(size['rows'])
    makers = dict(efficiency=lambda: efficiency_rows(size, dataset), offline=lambda: offline_rows(size, dataset),
                  online=lambda: online_rows(size), evaluation=lambda: evaluation_rows(size),
                  stream=lambda: stream_rows(size),
                  official=lambda: official_rows(size, args.official_dir, args.official_python))
    rows = []
    for name in sections:
        rows += makers[name]()
        print(f'  {name}: done ({time.perf_counter() - began:.0f} s)', flush=True)
    print(f'\n{platform.node()} | {jax.devices()[0].device_kind} x {jax.device_count()} | jax {jax.__version__} | '
          f'--size {args.size} | {time.strftime("%Y-%m-%d")} | {time.perf_counter() - began:.0f} s in all')
    print("| measurement | flowrl | authors' code | note |")
    print('|---|---:|---:|---|')
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()
