"""What a batch of H-step sequences costs against a batch of single transitions (flowrl.engine.sampling),
at paper sizes: batch 256, cube-double's shapes (40-dim observations, 5-dim actions) over 1M rows,
and visual observations (64 x 64 x 3 frames, 3 stacked, random crops) over --visual_rows frames.

    python benchmarks/sequence_sampling.py                          # H = 1 and 5, state and visual
    python benchmarks/sequence_sampling.py --horizons 1,5,10 --rounds 5

Each measurement is one jitted program drawing --draws batches in a loop (the training loop's
shape: sampling happens on the device, inside the compiled chunk), reduced to one number so
nothing is optimised away; per-batch time = wall time / draws. Rounds alternate the horizons
(the machine is noisy); the table gives the median per batch and the ratio to H = 1.
The Q-chunking authors' visual sampler went from 1.2 s to 57 ms per call once vectorised
(their utils/datasets.py); the issue's target is at most 2x the transition batch.
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.engine.sampling import Sampler
from flowrl.kit import pixels


def state_dataset(rows: int) -> dict:
    rng = np.random.default_rng(0)
    ends = np.zeros(rows, np.float32)
    ends[999::1000] = 1.0
    observations = rng.normal(size=(rows, 40)).astype(np.float32)
    return dict(observations=observations, next_observations=observations, actions=rng.uniform(-1, 1, (rows, 5)).astype(np.float32),
                rewards=rng.normal(size=rows).astype(np.float32), terminals=ends, masks=np.ones(rows, np.float32))


def visual_dataset(frames: int) -> dict:
    episodes = max(frames // 1001, 1)
    length = frames // episodes - 1
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (episodes * (length + 1), 64, 64, 3), np.uint8)
    rows = np.concatenate([e * (length + 1) + np.arange(length) for e in range(episodes)])
    first = np.repeat(np.arange(episodes) * (length + 1), length)
    ends = np.tile(np.eye(length, dtype=np.float32)[-1], episodes)
    return pixels.frame_dataset(images, rows, first, 3, actions=rng.uniform(-1, 1, (len(rows), 5)).astype(np.float32),
                                rewards=np.zeros(len(rows), np.float32), terminals=ends, masks=np.ones(len(rows), np.float32))


def program(sampler: Sampler, draws: int):
    def run(dataset, rng):
        def one(i, total):
            batch = sampler.from_dataset(dataset, jax.random.fold_in(rng, i))
            return total + sum(jnp.sum(v[..., :1].astype(jnp.float32)) for v in batch.values())
        return jax.lax.fori_loop(0, draws, one, jnp.zeros(()))
    return jax.jit(run)


def measure(dataset, sampler, draws, rounds_seconds):
    fn = program(sampler, draws)
    fn(dataset, jax.random.PRNGKey(0)).block_until_ready()  # compile
    def once(seed):
        start = time.perf_counter()
        fn(dataset, jax.random.PRNGKey(seed)).block_until_ready()
        rounds_seconds.append((time.perf_counter() - start) / draws)
    return once


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--horizons', default='1,5')
    parser.add_argument('--rows', type=int, default=1_000_000, help='transitions of the state dataset')
    parser.add_argument('--visual_rows', type=int, default=100_000, help='frames of the visual dataset (0: skip)')
    parser.add_argument('--draws', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    horizons = [int(h) for h in args.horizons.split(',')]
    print(f'{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}')
    cases = [('state', jax.device_put(state_dataset(args.rows)), 0.0)]
    if args.visual_rows:
        cases.append(('visual', jax.device_put(visual_dataset(args.visual_rows)), 1.0))
    for name, dataset, p_aug in cases:
        times = {h: [] for h in horizons}
        runs = {h: measure(dataset, Sampler(256, h, p_aug), args.draws, times[h]) for h in horizons}
        for r in range(args.rounds):
            for h in horizons:  # alternated
                runs[h](r)
        base = statistics.median(times[horizons[0]])
        for h in horizons:
            median = statistics.median(times[h])
            print(f'{name:6s} rows {pixels.num_transitions(dataset):>9,}  H={h:<3d} batch 256: '
                  f'{median * 1e3:8.3f} ms per batch  ({median / base:.2f}x H={horizons[0]})')


if __name__ == '__main__':
    main()
