"""Benchmark: OGBench dataset generation throughput, and the time for a full dataset.

    python benchmarks/data_generation.py [--dataset cube-double-play-v0] [--episodes 4] [--workers 2] [--full]

Prints
1. per-worker throughput: one in-process collector, steady state (after one warm-up episode);
2. parallel throughput: a reduced dataset built end to end with `--workers` processes
   (start-up, collection, compression and writing included);
3. the time for the full protocol dataset, extrapolated from (2), or measured with `--full`
   (which really builds it in a temporary directory, ~40 min for cube-double-play-v0 on 2 cores).
The machine's load average is printed too: other processes on a shared machine slow it down.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowrl.making.generate import EpisodeCollector, build_dataset, default_workers  # noqa: E402
from flowrl.suites.data.plans import plan_generation  # noqa: E402


def _quiet(*args, **kwargs):
    pass


def per_worker_steps_per_sec(dataset: str, episodes: int) -> tuple[float, float, float]:
    """(steady-state steps per wall second, per CPU second, seconds to build the environment).

    Steps per CPU second is what one worker achieves on an otherwise idle core; on a shared,
    busy machine the wall-clock figure is lower.
    """
    plan = plan_generation(dataset)
    started = time.perf_counter()
    collector = EpisodeCollector(plan.spec, plan.steps_per_episode)
    setup_seconds = time.perf_counter() - started
    collector.collect(0, 0)  # warm-up: first-episode compilation and caches
    started, cpu_started = time.perf_counter(), time.process_time()
    for index in range(1, episodes + 1):
        collector.collect(0, index)
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    steps = episodes * plan.steps_per_episode
    return steps / elapsed, steps / cpu_elapsed, setup_seconds


def parallel_steps_per_sec(dataset: str, episodes: int, workers: int) -> tuple[float, float]:
    """(end-to-end steps/s, seconds) for a reduced dataset of `episodes` episodes."""
    plan = plan_generation(dataset, episodes)
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        build_dataset(plan, directory, workers, seed=0, log=_quiet)
        elapsed = time.perf_counter() - started
    return plan.total_steps / elapsed, elapsed


def measure_full(dataset: str, workers: int) -> float:
    plan = plan_generation(dataset)
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        build_dataset(plan, directory, workers, seed=0, log=print)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cube-double-play-v0")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per measurement")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--full", action="store_true", help="also build the full dataset and time it")
    args = parser.parse_args()
    os.environ.setdefault("FLOWRL_NO_DOWNLOAD", "1")

    full_plan = plan_generation(args.dataset)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    single, single_cpu, setup = per_worker_steps_per_sec(args.dataset, args.episodes)
    print(f"per worker: {single:,.0f} steps/s wall, {single_cpu:,.0f} steps per CPU-second "
          f"({full_plan.steps_per_episode / single_cpu:.2f} CPU-s per {full_plan.steps_per_episode}-step episode; "
          f"environment setup {setup:.1f} s)")
    parallel, seconds = parallel_steps_per_sec(args.dataset, args.episodes * args.workers, args.workers)
    print(f"{args.workers} workers end to end: {parallel:,.0f} steps/s "
          f"({parallel / args.workers:,.0f} per worker; {seconds:.1f} s for "
          f"{args.episodes * args.workers} + {max(1, args.episodes * args.workers // 10)} episodes incl. start-up)")
    extrapolated = full_plan.total_steps / parallel
    idle_estimate = full_plan.total_steps / (single_cpu * args.workers)
    print(f"full {args.dataset}: {full_plan.train_episodes} + {full_plan.val_episodes} episodes, "
          f"{full_plan.total_steps:,} steps -> extrapolated {extrapolated / 60:.0f} min on {args.workers} workers "
          f"at this run's end-to-end rate; {idle_estimate / 60:.0f} min if each worker had an idle core")
    if args.full:
        measured = measure_full(args.dataset, args.workers)
        print(f"full {args.dataset}: measured {measured / 60:.1f} min on {args.workers} workers")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
