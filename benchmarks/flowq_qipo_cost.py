"""Cost of FlowQ's and QIPO's updates at paper sizes (batch 256, 4 x 512 networks) on a synthetic
batch with cube-double's sizes (obs_dim 40, action_dim 5).

1. Policy-update time of FlowQ next to FQL for flow_steps in {1, 4, 16, 64}: the jitted gradient
   of each agent's actor loss alone, and its full update. FQL's distillation target integrates
   the flow (K Euler steps); FlowQ's policy loss never samples the policy, so it should stay flat.
2. QIPO's full update in each phase (the step counter is set into the phase) and the snapshot
   renewal alone.
3. QIPO's support sets drawn per batch (support='batch') against stored per renewal
   (support='dataset'), side by side with flow BC's update, alternated for --rounds rounds: each
   phase's update, the stored draws over --work_rows synthetic rows, and the default schedule's
   share of those draws per update for a --dataset_rows dataset (linear in the rows: blocks of
   rows), then the default 1M-update run's time in each mode.

Timings: jit, compile and one warm-up call excluded, `block_until_ready`, median of --reps calls.

    python benchmarks/flowq_qipo_cost.py [--reps 5] [--flow_steps 1,4,16,64] [--sections flowq,qipo,support]
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from flowrl.agents import flowq, fql, qipo
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
    from flowrl.agents import flow_bc
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


def qipo_support_entries(batch, work_rows: int):
    """name -> (jitted fn, args): flow BC's update, QIPO's phase updates with per-batch and with
    stored supports, and the two stored draws over `work_rows` rows (cube-double shapes)."""
    import numpy as np

    from flowrl.agents import flow_bc
    from flowrl.engine.training import with_zero_arrays
    from flowrl.kit.dataset_work import ROWS_KEY
    config = qipo.get_config()
    rng = jax.random.PRNGKey(1)
    bc_state = flow_bc.init(jax.random.PRNGKey(0), batch, flow_bc.get_config())
    dataset = synthetic_batch(rng_seed=2, batch_size=work_rows, obs_dim=OBS_DIM, action_dim=ACTION_DIM)
    batch_config = config.copy_and_resolve_references()
    batch_config.support = 'batch'
    per_batch = qipo.init(jax.random.PRNGKey(0), batch, batch_config)
    state = qipo.init(jax.random.PRNGKey(0), batch, config)
    state = jax.tree.map(lambda x: x[0], with_zero_arrays(jax.tree.map(lambda x: x[None], state),
                                                          qipo.support_arrays(state.config, work_rows)))
    rows = jax.random.randint(jax.random.PRNGKey(3), (BATCH_SIZE,), 0, work_rows)
    with_rows = dict(batch, **{ROWS_KEY: rows})
    start = qipo.policy_start(config)
    at = lambda s, step: s.replace(step=jnp.int32(step))
    (_, phase1), (_, phase2), (_, phase3) = qipo.phase_updates(config)
    draw2, draw3 = jax.jit(qipo.draw_next_state_supports), jax.jit(qipo.draw_policy_supports)
    filled = draw3(at(state, start), dataset, rng)  # realistic stored values for the phase-3 update
    np.asarray(filled.extras[qipo.SUPPORT_Q])
    return {
        'flow BC update': (jax.jit(flow_bc.update), (bc_state, batch, rng)),
        'phase 1 update': (jax.jit(phase1), (at(per_batch, 0), batch, rng)),
        'phase 2 update, per-batch supports': (jax.jit(phase2), (at(per_batch, config.bc_steps), batch, rng)),
        'phase 2 update, stored supports': (jax.jit(phase2), (at(filled, config.bc_steps + 1), with_rows, rng)),
        'phase 3 update, per-batch supports': (jax.jit(phase3), (at(per_batch, start + 1), batch, rng)),
        'phase 3 update, stored supports': (jax.jit(phase3), (at(filled, start + 1), with_rows, rng)),
        f'phase 2 stored draw, {work_rows:,} rows': (draw2, (at(state, config.bc_steps), dataset, rng)),
        f'phase 3 stored draw (renewal), {work_rows:,} rows': (draw3, (at(state, start), dataset, rng)),
    }


def qipo_support_report(batch, reps: int, rounds: int, work_rows: int, dataset_rows: int):
    """Prints the per-batch / stored comparison (alternated rounds) and the 1M-run estimates."""
    from flowrl.engine.costs import matmul_flops
    config = qipo.get_config()
    entries = qipo_support_entries(batch, work_rows)
    gflop = {name: matmul_flops(fn, *args) / 1e9 for name, (fn, args) in entries.items()}
    for fn, args in entries.values():  # compile everything before the first timed round
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in entries}
    for _ in range(rounds):
        for name, (fn, args) in entries.items():
            times[name].append(median_ms(fn, *args, reps=1 if 'draw' in name else reps))
    scale = dataset_rows / work_rows
    phase3_steps = qipo.SCHEDULE_STEPS - qipo.policy_start(config)
    renewals = -(-phase3_steps // config.renew_period)
    names = [name for name in entries if 'draw' in name]
    draw2, draw3 = [times[name] for name in names]
    share = {'phase 2 update, stored supports': (names[0], scale / config.critic_steps),
             'phase 3 update, stored supports': (names[1], scale * renewals / phase3_steps)}
    amortised = {name: [t * factor for t in times[draw]] for name, (draw, factor) in share.items()}
    amortised_gflop = {name: gflop[draw] * factor for name, (draw, factor) in share.items()}
    print(f'\n| QIPO support sets (M = 16, flow_steps 10), {rounds} alternated rounds | GFLOP (shapes) '
          f'| ms per round | + stored draws per update ({dataset_rows:,} rows, default schedule): GFLOP, ms '
          f'| x flow BC per round (GFLOP ratio) |')
    print('|---|---:|---|---|---|')
    bc = times['flow BC update']
    for name, values in times.items():
        extra = amortised.get(name, [0.0] * rounds)
        total = [v + e for v, e in zip(values, extra)]
        flop_ratio = (gflop[name] + amortised_gflop.get(name, 0.0)) / gflop['flow BC update']
        ratio = '' if 'draw' in name else ' / '.join(f'{t / b:.1f}' for t, b in zip(total, bc)) + f' ({flop_ratio:.1f})'
        shown = (f'{amortised_gflop[name]:.2f}, ' + ' / '.join(f'{e:.1f}' for e in extra)) if name in amortised else ''
        print(f'| {name} | {gflop[name]:.2f} | {" / ".join(f"{v:.1f}" for v in values)} | {shown} | {ratio} |')
    best = lambda name: min(times[name])
    before = (config.bc_steps * best('phase 1 update') + config.critic_steps * best('phase 2 update, per-batch supports')
              + phase3_steps * best('phase 3 update, per-batch supports')) / 1e3
    after = (config.bc_steps * best('phase 1 update') + config.critic_steps * best('phase 2 update, stored supports')
             + phase3_steps * best('phase 3 update, stored supports')
             + (min(draw2) + renewals * min(draw3)) * scale) / 1e3
    print(f'\nDefault 1M-update run ({config.bc_steps:,} / {config.critic_steps:,} / {phase3_steps:,} updates in '
          f'phases 1 / 2 / 3, {renewals} renewals, {dataset_rows:,} dataset rows), fastest round: '
          f'per-batch supports {before / 3600:.1f} h, stored supports {after / 3600:.1f} h.')


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
    parser.add_argument('--sections', default='flowq,qipo,support', help='tables to print: flowq,qipo,support')
    parser.add_argument('--rounds', type=int, default=2, help='alternated rounds of the support table')
    parser.add_argument('--work_rows', type=int, default=2048, help='synthetic rows the stored draws are timed on')
    parser.add_argument('--dataset_rows', type=int, default=1_000_000,
                        help='dataset size the stored draws are scaled to (cube-double-play: 1M transitions)')
    args = parser.parse_args()
    sections = args.sections.split(',')
    flow_steps_list = [int(k) for k in args.flow_steps.split(',')]

    print(f'machine: {machine_name()}; jax {jax.__version__}; '
          f'devices: {", ".join(str(d) for d in jax.devices())}')
    print(f'batch {BATCH_SIZE}, obs_dim {OBS_DIM}, action_dim {ACTION_DIM}, 4 x 512 networks; '
          f'median of {args.reps} calls after warm-up\n')
    batch = synthetic_batch(batch_size=BATCH_SIZE, obs_dim=OBS_DIM, action_dim=ACTION_DIM)

    if 'flowq' in sections:
        rows = policy_update_table(batch, flow_steps_list, args.reps)
        print('\n| flow_steps | FQL actor grad (ms) | FQL full update (ms) '
              '| FlowQ actor grad (ms) | FlowQ full update (ms) |')
        print('|---|---|---|---|---|')
        for k, fql_actor, fql_update, flowq_actor, flowq_update in rows:
            print(f'| {k} | {fql_actor:.1f} | {fql_update:.1f} | {flowq_actor:.1f} | {flowq_update:.1f} |')

    if 'qipo' in sections:
        print('\n| QIPO (M = 16 support actions, flow_steps 10) | time (ms) |')
        print('|---|---|')
        for name, ms in qipo_table(batch, args.reps):
            print(f'| {name} | {ms:.1f} |')

    if 'support' in sections:
        qipo_support_report(batch, args.reps, args.rounds, args.work_rows, args.dataset_rows)


if __name__ == '__main__':
    main()
