"""Update rate of offline training streamed from shards (flowrl.run.stream) against the same
training on one shard held in memory: the issue's target is >= 95 %.

    python benchmarks/shard_stream.py                      # paper size: FQL 4 x 512, batch 256, 1M-row shards
    python benchmarks/shard_stream.py --size tiny          # seconds, on any machine (what tests/test_device_check.py runs)

Both sides run the same compiled chunk program (flowrl.engine.training.ChunkRunner, one member)
in chunks of `--interval` updates, the stream's swap interval (--dataset_replace_interval, the
authors' 1000): the in-memory side on one shard on the device; the streamed side on a window of
`--window` shards of a directory of `--shards` synthetic shard files (OGBench's raw layout,
written first), the oldest swapped for the next at every chunk start, the next one read by the
stream's background thread while the chunks run, exactly as a run does. The two sides alternate
for `--rounds` rounds; each round times `--chunks` chunks of each. Prints updates/s of both, their
ratio, and the stream's peak memory (window plus one loading shard).
"""

import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's flowrl

import jax
import numpy as np

from flowrl.agents import fql  # noqa: E402 (after the path)
from flowrl.engine.training import ChunkRunner, init_members, member_shardings
from flowrl.run.stream import ShardStream, peak_bytes, size_of
from flowrl.suites.data.shards import episode_transitions, shard_files

SIZES = dict(  # rows per shard, episode length, observation and action sizes, FQL's networks and batch
    tiny=dict(rows=2_000, episode=100, obs_dim=8, action_dim=2, hidden=(8, 8), flow_steps=2, batch_size=8, interval=50,
              chunks=4, shards=4, window=2),
    paper=dict(rows=1_000_000, episode=1_000, obs_dim=40, action_dim=5, hidden=None, flow_steps=None, batch_size=256, interval=1000,
               chunks=6, shards=4, window=2),
)


def write_shards(directory: str, count: int, rows: int, episode: int, obs_dim: int, action_dim: int) -> list:
    """`count` shard files of `rows` rows in whole episodes of `episode` rows (OGBench's raw layout)."""
    rng = np.random.default_rng(0)
    for index in range(count):
        terminals = np.zeros(rows, np.float32)
        terminals[episode - 1::episode] = 1.0
        np.savez(os.path.join(directory, f'synthetic-v0-{index:03d}.npz'),
                 observations=rng.normal(size=(rows, obs_dim)).astype(np.float32),
                 actions=rng.uniform(-1, 1, (rows, action_dim)).astype(np.float32),
                 rewards=np.zeros(rows, np.float32), terminals=terminals)
    return [str(path) for path in shard_files(directory)]


def fql_config(size: dict):
    config = fql.get_config()
    if size['hidden'] is not None:
        config.actor_hidden_dims = config.value_hidden_dims = size['hidden']
    if size['flow_steps'] is not None:
        config.flow_steps = size['flow_steps']
    config.batch_size = size['batch_size']
    return config


def read_shard(path: str) -> dict:
    with np.load(path) as raw:
        return episode_transitions({k: raw[k] for k in raw.files})


def stream_against_memory(size: dict, rounds: int = 1, log=print) -> dict:
    """{'memory', 'stream'}: updates/s per round of each side, 'ratio' of the medians, 'peak_bytes'."""
    config = fql_config(size)
    members, replicated = member_shardings(1)
    with tempfile.TemporaryDirectory(prefix='shard_stream-') as directory:
        files = write_shards(directory, size['shards'], size['rows'], size['episode'], size['obs_dim'],
                             size['action_dim'])
        one = read_shard(files[0])
        rows = len(one['actions'])
        stream = ShardStream(files, read_shard, 0, size['window'], size['interval'], 10**12, rows,
                             place=lambda tree: jax.device_put(tree, replicated))
        in_memory = jax.device_put(one, replicated)
        states, rngs = init_members(fql, [config], [0], {k: v[:2] for k, v in one.items()})
        runner = ChunkRunner(fql, config.batch_size, 'auto', config)
        placed = lambda: [jax.device_put(jax.tree.map(np.array, x), members) for x in (states, rngs)]  # noqa: E731
        sides = dict(memory=placed(), stream=placed())  # own copies: a chunk donates its inputs
        state, step = stream.first(), 0

        def chunk(side, dataset):
            sides[side][0], sides[side][1], totals, _ = runner.run(*sides[side], None, dataset, size['interval'])
            jax.block_until_ready(totals)

        def memory_rate():
            start = time.perf_counter()
            for _ in range(size['chunks']):
                chunk('memory', in_memory)
            return size['chunks'] * size['interval'] / (time.perf_counter() - start)

        def stream_rate():
            nonlocal state, step
            start = time.perf_counter()
            for _ in range(size['chunks']):
                state = stream.state_at(state, step)  # a swap at every chunk start but the first
                chunk('stream', stream.window_for(state))
                step += size['interval']
            return size['chunks'] * size['interval'] / (time.perf_counter() - start)

        chunk('memory', in_memory)  # compile both shapes (a window holds K shards) and the swap's program
        chunk('stream', stream.window_for(state))
        step = size['interval']
        state = stream.state_at(state, step)
        chunk('stream', stream.window_for(state))
        step += size['interval']
        rates = dict(memory=[], stream=[])
        for round_ in range(rounds):
            rates['memory'].append(memory_rate())
            rates['stream'].append(stream_rate())
            log(f'  round {round_ + 1}: in memory {rates["memory"][-1]:.1f} updates/s, streamed '
                f'{rates["stream"][-1]:.1f} updates/s')
        stream.close()
        peak = peak_bytes(size['window'], size['shards'], size_of(one))
    ratio = float(np.median(rates['stream']) / np.median(rates['memory']))
    return dict(rates, ratio=ratio, peak_bytes=peak, rows=rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', default='paper', choices=sorted(SIZES))
    parser.add_argument('--rounds', type=int, default=3, help='alternated rounds of the two sides')
    for key in ('rows', 'shards', 'window', 'interval', 'chunks', 'obs_dim'):
        parser.add_argument(f'--{key}', type=int, default=None, help=f'override the size\'s {key}')
    args = parser.parse_args()
    size = dict(SIZES[args.size], **{k: getattr(args, k) for k in SIZES['tiny'] if getattr(args, k, None)})
    print(f'{platform.node()} | {jax.devices()[0].device_kind} | jax {jax.__version__} | {args.size}: {size}')
    result = stream_against_memory(size, args.rounds)
    print(f'FQL, shards of {result["rows"]:,} transitions, window {size["window"]} of {size["shards"]}, a swap every '
          f'{size["interval"]} updates: in memory {np.median(result["memory"]):.1f} updates/s, streamed '
          f'{np.median(result["stream"]):.1f} updates/s ({100 * result["ratio"]:.1f} %); peak memory of the stream '
          f'{result["peak_bytes"] / 2**30:.2f} GiB')


if __name__ == '__main__':
    main()
