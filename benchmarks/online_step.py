"""Device time of one online fine-tuning step (append the transition, draw a batch from dataset and
online buffer, one update, the next actions) at a given dataset size and online-buffer capacity,
without environments: flowrl.engine.online.OnlineProgram on synthetic cube-like rows (40-dim
observations, 5-dim actions).

    python benchmarks/online_step.py [--agent fql] [--rows 1000000] [--capacity 1000000] [--members 1]
    python benchmarks/online_step.py --against_offline --rounds 2     # online step vs the offline loop's update

A step's cost must not grow with the buffer: a 1M-step run holds a 1M-row online buffer per member.
`--against_offline`: the same agent's update inside the offline chunk loop (flowrl.engine.training,
chunks of --chunk updates), timed in the same process, alternating with the online steps for
--rounds rounds; prints both per update and their ratio per round.
"""

import argparse
import importlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.engine.online import OnlineProgram, empty_buffers
from flowrl.engine.sampling import Sampler
from flowrl.engine.training import ChunkRunner, init_members, member_shardings, metric_names

OBS_DIM, ACTION_DIM = 40, 5


def synthetic_dataset(rows: int) -> dict:
    rng = np.random.default_rng(0)
    return dict(observations=rng.normal(size=(rows, OBS_DIM)).astype(np.float32),
                actions=rng.uniform(-1, 1, (rows, ACTION_DIM)).astype(np.float32),
                rewards=np.zeros(rows, np.float32), masks=np.ones(rows, np.float32),
                terminals=np.zeros(rows, np.float32),
                next_observations=rng.normal(size=(rows, OBS_DIM)).astype(np.float32))


def online_step_seconds(agent, config, rows: int, capacity: int, members: int, steps: int) -> float:
    """Seconds per online step (append, batch from dataset and buffer, one update, next actions to
    the host) of `members` members of `agent` with `config`, after three steps that compile it."""
    dataset = synthetic_dataset(rows)
    states, rngs = init_members(agent, [config] * members, list(range(members)), {k: v[:2] for k, v in dataset.items()})
    member_sharding, replicated = member_shardings(members)
    states, rngs = jax.device_put(states, member_sharding), jax.device_put(rngs, member_sharding)
    dataset = jax.device_put(dataset, replicated)
    online = empty_buffers(dataset, members, capacity, member_sharding)
    program = OnlineProgram(agent, config.batch_size, 'auto', False, capacity)
    one = jax.tree.map(lambda x: x[0], states)
    totals = {k: jnp.zeros((members,), jnp.float32) for k in metric_names(agent.update, one, dataset, Sampler(config.batch_size))}
    alive = jnp.ones((members,), bool)
    transitions = {k: np.repeat(np.asarray(v[:1]), members, axis=0) for k, v in dataset.items()}

    def run(count, states, rngs, totals, online):
        for _ in range(count):
            states, rngs, totals, online, _, actions = program.step(agent.update, states, rngs, totals, alive, online,
                                                                    transitions, transitions['observations'], dataset)
            np.asarray(actions)  # the host needs them for the next environment step
        return states, rngs, totals, online

    carry = run(3, states, rngs, totals, online)
    start = time.perf_counter()
    run(steps, *carry)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--agent', default='fql')
    parser.add_argument('--rows', type=int, default=1_000_000, help='dataset rows')
    parser.add_argument('--capacity', type=int, default=1_000_000, help='online buffer rows per member')
    parser.add_argument('--members', type=int, default=1)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--against_offline', action='store_true', help='time the offline loop\'s update beside it')
    parser.add_argument('--chunk', type=int, default=20, help='updates per offline chunk (--against_offline)')
    parser.add_argument('--rounds', type=int, default=2, help='alternated rounds (--against_offline)')
    args = parser.parse_args()
    print(f'{platform.node()} | {jax.devices()[0].device_kind} | jax {jax.__version__}')

    agent = importlib.import_module(f'flowrl.agents.{args.agent}')
    if not args.against_offline:
        per_step = online_step_seconds(agent, agent.get_config(), args.rows, args.capacity, args.members, args.steps)
        print(f'{args.agent} (paper size), {args.members} member(s), dataset {args.rows:,} rows, online buffer '
              f'{args.capacity:,} rows: {per_step * 1e3:.1f} ms per online step')
        return
    config = agent.get_config()
    dataset = synthetic_dataset(args.rows)
    states, rngs = init_members(agent, [config] * args.members, list(range(args.members)),
                                {k: v[:2] for k, v in dataset.items()})
    members, replicated = member_shardings(args.members)
    states, rngs = jax.device_put(states, members), jax.device_put(rngs, members)
    dataset = jax.device_put(dataset, replicated)
    online = empty_buffers(dataset, args.members, args.capacity, members)
    program = OnlineProgram(agent, config.batch_size, 'auto', False, args.capacity)
    one = jax.tree.map(lambda x: x[0], states)
    totals = {k: jnp.zeros((args.members,), jnp.float32)
              for k in metric_names(agent.update, one, dataset, Sampler(config.batch_size))}
    alive = jnp.ones((args.members,), bool)
    transitions = {k: np.repeat(np.asarray(v[:1]), args.members, axis=0) for k, v in dataset.items()}
    observations = transitions['observations']

    def steps(count, states, rngs, totals, online):
        for _ in range(count):
            states, rngs, totals, online, _, actions = program.step(agent.update, states, rngs, totals, alive, online,
                                                                    transitions, observations, dataset)
            np.asarray(actions)  # the host needs them for the next environment step
        return states, rngs, totals, online

    carry = steps(3, states, rngs, totals, online)
    offline = init_members(agent, [config] * args.members, list(range(args.members)),
                           {k: v[:2] for k, v in dataset.items()}, rows=args.rows, log=lambda *_: None)
    offline = jax.device_put(offline, members)
    runner = ChunkRunner(agent, config.batch_size, 'auto', config)
    offline = runner.run(*offline, None, dataset, args.chunk)[:2]  # compile
    jax.block_until_ready(offline)
    print(f'{args.agent} (paper size), {args.members} member(s), dataset {args.rows:,} rows, online buffer '
          f'{args.capacity:,} rows; ms per update (all members), {args.rounds} alternated rounds:')
    for round_ in range(args.rounds):
        start = time.perf_counter()
        carry = steps(args.steps, *carry)
        online_ms = (time.perf_counter() - start) / args.steps * 1e3
        start = time.perf_counter()
        offline = runner.run(*offline, None, dataset, args.chunk)[:2]
        jax.block_until_ready(offline)
        offline_ms = (time.perf_counter() - start) / args.chunk * 1e3
        print(f'  round {round_ + 1}: online step {online_ms:.1f} ms, offline loop update {offline_ms:.1f} ms, '
              f'online / offline {online_ms / offline_ms:.3f}', flush=True)


if __name__ == '__main__':
    main()
