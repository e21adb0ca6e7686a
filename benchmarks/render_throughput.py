"""Benchmark: rendering visual OGBench datasets from state datasets, and the time for a full one.

    python benchmarks/render_throughput.py [--dataset visual-cube-single-play-v0] [--frames 40] [--workers 2]

Prints
1. per process: frames/s (and CPU seconds per frame) of one renderer (set_state + render at
   64x64) after its start-up, and the compressed bytes per stored frame;
2. with `--workers` processes: a reduced dataset of 20-step episodes rendered end to end through
   `render_dataset` (start-up, rendering, compression and writing included);
3. the estimated wall time of the full dataset from (1) and from (2).
The machine's load average is printed too: other processes on a shared machine slow it down.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from flowrl.making.generate import build_dataset, default_workers, format_duration  # noqa: E402
from flowrl.making.render import StateRenderer, render_dataset  # noqa: E402
from flowrl.suites.data.plans import plan_rendering  # noqa: E402

SHORT_STEPS = 20  # steps per episode of the end-to-end measurement's dataset


def _quiet(*args, **kwargs):
    pass


def short_state_dataset(dataset: str, episodes: int, steps: int, directory: str):
    """(render plan, state training file) of a reduced dataset with `steps`-step episodes, generated
    in this process (flowrl.testing.short_manipulation_episodes does the same for tests)."""
    import flowrl.suites.data.protocol as protocol

    full_steps, protocol.MANIPULATION_STEPS = protocol.MANIPULATION_STEPS, steps
    try:
        plan = plan_rendering(dataset, episodes)
        return plan, build_dataset(plan.state, directory, 1, seed=0, log=_quiet)
    finally:
        protocol.MANIPULATION_STEPS = full_steps


def per_process(dataset: str, frames: int, directory: str) -> tuple[float, float, float, float]:
    """(frames/s, CPU seconds per frame, compressed bytes per frame, renderer start-up seconds) on the
    states of an oracle episode. CPU time counts every thread: Mesa's llvmpipe renders with several."""
    plan, state_file = short_state_dataset(dataset, 1, frames, directory)
    with np.load(state_file) as state:
        qpos, qvel = state["qpos"], state["qvel"]
        buttons = state["button_states"] if "button_states" in state.files else None
    started = time.perf_counter()
    renderer = StateRenderer(plan.render_env_id)
    setup = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    rendered = renderer.render_rows(qpos, qvel, buttons)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    renderer.close()
    compressed = len(zlib.compress(rendered.tobytes(), 6)) / frames  # the deflate np.savez_compressed uses
    return frames / elapsed, cpu / frames, compressed, setup


def end_to_end(dataset: str, episodes: int, workers: int, directory: str) -> tuple[int, float]:
    """(frames, seconds) of render_dataset on a reduced dataset with SHORT_STEPS-step episodes."""
    plan, state_file = short_state_dataset(dataset, episodes, SHORT_STEPS, directory)
    started = time.perf_counter()
    render_dataset(plan, state_file, directory, workers, log=_quiet)
    return plan.frames, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="visual-cube-single-play-v0")
    parser.add_argument("--frames", type=int, default=40, help="frames for the per-process measurement")
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    os.environ.setdefault("FLOWRL_NO_DOWNLOAD", "1")

    full = plan_rendering(args.dataset)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as directory:
        single, cpu_per_frame, bytes_per_frame, setup = per_process(args.dataset, args.frames, directory)
        print(f"per process: {single:.2f} frames/s ({1 / single:.3f} s a frame, {cpu_per_frame:.3f} CPU-s a frame; "
              f"renderer start-up {setup:.1f} s), {bytes_per_frame:,.0f} compressed bytes per frame")
        frames, seconds = end_to_end(args.dataset, 2 * args.workers, args.workers, directory)
    parallel = frames / seconds
    print(f"{args.workers} workers end to end: {parallel:.2f} frames/s ({seconds:.1f} s for {frames} frames "
          f"incl. worker start-up, compression and writing)")
    print(f"full {args.dataset}: {full.frames:,} frames, {full.uncompressed_bytes() / 1e9:.1f} GB uncompressed, "
          f"~{full.frames * bytes_per_frame / 1e9:.1f} GB on disk -> "
          f"{format_duration(full.frames / (single * args.workers))} on {args.workers} workers at the per-process "
          f"rate, {format_duration(full.frames / parallel)} at this run's end-to-end rate")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
