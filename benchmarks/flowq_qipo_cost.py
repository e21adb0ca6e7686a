"""Cost of FlowQ's and QIPO's updates at paper sizes (batch 256, 4 x 512 networks) on a synthetic
batch with cube-double's sizes (obs_dim 40, action_dim 5).

1. Policy-update time of FlowQ next to FQL for flow_steps in {1, 4, 16, 64}: the jitted gradient
   of each agent's actor loss alone, and its full update. FQL's distillation target integrates
   the flow (K Euler steps); FlowQ's policy loss never samples the policy, so it should stay flat.
2. QIPO's full update in each phase (the step counter is set into the phase) and the snapshot
   renewal alone.

Timings: jit, compile and one warm-up call excluded, `block_until_ready`, median of --reps calls.

    python benchmarks/flowq_qipo_cost.py [--reps 5] [--flow_steps 1,4,16,64]
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from agents import flowq, fql, qipo
from flowrl.testing import synthetic_batch

BATCH_SIZE, OBS_DIM, ACTION_DIM = 256, 40, 5


def median_ms(fn, *args, reps):
    """Median wall time of fn(*args) in ms, after a compile-and-warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def actor_grad_fn(agent, state):
    """jit(grad of the agent's actor loss w.r.t. all params): the policy update's compute."""
    nets = agent.networks(state.config)

    def grad(params, batch, rng):
        return jax.grad(lambda p: agent.actor_loss(nets, p, state.hparams, state.config, batch, rng)[0])(params)

    return jax.jit(grad)


def policy_update_table(batch, flow_steps_list, reps):
    rows = []
    for flow_steps in flow_steps_list:
        row = [flow_steps]
        for agent in (fql, flowq):
            config = agent.get_config()
            config.flow_steps = flow_steps
            state = agent.init(jax.random.PRNGKey(0), batch, config)
            rng = jax.random.PRNGKey(1)
            row.append(median_ms(actor_grad_fn(agent, state), state.params, batch, rng, reps=reps))
            row.append(median_ms(jax.jit(agent.update), state, batch, rng, reps=reps))
        rows.append(row)
        print(f'  flow_steps={flow_steps} done', flush=True)
    return rows


def qipo_table(batch, reps):
    """Each phase's own update (as the training loop runs it: `qipo.phase_updates`), beside flow BC's."""
    from agents import flow_bc
    config = qipo.get_config()
    state = qipo.init(jax.random.PRNGKey(0), batch, config)
    rng = jax.random.PRNGKey(1)
    bc_state = flow_bc.init(jax.random.PRNGKey(0), batch, flow_bc.get_config())
    rows = [('flow BC update (reference)', median_ms(jax.jit(flow_bc.update), bc_state, batch, rng, reps=reps))]
    (_, phase1), (_, phase2), (start, phase3) = qipo.phase_updates(config)
    for name, update, step in (('1 behaviour warm-up', phase1, 0), ('2 critic', phase2, config.bc_steps),
                               ('3 policy, renewal step', phase3, start), ('3 policy, other step', phase3, start + 1)):
        rows.append((f'update, phase {name}', median_ms(jax.jit(update), state.replace(step=jnp.int32(step)), batch,
                                                       rng, reps=reps)))
    renew = jax.jit(qipo.renew_snapshot)
    rows.append(('snapshot renewal alone', median_ms(renew, state.replace(step=jnp.int32(start)), reps=reps)))
    return rows


def machine_name():
    """platform.processor(), or the CPU model from /proc/cpuinfo where that is empty (Linux)."""
    name = platform.processor()
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            models = [line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name')]
        name = f'{models[0]} x {len(models)} (platform.processor(): {name or "empty"})' if models else name
    except OSError:
        pass
    return name or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reps', type=int, default=5, help='timed calls per entry (median reported)')
    parser.add_argument('--flow_steps', default='1,4,16,64', help='comma-separated flow_steps values')
    args = parser.parse_args()
    flow_steps_list = [int(k) for k in args.flow_steps.split(',')]

    print(f'machine: {machine_name()}; jax {jax.__version__}; '
          f'devices: {", ".join(str(d) for d in jax.devices())}')
    print(f'batch {BATCH_SIZE}, obs_dim {OBS_DIM}, action_dim {ACTION_DIM}, 4 x 512 networks; '
          f'median of {args.reps} calls after warm-up\n')
    batch = synthetic_batch(batch_size=BATCH_SIZE, obs_dim=OBS_DIM, action_dim=ACTION_DIM)

    rows = policy_update_table(batch, flow_steps_list, args.reps)
    print('\n| flow_steps | FQL actor grad (ms) | FQL full update (ms) '
          '| FlowQ actor grad (ms) | FlowQ full update (ms) |')
    print('|---|---|---|---|---|')
    for k, fql_actor, fql_update, flowq_actor, flowq_update in rows:
        print(f'| {k} | {fql_actor:.1f} | {fql_update:.1f} | {flowq_actor:.1f} | {flowq_update:.1f} |')

    print('\n| QIPO (M = 16 support actions, flow_steps 10) | time (ms) |')
    print('|---|---|')
    for name, ms in qipo_table(batch, args.reps):
        print(f'| {name} | {ms:.1f} |')


if __name__ == '__main__':
    main()
