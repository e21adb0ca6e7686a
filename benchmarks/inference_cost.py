"""Inference cost per action batch and training updates/s of every agent, at paper sizes.

    python benchmarks/inference_cost.py                      # every agent in agents/
    python benchmarks/inference_cost.py --agents qfql,ifql --repeats 5

Paper sizes: 4 x 512 MLPs, batch 256, synthetic observations of dim 40 and actions of dim 5.
Acting is timed for 50 observations (one evaluation step of 50 environments) and for 1; a
training "call" is a jitted lax.scan over `--updates_per_call` updates (as the training loop
runs them), so dispatch is amortised. Compilation and a warm-up call are excluded from the
rates and reported apart (first call minus a timed call); every timing ends with
block_until_ready; the table reports the median over `--repeats` calls. An agent with
`phase_updates` (QIPO) gets one training row per phase, since the loop runs each phase's own
compiled update.
The "passes" column is the expected network cost per action (docs/ALGORITHMS.md): FQL one
forward pass, flow agents K = flow_steps passes, QFQL K passes + K critic gradients, IFQL N*K.
"""

import argparse
import os
import platform
import statistics
import time

import jax

from flowrl.testing import agent_names, import_agent, synthetic_batch
from flowrl.engine.training import update_phases

OBS_DIM, ACTION_DIM, BATCH_SIZE = 40, 5, 256


def passes_per_action(config) -> str:
    """The network evaluations one action costs, from the agent's config."""
    name, steps = config.agent_name, config.get('flow_steps')
    if name == 'qfql':
        return f'{steps} v + {steps} grad Q'
    if name == 'ifql':
        return f'{config.num_samples}x{steps} v + {config.num_samples} Q'
    if name in ('fql', 'iql', 'rebrac', 'sac'):
        return '1 actor'
    return f'{steps} v' if steps else '?'


def median_seconds(fn, repeats: int, with_first: bool = False):
    start = time.perf_counter()
    jax.block_until_ready(fn())  # warm-up: compile and first run excluded
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return (median, first - median) if with_first else median


def measure(agent, repeats: int, updates_per_call: int) -> list[dict]:
    config = agent.get_config()
    config.batch_size = BATCH_SIZE
    batch = synthetic_batch(batch_size=BATCH_SIZE, obs_dim=OBS_DIM, action_dim=ACTION_DIM)
    batch['next_actions'] = batch['actions']  # ReBRAC's critic penalty reads it; others ignore it
    state = agent.init(jax.random.PRNGKey(0), batch, config)

    sample = jax.jit(agent.sample_actions)
    row = dict(agent=config.agent_name, passes=passes_per_action(config))
    for n in (50, 1):
        observations = batch['observations'][:n]
        row[f'act_ms_{n}'] = 1e3 * median_seconds(lambda: sample(state, observations, jax.random.PRNGKey(1)), repeats)

    rows = []
    phases = update_phases(agent, config)
    for number, (first_step, update) in enumerate(phases, 1):
        def train(state, rng, update=update):
            return jax.lax.scan(lambda s, key: update(s, batch, key), state, jax.random.split(rng, updates_per_call))

        train = jax.jit(train)
        phase_state = state.replace(step=jax.numpy.asarray(first_step, state.step.dtype))
        seconds, compile_s = median_seconds(lambda: train(phase_state, jax.random.PRNGKey(2)), repeats, True)
        name = config.agent_name if len(phases) == 1 else f'{config.agent_name} phase {number}'
        rows.append(dict(row, agent=name, updates_per_s=updates_per_call / seconds, compile_s=compile_s))
    return rows


def machine() -> str:
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    if os.path.exists('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as info:
            cpu = next((line.split(':', 1)[1].strip() for line in info if line.startswith('model name')), cpu)
    load = f', load average {os.getloadavg()[0]:.1f}' if hasattr(os, 'getloadavg') else ''
    return f'{cpu}, {os.cpu_count()} CPU cores{load}; jax {jax.__version__} on {device.platform} ({device.device_kind})'



def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--agents', default='', help='comma-separated agent names (default: all in agents/)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls per measurement (median reported)')
    parser.add_argument('--updates_per_call', type=int, default=10, help='updates per timed training call')
    args = parser.parse_args()
    names = args.agents.split(',') if args.agents else agent_names()

    print(f'machine: {machine()}')
    print(f'sizes: 4x512 MLPs, obs_dim {OBS_DIM}, action_dim {ACTION_DIM}, training batch {BATCH_SIZE}')
    header = (f"{'agent':<14} {'network passes per action':<28} {'act 50 obs (ms)':>16} {'act 1 obs (ms)':>15} "
              f"{'updates/s':>10} {'compile (s)':>12}")
    print(header)
    print('-' * len(header))
    for name in names:
        try:
            rows = measure(import_agent(name), args.repeats, args.updates_per_call)
        except Exception as error:  # another agent may be mid-edit: report it, time the rest
            print(f'{name:<14} failed: {type(error).__name__}: {error}')
            continue
        for row in rows:
            print(f"{row['agent']:<14} {row['passes']:<28} {row['act_ms_50']:>16.2f} {row['act_ms_1']:>15.2f} "
                  f"{row['updates_per_s']:>10.2f} {row['compile_s']:>12.1f}", flush=True)


if __name__ == '__main__':
    main()
