"""The compiled training program: members = independent runs, exact resume, divergence checks."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.agents import fql
from flowrl.engine import checkpoints
from flowrl.errors import TrainingDiverged
from flowrl.run.runner import Run
from flowrl.suites import LoadedData
from flowrl.testing import index, max_abs_diff, synthetic_batch, tiny_config
from flowrl.errors import UserError
from flowrl.engine.sampling import Sampler, sample_batch
from flowrl.engine.training import ChunkRunner, chunk_boundaries, init_members, resolve_member_execution, train_member

DATASET = synthetic_batch(batch_size=256)
CONFIG = tiny_config(fql, batch_size=16)
# Shared: each (chunk length, member count) compiles once per session and execution mode.
RUNNERS = {mode: ChunkRunner(fql, 16, mode) for mode in ('vmap', 'map')}
RUNNER = RUNNERS['map']
UPDATES = 8


def _train(seeds, configs=None, runner=RUNNER):
    configs = configs or [CONFIG] * len(seeds)
    states, rngs = init_members(fql, configs, seeds, DATASET)
    return runner(states, rngs, DATASET, UPDATES)


def test_chunk_boundaries_cover_every_interval_and_the_end():
    assert list(chunk_boundaries(0, 10, (4, 6, 0))) == [4, 6, 8, 10]
    assert list(chunk_boundaries(6, 10, (4, 6))) == [8, 10]
    assert list(chunk_boundaries(0, 5, (5, 100))) == [5]


def test_member_execution_is_map_on_cpu_and_vmap_on_accelerators():
    assert resolve_member_execution('auto', 'cpu') == 'map'
    assert resolve_member_execution('auto', 'gpu') == resolve_member_execution('auto', 'tpu') == 'vmap'
    assert resolve_member_execution('vmap', 'cpu') == 'vmap'
    with pytest.raises(UserError, match='--member_execution must be one of'):
        resolve_member_execution('pmap')


@pytest.mark.parametrize('mode', [pytest.param('vmap', marks=pytest.mark.slow), 'map'])  # map: the CPU default
def test_n_seed_run_equals_n_single_seed_runs(mode):
    together, _, _ = _train([0, 1], runner=RUNNERS[mode])
    for i, seed in enumerate([0, 1]):
        alone, _, _ = _train([seed])  # one member: no member axis, whatever the mode
        assert max_abs_diff(index(together, i).params, index(alone, 0).params) < 1e-5
    assert max_abs_diff(index(together, 0).params, index(together, 1).params) > 1e-3  # seeds differ


def test_phase_updates_run_in_their_own_chunks_and_equal_the_step_by_step_update():
    """QIPO's phases (contract extension `phase_updates`): chunks end at phase starts, each chunk
    runs its phase's update, and the result equals calling the dispatching `update` per step."""
    from flowrl.agents import qipo
    config = tiny_config(qipo, batch_size=16, bc_steps=2, critic_steps=2, renew_period=1, critic_support=2,
                         policy_support=2, flow_steps=2, support='batch')  # per-batch supports, as `update` draws
    runner = ChunkRunner(qipo, 16, 'map', config)
    assert [start for start, _ in runner.phases] == [0, 2, 4]
    stops = list(chunk_boundaries(0, 6, (), [start for start, _ in runner.phases]))
    assert stops == [2, 4, 6]
    states, rngs = init_members(qipo, [config], [0], DATASET)
    reference, rng = index(states, 0), rngs[0]
    step = 0
    for stop in stops:
        states, rngs, summary = runner(states, rngs, DATASET, stop - step, step)
        assert set(np.asarray(summary['actor/phase'])) == {1.0 + step // 2}
        step = stop
    update = jax.jit(qipo.update)
    for _ in range(6):
        rng, batch_rng, update_rng = jax.random.split(rng, 3)
        reference, _ = update(reference, sample_batch(DATASET, batch_rng, 16), update_rng)
    assert max_abs_diff(index(states, 0).params, reference.params) < 1e-5
    assert max_abs_diff(index(states, 0).extras, reference.extras) < 1e-5


def test_dataset_work_runs_at_its_steps_and_resumes_exactly_from_a_checkpoint(tmp_path):
    """QIPO with stored supports (contract extension `dataset_work`): chunks end at phase 2's start
    and at every renewal, the work runs there (the stored supports change then and only then), and
    a run interrupted at an arbitrary update and restored from a checkpoint, supports included,
    continues exactly as the uninterrupted one."""
    from flowrl.agents import qipo
    config = tiny_config(qipo, batch_size=16, bc_steps=2, critic_steps=2, renew_period=3, critic_support=2,
                         policy_support=3, flow_steps=2, support_block_rows=100)
    runner = ChunkRunner(qipo, 16, 'map', config)
    assert runner.schedule_steps(0, 11) == [2, 4, 7, 10]
    assert runner.schedule_steps(5, 6) == [2, 5]  # agent steps 7 and 10, counted from the run's start
    stops = list(chunk_boundaries(0, 11, (), runner.schedule_steps(0, 11)))
    assert stops == [2, 4, 7, 10, 11]
    fresh = lambda: init_members(qipo, [config] * 2, [0, 1], DATASET, rows=256, log=lambda *_: None)
    states, rngs = fresh()
    assert states.extras['support_actions'].shape == (2, 256, 3, 3)
    step, changed = 0, []
    for stop in stops:
        before = np.asarray(states.extras['support_actions'])  # the states are donated to the chunk
        states, rngs, _ = runner(states, rngs, DATASET, stop - step, step)
        changed.append(max_abs_diff(states.extras['support_actions'], before) > 0)
        step = stop
    assert changed == [False, True, True, True, True]  # the chunks starting at 2, 4, 7, 10 drew supports
    straight = jax.device_get((states, rngs))
    states, rngs = fresh()
    for begin, stop in ((0, 2), (2, 3), (3, 4), (4, 5)):  # cut elsewhere too, interrupted at update 5 ...
        states, rngs, _ = runner(states, rngs, DATASET, stop - begin, begin)
    checkpoints.save(tmp_path, 5, dict(states=states, rngs=rngs))
    restored = checkpoints.restore(tmp_path, dict(zip(('states', 'rngs'), fresh())))
    states, rngs = restored['states'], restored['rngs']
    for begin, stop in ((5, 7), (7, 10), (10, 11)):  # ... and resumed
        states, rngs, _ = runner(states, rngs, DATASET, stop - begin, begin)
    assert max_abs_diff((states, rngs), straight) == 0.0


def test_dataset_work_refuses_states_without_its_arrays():
    from flowrl.agents import qipo
    config = tiny_config(qipo, batch_size=16, bc_steps=0, critic_steps=2, renew_period=3, critic_support=2,
                         policy_support=2, flow_steps=2)
    states, rngs = init_members(qipo, [config], [0], DATASET)  # no rows: no stored supports
    with pytest.raises(ValueError, match=r'init_members\(\.\.\., rows=<dataset rows>\)'):
        ChunkRunner(qipo, 16, 'map', config)(states, rngs, DATASET, 1, 0)


def test_stored_supports_that_do_not_fit_the_device_are_refused_before_the_run(monkeypatch):
    from flowrl.agents import qipo
    monkeypatch.setattr('flowrl.engine.training.free_bytes', lambda device: 100 * 2**20)
    config = tiny_config(qipo, critic_support=16, policy_support=8)
    lines = []
    # 1M rows x 16 actions x 3 dims + 1M x 9 Q values, float32: 228 MB per member.
    with pytest.raises(UserError, match=r"QIPO's stored support sets \(--agent.support=dataset\) need 0.42 GiB .* "
                                        r'and 0.10 GiB is free; pass --agent.support=batch'):
        init_members(qipo, [config] * 2, [0, 1], DATASET, rows=1_000_000, log=lines.append)
    assert lines == ["QIPO's stored support sets (--agent.support=dataset): 0.21 GiB per member (support_actions "
                     '1000000x16x3 float32, support_q 1000000x9 float32); 0.42 GiB on a device.']
    states, _ = init_members(qipo, [config], [0], DATASET, rows=100_000, log=lines.append)  # 22.9 MiB: fits
    assert states.extras['support_q'].shape == (1, 100_000, 9)


def test_sweep_member_equals_a_single_run_with_that_value():
    configs = [CONFIG.copy_and_resolve_references() for _ in range(2)]
    configs[1].alpha = 0.5
    together, _, _ = _train([0, 0], configs=configs)
    alone, _, _ = _train([0], configs=[configs[1]])
    assert float(together.hparams['alpha'][1]) == 0.5
    assert max_abs_diff(index(together, 1).params, index(alone, 0).params) < 1e-5
    assert max_abs_diff(index(together, 0).params, index(together, 1).params) > 1e-4


def test_interrupted_and_resumed_training_matches_uninterrupted(tmp_path):
    straight = RUNNER(*_train([0, 1])[:2], DATASET, UPDATES)
    states, rngs, _ = _train([0, 1])
    checkpoints.save(tmp_path, UPDATES, dict(states=states, rngs=rngs))
    like = dict(zip(('states', 'rngs'), init_members(fql, [CONFIG] * 2, [0, 1], DATASET)))
    restored = checkpoints.restore(tmp_path, like)
    resumed = RUNNER(restored['states'], restored['rngs'], DATASET, UPDATES)
    assert max_abs_diff(resumed[0], straight[0]) == 0.0
    assert max_abs_diff(resumed[1], straight[1]) == 0.0


def test_one_compiled_program_serves_every_chunk_length():
    runner = ChunkRunner(fql, 16, 'map')
    states, rngs = init_members(fql, [CONFIG], [0], DATASET)
    states, rngs, _ = runner(states, rngs, DATASET, 3)
    states, rngs, _ = runner(states, rngs, DATASET, 5)
    states = states.replace(hparams={**states.hparams, 'alpha': states.hparams['alpha'] * 2})
    runner(states, rngs, DATASET, 1)
    assert runner.function(1, fql.update)._cache_size() == 1


def test_chunks_cut_anywhere_give_the_same_state_and_metric_sums():
    runner = ChunkRunner(fql, 16, 'map')
    sums = {}
    for cuts in ((8,), (1, 4, 3)):
        states, rngs = init_members(fql, [CONFIG] * 2, [0, 1], DATASET)
        totals, step = None, 0
        for updates in cuts:
            states, rngs, totals, first_bad = runner.run(states, rngs, totals, DATASET, updates, step)
            step += updates
        sums[cuts] = (states, totals)
        assert list(first_bad) == [-1, -1]
    assert max_abs_diff(sums[(8,)][0], sums[(1, 4, 3)][0]) == 0.0
    assert max_abs_diff(sums[(8,)][1], sums[(1, 4, 3)][1]) == 0.0  # same additions in the same order


def test_chunk_reports_the_first_nonfinite_update_and_keeps_the_state_before_it():
    def update(state, batch, rng):  # metric 'a' turns NaN at the third update of the chunk
        state = state + 1.0
        return state, {'a': jnp.where(state == 3.0, jnp.nan, state), 'b': jnp.zeros(())}

    state, rng, totals, first_bad = train_member(update, Sampler(4), 5, jnp.float32(0.0), jax.random.PRNGKey(0), DATASET)
    assert int(first_bad) == 2 and float(state) == 0.0 and np.isnan(totals['a']) and float(totals['b']) == 0.0
    state, rng, totals, first_bad = train_member(update, Sampler(4), 2, jnp.float32(0.0), jax.random.PRNGKey(0), DATASET)
    assert int(first_bad) == -1 and float(state) == 2.0 and float(totals['a']) == 3.0


def test_nonfinite_loss_stops_the_run_with_the_step_and_metric(tmp_path, monkeypatch):
    bad = dict(DATASET, rewards=DATASET['rewards'].at[:].set(jnp.nan))
    monkeypatch.setattr('flowrl.run.runner.load_dataset', lambda *a, **k: LoadedData({k: np.asarray(v) for k, v in bad.items()}, None, 'bad data', {}))
    from flowrl.run.runner import RunSettings
    settings = RunSettings(agent='agents/fql.py', env_name='cube-single-play', offline_steps=4, log_interval=2,
                           eval_episodes=0, save_dir=str(tmp_path),
                           agent_overrides=dict(actor_hidden_dims='8,8', value_hidden_dims='8,8', batch_size='8'))
    with pytest.raises(TrainingDiverged, match=r'non-finite .*critic/loss.* at update 1;'):
        Run(settings, log=lambda *_: None).train()


SHARDED_SCRIPT = textwrap.dedent('''
    import jax
    from flowrl.agents import fql
    from flowrl.testing import index, max_abs_diff, synthetic_batch, tiny_config
    from flowrl.engine.training import ChunkRunner, init_members, member_shardings
    dataset, config = synthetic_batch(batch_size=256), tiny_config(fql, batch_size=16)
    members, replicated = member_shardings(8)
    singles = {}
    for i in (0, 3, 6):
        alone, r = init_members(fql, [config], [i], dataset)
        singles[i] = index(ChunkRunner(fql, 16)(alone, r, dataset, 6)[0], 0)
    for mode in ('vmap', 'map'):  # 8 members on 4 devices: 2 per device, run as `mode` says
        states, rngs = init_members(fql, [config] * 8, list(range(8)), dataset)
        states, rngs = jax.device_put(states, members), jax.device_put(rngs, members)
        states, _, _ = ChunkRunner(fql, 16, mode)(states, rngs, jax.device_put(dataset, replicated), 6)
        devices = len(jax.tree.leaves(states.params)[0].sharding.device_set)
        worst = max(max_abs_diff(index(states, i).params, single.params) for i, single in singles.items())
        print('RESULT', mode, jax.device_count(), devices, worst)
''')


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_members_sharded_over_four_host_devices_equal_single_runs_in_both_modes():
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu')
    out = subprocess.run([sys.executable, '-c', SHARDED_SCRIPT], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    results = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith('RESULT')]
    assert [mode for mode, *_ in results] == ['vmap', 'map']
    for mode, device_count, used, worst in results:
        assert (int(device_count), int(used)) == (4, 4), mode
        assert float(worst) < 1e-5, mode
