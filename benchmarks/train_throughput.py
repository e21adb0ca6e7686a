"""FQL training throughput at paper sizes (batch 256, 4 x 512 networks, cube-double shapes), and
every agent's efficiency against the machine's matrix-product peak.

    python benchmarks/train_throughput.py                 # 1 and 4 seeds, member execution vmap and map
    python benchmarks/train_throughput.py --seeds 1,8 --precision default,highest     # on a GPU
    python benchmarks/train_throughput.py --sections efficiency --rounds 2           # every agent vs the peak

Efficiency (`--sections efficiency`): for each agent at its paper-size config, GFLOP per update
counted from the traced shapes (flowrl.engine.costs: every matrix product, loop bodies times their trip
counts), updates/s of the training loop (one member; QIPO per phase, with stored support sets,
the amortised support draws left out: benchmarks/flowq_qipo_cost.py --sections support has them),
achieved GFLOP/s and its fraction of the peak, the rate of a jitted batch-256 512 x 512 product
chain measured in the same process. Rounds alternate the peak and the agents.

Prints: compile time; updates/s of flowrl's scanned loop for each seed count, member execution
mode (flowrl.engine.training: vmap batches the members, map runs them in turn) and matmul precision,
with the final critic and actor losses (to see whether a precision changes them); the same
update driven the way the official FQL code drives it (numpy batch sampled on the host and one
jitted call per update), for equal work; and evaluation env-steps/s with batched policy calls.
"""

import argparse
import platform
import time

import jax
import numpy as np

from flowrl.agents import fql
from flowrl.engine.costs import matmul_flops, matmul_peak
from flowrl.engine.sampling import sample_batch
from flowrl.engine.training import ChunkRunner, init_members, member_shardings
from flowrl.kit import contract

OBS_DIM, ACTION_DIM, DATASET_SIZE = 40, 5, 100_000


def synthetic_dataset(size=DATASET_SIZE):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(size, OBS_DIM)).astype(np.float32)
    return dict(observations=obs, next_observations=obs + 0.01, masks=np.ones(size, np.float32),
                actions=rng.uniform(-1, 1, (size, ACTION_DIM)).astype(np.float32),
                rewards=-np.ones(size, np.float32), terminals=np.zeros(size, np.float32))


def scanned_updates_per_second(num_seeds, chunk, repeats, dataset, execution='auto', config=None):
    """(updates/s per seed, compile s, last chunk's mean critic loss, actor loss) of the main loop
    (FQL at paper size, or with `config`)."""
    config = config or fql.get_config()
    members, replicated = member_shardings(num_seeds)
    states, rngs = init_members(fql, [config] * num_seeds, list(range(num_seeds)), {k: v[:2] for k, v in dataset.items()})
    states, rngs = jax.device_put(states, members), jax.device_put(rngs, members)
    data = jax.device_put(dataset, replicated)
    runner = ChunkRunner(fql, config.batch_size, execution)
    start = time.perf_counter()
    states, rngs, summary = runner(states, rngs, data, chunk)
    jax.block_until_ready(summary)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        states, rngs, summary = runner(states, rngs, data, chunk)
    jax.block_until_ready(summary)
    per_chunk = (time.perf_counter() - start) / repeats
    losses = [float(np.mean(summary[k])) for k in ('critic/loss', 'actor/loss')]
    return chunk / per_chunk, first - per_chunk, *losses


def host_loop_updates_per_second(updates, dataset):
    """The official repository's structure: host-side sampling, one jitted update per step."""
    config = fql.get_config()
    state = jax.jit(fql.init, static_argnums=2)(jax.random.PRNGKey(0), {k: v[:2] for k, v in dataset.items()},
                                                 __import__('ml_collections').FrozenConfigDict(config))
    update = jax.jit(fql.update)
    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(0)

    def step(state, key):
        idx = rng.integers(0, DATASET_SIZE, config.batch_size)
        key, sub = jax.random.split(key)
        return update(state, {k: v[idx] for k, v in dataset.items()}, sub)[0], key

    state, key = step(state, key)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(updates):
        state, key = step(state, key)
    jax.block_until_ready(state)
    return updates / (time.perf_counter() - start)


def eval_env_steps_per_second(episodes, steps, config=None):
    from flowrl.suites.ogbench_envs import make_env, parse_env_name
    from flowrl.engine.evaluation import BLOCK, make_policy, member_keys

    spec = parse_env_name('cube-double-play')
    envs = [make_env(spec) for _ in range(episodes)]
    width = -(-episodes // BLOCK) * BLOCK  # policy calls on blocks of BLOCK slots, as in flowrl.engine.evaluation
    first = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    obs = np.zeros((1, width, first.shape[-1]), np.float32)
    obs[0, :episodes] = first
    config = config or fql.get_config()
    state = init_members(fql, [config], [0], dict(observations=obs[0, :2], actions=np.zeros((2, ACTION_DIM), np.float32)))[0]
    policy, keys = make_policy(fql), member_keys([0], 0)
    slots = np.arange(width, dtype=np.int32)[None]

    def actions(t):
        blocks = [slice(b, b + BLOCK) for b in range(0, width, BLOCK)]
        times = np.full_like(slots, t)
        return np.concatenate([np.asarray(out) for out in
                               [policy(state, obs[:, b], keys, slots[:, b], times[:, b]) for b in blocks]], axis=1)

    actions(0)
    start = time.perf_counter()
    for t in range(steps):
        acts = actions(t)
        for j, env in enumerate(envs):
            obs[0, j] = env.step(acts[0, j])[0]
    return episodes * steps / (time.perf_counter() - start)


EFFICIENCY_AGENTS = ('fql', 'iql', 'rebrac', 'flow_bc', 'flowq', 'qfql', 'ifql', 'sac', 'qipo')


def efficiency_cases(names, dataset):
    """(label, agent, config, first agent step) per timed update: one per agent, QIPO's phases each."""
    import importlib
    cases = []
    for name in names:
        agent = importlib.import_module(f'flowrl.agents.{name}')
        config = agent.get_config()
        starts = [start for start, _ in contract.hook(agent, 'phase_updates')(config)]
        if len(starts) == 1:
            cases.append((name, agent, config, 0))
        else:  # a row per phase, one step in (QIPO: not a step with a support draw)
            cases += [(f'{name} phase {i + 1}', agent, config, start + 1) for i, start in enumerate(starts)]
    return cases


class EfficiencyCase:
    """One agent's training loop at one step: GFLOP per update from shapes, and timed chunks."""

    def __init__(self, label, agent, config, first_step, dataset, chunk):
        self.label, self.first_step, self.chunk = label, first_step, chunk
        dataset = contract.hook(agent, 'prepare_dataset')(dict(dataset))  # as the runner does (ReBRAC)
        rows = len(dataset['actions'])
        states, rngs = init_members(agent, [config], [0], {k: v[:2] for k, v in dataset.items()}, rows=rows,
                                    log=lambda *_: None)
        members, replicated = member_shardings(1)
        self.states = jax.device_put(states.replace(step=states.step + first_step), members)
        self.rngs = jax.device_put(rngs, members)
        self.data = jax.device_put(dataset, replicated)
        self.runner = ChunkRunner(agent, config.batch_size, 'auto', config)
        update = [u for start, u in self.runner.phases if start <= first_step][-1]
        one = jax.tree.map(lambda x: x[0], self.states)
        key = jax.random.PRNGKey(0)
        batch = self.runner.sampler.from_dataset(self.data, key)
        self.gflop = matmul_flops(update, one, batch, key) / 1e9
        self.step = first_step
        self._chunk()  # compile

    def _chunk(self):
        self.states, self.rngs, _, _ = self.runner.run(self.states, self.rngs, None, self.data, self.chunk, self.step)
        jax.block_until_ready(self.states)
        self.step += self.chunk

    def updates_per_second(self, repeats):
        start = time.perf_counter()
        for _ in range(repeats):
            self._chunk()
        return self.chunk * repeats / (time.perf_counter() - start)


def efficiency_report(names, dataset, chunk, repeats, rounds, peak_seconds):
    """Prints, per round (the peak first, then every agent), GFLOP/update, updates/s, GFLOP/s and % of peak."""
    cases = []
    for label, agent, config, first_step in efficiency_cases(names, dataset):
        cases.append(EfficiencyCase(label, agent, config, first_step, dataset, chunk))
        print(f'  compiled {label}', flush=True)
    peaks, rates = [], {case.label: [] for case in cases}
    for _ in range(rounds):
        peaks.append(matmul_peak(peak_seconds) / 1e9)
        for case in cases:
            rates[case.label].append(case.updates_per_second(repeats))
    print(f'\nmatrix-product peak (jitted chain of batch-256 512x512 products), per round: '
          f'{" / ".join(f"{p:.0f}" for p in peaks)} GFLOP/s')
    print('\n| agent (paper size, 1 member) | GFLOP per update (shapes) | updates/s per round '
          '| GFLOP/s per round | % of the round\'s peak |')
    print('|---|---:|---:|---:|---:|')
    for case in cases:
        achieved = [case.gflop * r for r in rates[case.label]]
        print(f'| {case.label} | {case.gflop:.2f} | {" / ".join(f"{r:.2f}" for r in rates[case.label])} '
              f'| {" / ".join(f"{a:.0f}" for a in achieved)} '
              f'| {" / ".join(f"{100 * a / p:.0f}" for a, p in zip(achieved, peaks))} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seeds', default='1,4', help='comma-separated seed counts to time')
    parser.add_argument('--executions', default='vmap,map', help='member execution modes to time (flowrl.engine.training)')
    parser.add_argument('--precision', default='default', help="matmul precisions to time: default,high,highest")
    parser.add_argument('--chunk', type=int, default=50, help='updates per compiled chunk')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--host_updates', type=int, default=100, help='updates for the host-loop reference (0: skip)')
    parser.add_argument('--eval_episodes', type=int, default=50)
    parser.add_argument('--eval_steps', type=int, default=100, help='env steps for the eval timing (0: skip)')
    parser.add_argument('--sections', default='throughput', help='throughput (FQL, members), efficiency (all agents)')
    parser.add_argument('--agents', default=','.join(EFFICIENCY_AGENTS), help='agents of the efficiency table')
    parser.add_argument('--rounds', type=int, default=2, help='alternated rounds of the efficiency table')
    parser.add_argument('--peak_seconds', type=float, default=2.0, help='seconds of product-chain calls per peak')
    args = parser.parse_args()
    dataset = synthetic_dataset()
    if 'efficiency' in args.sections.split(','):
        print(f'machine: {platform.processor() or platform.machine()}, {jax.device_count()} x '
              f'{jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}')
        efficiency_report(args.agents.split(','), dataset, args.chunk, args.repeats, args.rounds, args.peak_seconds)
    if 'throughput' not in args.sections.split(','):
        return
    print(f'machine: {platform.processor() or platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind} '
          f'({jax.default_backend()}), jax {jax.__version__}')
    print(f'FQL, batch 256, 4x512 nets, obs {OBS_DIM}, actions {ACTION_DIM}; chunk {args.chunk} updates\n')
    print(f'{"loop":<34}{"seeds":>6}{"updates/s (all)":>17}{"per seed":>11}{"compile s":>11}'
          f'{"critic loss":>13}{"actor loss":>12}')
    for precision in args.precision.split(','):
        for execution in args.executions.split(','):
            for seeds in [int(s) for s in args.seeds.split(',')]:
                with jax.default_matmul_precision(None if precision == 'default' else precision):
                    rate, compile_s, critic, actor = scanned_updates_per_second(
                        seeds, args.chunk, args.repeats, dataset, execution)
                name = f'flowrl {execution}, {precision} precision'
                print(f'{name:<34}{seeds:>6}{rate * seeds:>17.1f}{rate:>11.1f}{compile_s:>11.1f}'
                      f'{critic:>13.4g}{actor:>12.4g}')
    if args.host_updates:
        rate = host_loop_updates_per_second(args.host_updates, dataset)
        print(f'{"host loop (official structure)":<34}{1:>6}{rate:>17.1f}{rate:>11.1f}{"":>11}')
    if args.eval_steps:
        from flowrl.engine.evaluation import BLOCK
        rate = eval_env_steps_per_second(args.eval_episodes, args.eval_steps)
        print(f'\nevaluation, cube-double, {args.eval_episodes} envs: {rate:.0f} env-steps/s '
              f'(one batched policy call per {BLOCK}-slot block per step)')


if __name__ == '__main__':
    main()
