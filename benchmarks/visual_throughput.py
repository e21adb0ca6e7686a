"""Visual FQL training throughput at the FQL README's visual settings: impala_small encoder per
network, batch 256, 4 x 512 MLPs, 64x64x3 frames stacked 3 deep (uint8 on the device, stacked by
index at sampling), random crops with p_aug 0.5.

    python benchmarks/visual_throughput.py [--seeds 1] [--chunk 20] [--repeats 3] [--frames 20000]

Prints compile time and updates/s of flowrl's compiled chunk loop (flowrl.engine.training.ChunkRunner)
on synthetic frames (the update's cost does not depend on the pixel values), and the device
memory the frames take. Rendering throughput for building visual datasets:
benchmarks/render_throughput.py.
"""

import argparse
import platform
import time

import jax
import ml_collections
import numpy as np

from agents import fql
from flowrl.kit import pixels
from flowrl.engine.training import ChunkRunner, init_members, member_shardings

ACTION_DIM, EPISODE = 5, 1001


def synthetic_frames(num_frames: int, frame_stack: int) -> dict:
    """A frame dataset with 1001-frame episodes (OGBench's manipulation length)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (num_frames, 64, 64, 3), dtype=np.uint8)
    rows = np.array([r for r in range(num_frames) if (r + 1) % EPISODE and r + 1 < num_frames])
    first_rows = rows - rows % EPISODE
    n = len(rows)
    return pixels.frame_dataset(frames, rows, first_rows, frame_stack,
                                actions=rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
                                rewards=-np.ones(n, np.float32), masks=np.ones(n, np.float32),
                                terminals=np.zeros(n, np.float32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, default=1)
    parser.add_argument('--chunk', type=int, default=20, help='updates per timed dispatch')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--frames', type=int, default=20_000)
    parser.add_argument('--frame_stack', type=int, default=3)
    parser.add_argument('--p_aug', type=float, default=0.5)
    parser.add_argument('--encoder', default='impala_small')
    args = parser.parse_args()
    print(f'{platform.node()} | {jax.devices()[0].device_kind} | jax {jax.__version__}')

    dataset = synthetic_frames(args.frames, args.frame_stack)
    config = fql.get_config()
    config.encoder, config.alpha = args.encoder, 300.0
    example = pixels.gather_transitions(dataset, np.arange(2))
    states, rngs = init_members(fql, [config] * args.seeds, list(range(args.seeds)), example)
    members, replicated = member_shardings(args.seeds)
    states, rngs = jax.device_put(states, members), jax.device_put(rngs, members)
    data = jax.device_put(dataset, replicated)
    print(f'frames on the device: {dataset["frames"].nbytes / 2**20:.0f} MiB for {len(dataset["frames"]):,} '
          f'frames ({dataset["frames"].nbytes / len(dataset["frames"]):.0f} B each, uint8)')
    runner = ChunkRunner(fql, config.batch_size, 'auto', ml_collections.FrozenConfigDict(config), p_aug=args.p_aug)
    start = time.perf_counter()
    states, rngs, summary = runner(states, rngs, data, args.chunk)
    jax.block_until_ready(summary)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.repeats):
        states, rngs, summary = runner(states, rngs, data, args.chunk)
    jax.block_until_ready(summary)
    per_chunk = (time.perf_counter() - start) / args.repeats
    print(f'visual FQL ({args.encoder}, batch {config.batch_size}, frame_stack {args.frame_stack}, '
          f'p_aug {args.p_aug}), {args.seeds} seed(s): {args.chunk * args.seeds / per_chunk:.2f} updates/s in all, '
          f'compile ~{first - per_chunk:.0f} s; critic loss {float(np.mean(summary["critic/loss"])):.4f}')


if __name__ == '__main__':
    main()
