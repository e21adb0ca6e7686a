"""Device time of one online fine-tuning step (append the transition, draw a batch from dataset and
online buffer, one update, the next actions) at a given dataset size and online-buffer capacity,
without environments: flowrl.online.OnlineProgram on synthetic cube-like rows (40-dim
observations, 5-dim actions).

    python benchmarks/online_step.py [--agent fql] [--rows 1000000] [--capacity 1000000] [--members 1]

A step's cost must not grow with the buffer: a 1M-step run holds a 1M-row online buffer per member.
"""

import argparse
import importlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.online import OnlineProgram, empty_buffers
from flowrl.training import init_members, member_shardings, metric_names

OBS_DIM, ACTION_DIM = 40, 5


def synthetic_dataset(rows: int) -> dict:
    rng = np.random.default_rng(0)
    return dict(observations=rng.normal(size=(rows, OBS_DIM)).astype(np.float32),
                actions=rng.uniform(-1, 1, (rows, ACTION_DIM)).astype(np.float32),
                rewards=np.zeros(rows, np.float32), masks=np.ones(rows, np.float32),
                terminals=np.zeros(rows, np.float32),
                next_observations=rng.normal(size=(rows, OBS_DIM)).astype(np.float32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--agent', default='fql')
    parser.add_argument('--rows', type=int, default=1_000_000, help='dataset rows')
    parser.add_argument('--capacity', type=int, default=1_000_000, help='online buffer rows per member')
    parser.add_argument('--members', type=int, default=1)
    parser.add_argument('--steps', type=int, default=20)
    args = parser.parse_args()
    print(f'{platform.node()} | {jax.devices()[0].device_kind} | jax {jax.__version__}')

    agent = importlib.import_module(f'agents.{args.agent}')
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
              for k in metric_names(agent.update, one, dataset, config.batch_size)}
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
    start = time.perf_counter()
    steps(args.steps, *carry)
    per_step = (time.perf_counter() - start) / args.steps
    print(f'{args.agent} (paper size), {args.members} member(s), dataset {args.rows:,} rows, online buffer '
          f'{args.capacity:,} rows: {per_step * 1e3:.1f} ms per online step')


if __name__ == '__main__':
    main()
