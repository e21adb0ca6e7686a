"""The rules of benchmarks/parity.py (parity with the authors' code) on synthetic curves and
configs: config matching key by key, metric names and units, the agreement test, the printed
table. The authors' code never runs here (benchmarks/ runs it beside flowrl)."""

import importlib.util
import math
import os

import jax
import numpy as np
import pytest

from flowrl.testing import import_agent, synthetic_batch, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def parity():
    spec = importlib.util.spec_from_file_location('parity', os.path.join(ROOT, 'benchmarks', 'parity.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- configs ----

def test_configs_match_on_every_shared_key_and_name_each_difference(parity):
    official = dict(agent_name='iql', encoder=None, action_dim=None, lr=3e-4, actor_hidden_dims=[64, 64],
                    expectile=0.9, alpha=10.0, only_theirs=1)
    flowrl = dict(agent_name='iql', encoder='impala_small', lr=3e-4, actor_hidden_dims=(64, 64), expectile=0.7,
                  alpha=10.0, only_ours=2)
    shared, differing, only_official = parity.compare_configs(official, flowrl)
    assert shared == dict(lr=3e-4, actor_hidden_dims=(64, 64), expectile=0.7, alpha=10.0)  # a list equals a tuple
    assert differing == dict(expectile=(0.9, 0.7))  # bookkeeping keys (agent_name, encoder, ...) are not compared
    assert only_official == ['only_theirs']


def test_sacs_automatic_target_entropy_is_resolved_as_the_official_create_does(parity):
    """The official SACAgent.create writes -0.5 * action_dim into its config; flowrl's flags.json
    keeps None: the comparison resolves ours (a first run stopped on this difference)."""
    flowrl = dict(target_entropy=None, target_entropy_multiplier=0.5, lr=3e-4)
    assert parity.resolved_flowrl_config('sac', flowrl, action_dim=5)['target_entropy'] == -2.5
    assert parity.resolved_flowrl_config('sac', dict(flowrl, target_entropy=-1.0), 5)['target_entropy'] == -1.0
    assert parity.resolved_flowrl_config('iql', dict(target_entropy=None), 5) == dict(target_entropy=None)


# ---- metric names and units ----

def test_flowrl_values_are_converted_to_the_official_units(parity):
    sums_over_dims = parity.Metric('actor/mse_to_data', 'actor/mse', 'mse', official_per_flowrl='action_dim')
    full_only = parity.Metric('actor/q_loss', 'actor/actor_loss', 'q loss', full_updates_only=True)
    plain = parity.Metric('critic/loss', 'critic/critic_loss', 'critic loss')
    row = {'actor/mse_to_data': '0.5', 'actor/q_loss': '-0.4', 'actor/updated': '0.5', 'critic/loss': '2',
           'exploration/success': ''}
    assert parity.flowrl_value(row, sums_over_dims, action_dim=5) == pytest.approx(2.5)
    assert parity.flowrl_value(row, full_only, action_dim=5) == pytest.approx(-0.8)
    assert parity.flowrl_value(row, plain, action_dim=5) == 2.0
    assert math.isnan(parity.flowrl_value(row, parity.EXPLORATION[0], action_dim=5))  # no episode ended


def test_rebracs_mse_times_the_action_dimension_is_the_official_sum_over_dimensions(parity):
    """The unit factor is right: flowrl's actor/mse_to_data averages over action dimensions, the
    authors' actor/mse sums over them, and the full-update actor metrics are the loss's own."""
    rebrac = import_agent('rebrac')
    batch = synthetic_batch(action_dim=3)
    state = rebrac.init(jax.random.PRNGKey(0), batch, tiny_config(rebrac))
    nets = rebrac.networks(state.config)
    _, info = rebrac.actor_loss(nets, state.params, state.hparams, batch)
    actions = np.asarray(rebrac.policy_actions(nets, state.params, batch['observations']))
    summed = np.mean(np.sum((actions - np.asarray(batch['actions'])) ** 2, axis=-1))
    (metric,) = [m for m in parity.AGENTS['rebrac'] if m.official == 'actor/mse']
    row = {'actor/mse_to_data': str(float(info['actor/mse_to_data'])), 'actor/updated': '1'}
    assert parity.flowrl_value(row, metric, action_dim=3) == pytest.approx(summed, rel=1e-5)


@pytest.mark.parametrize('agent', ['fql', 'iql', 'ifql', 'rebrac', 'sac', 'acfql'])
def test_every_compared_flowrl_metric_is_one_the_agent_logs(parity, agent):
    """A renamed metric would silently leave the comparison: each flowrl name in the table is a
    key of the agent's update metrics (shapes only: traced, not run)."""
    module = import_agent(agent)
    batch = synthetic_batch()
    state = module.init(jax.random.PRNGKey(0), batch, tiny_config(module))
    _, info = jax.eval_shape(module.update, state, batch, jax.random.PRNGKey(1))
    needed = {m.flowrl for m in parity.AGENTS[agent]}
    if any(m.full_updates_only for m in parity.AGENTS[agent]):
        needed.add('actor/updated')
    assert needed <= set(info), needed - set(info)


def _sequence_batch(horizon, rows=40, action_dim=3):
    """A sequence batch of the sampler (flowrl.engine.sampling) from a synthetic dataset."""
    from flowrl.engine.sampling import Sampler
    data = {k: np.array(v) for k, v in synthetic_batch(batch_size=rows, action_dim=action_dim).items()}
    data['terminals'][9::10] = 1.0
    return Sampler(16, horizon).from_dataset(data, jax.random.PRNGKey(3))


@pytest.mark.parametrize('actor_type', ['distill-ddpg', 'best-of-n'])
def test_qc_metrics_are_logged_by_flowrls_acfql_on_chunks(parity, actor_type):
    """At H = 5 on sequence batches, flowrl's acfql logs every compared metric; with best-of-n all
    but the distillation loss (QC logs a constant 0 there: reported as not logged by both)."""
    module = import_agent('acfql')
    batch = _sequence_batch(horizon=5)
    config = tiny_config(module, horizon_length=5, actor_type=actor_type, actor_num_samples=4)
    state = module.init(jax.random.PRNGKey(0), batch, config)
    _, info = jax.eval_shape(module.update, state, batch, jax.random.PRNGKey(1))
    missing = {m.flowrl for m in parity.AGENTS['acfql']} - set(info)
    assert missing == (set() if actor_type == 'distill-ddpg' else {'actor/distill_loss'})
    if actor_type == 'distill-ddpg':  # the metric only flowrl logs is one of its one-step policy
        assert set(parity.NOT_COMPARABLE['acfql']) <= set(info)


def test_qc_metric_names_map_to_flowrls(parity):
    """The QC code's names (critic/critic_loss, actor/actor_loss ...) against flowrl's, one to one."""
    pairs = {(m.flowrl, m.official) for m in parity.AGENTS['acfql']}
    assert pairs == {('critic/loss', 'critic/critic_loss'), ('critic/q_mean', 'critic/q_mean'),
                     ('critic/q_max', 'critic/q_max'), ('critic/q_min', 'critic/q_min'),
                     ('actor/loss', 'actor/actor_loss'), ('actor/bc_flow_loss', 'actor/bc_flow_loss'),
                     ('actor/distill_loss', 'actor/distill_loss')}
    assert all(m.official_per_flowrl == 1.0 and not m.full_updates_only for m in parity.AGENTS['acfql'])


def test_qc_configs_match_on_the_chunking_keys(parity):
    """The horizon and QC's switches are keys both configs have, so a run with another H, actor
    type or sample count on one side stops; QC's `ob_dims` is only theirs."""
    official = dict(agent_name='acfql', encoder=None, action_dim=5, ob_dims=[28], horizon_length=5,
                    action_chunking=True, actor_type='best-of-n', actor_num_samples=32, alpha=100.0)
    flowrl = dict(agent_name='acfql', encoder=None, action_dim=25, horizon_length=1, action_chunking=True,
                  actor_type='distill-ddpg', actor_num_samples=32, alpha=100.0)
    shared, differing, only_official = parity.compare_configs(official, flowrl)
    assert differing == dict(horizon_length=(5, 1), actor_type=('best-of-n', 'distill-ddpg'))
    assert set(shared) == {'horizon_length', 'action_chunking', 'actor_type', 'actor_num_samples', 'alpha'}
    assert only_official == ['ob_dims']  # action_dim: A in theirs, H * A in flowrl's: bookkeeping


def test_official_keys_flowrl_lacks_must_hold_flowrls_behaviour(parity):
    """QC's Fourier time features and weight decay are features flowrl's acfql lacks: a config that
    turns them on is refused, while the keys at their defaults (and keys not listed) pass."""
    qc = dict(use_fourier_features=False, fourier_feature_dim=64, weight_decay=0.0, normalize_q_loss=True)
    assert parity.official_only_conflicts('acfql', qc) == {}
    assert parity.official_only_conflicts('acfql', dict(qc, use_fourier_features=True, weight_decay=1e-4)) == dict(
        use_fourier_features=(True, False), weight_decay=(1e-4, 0.0))
    assert parity.official_only_conflicts('fql', dict(qc, weight_decay=1e-4)) == {}  # not a key of FQL's code


def test_the_horizon_is_qcs_default_for_chunking_agents_and_one_for_the_others(parity):
    assert parity.horizon_of('acfql', None) == 5  # QC's main.py: --horizon_length 5
    assert parity.horizon_of('acfql', 1) == 1 and parity.horizon_of('acfql', 3) == 3
    assert parity.horizon_of('fql', None) == 1 and parity.horizon_of('fql', 1) == 1
    with pytest.raises(ValueError, match='^--horizon_length must be 1 for fql'):
        parity.horizon_of('fql', 5)
    with pytest.raises(ValueError, match='positive integer, got 0'):
        parity.horizon_of('acfql', 0)


def test_qc_variant_flags_set_acfql_keys_and_are_refused_for_other_agents(parity):
    given = dict(actor_type='best-of-n', actor_num_samples=32)
    assert parity.variant_overrides('acfql', given) == given
    assert parity.variant_overrides('acfql', dict(actor_type=None, actor_num_samples=None)) == {}
    assert parity.variant_overrides('fql', dict(actor_type=None, actor_num_samples=None)) == {}
    with pytest.raises(ValueError, match='^--actor_type is a key of acfql, not of fql'):
        parity.variant_overrides('fql', dict(actor_type='best-of-n', actor_num_samples=None))


def test_a_qc_sequence_batch_is_compared_with_flowrls_field_by_field(parity):
    """QC's `sample_sequence` fields, computed by hand for three starts of a 6-row dataset with an
    episode end at row 2 (running discounted reward sums, running masks and terminals, `valid`,
    next observations per step), equal flowrl's sampler's batch at those starts; a changed field,
    or another discount, is named."""
    from flowrl.engine.sampling import dataset_source, sequences
    rows = np.arange(6, dtype=np.float32)
    data = dict(observations=rows[:, None], next_observations=rows[:, None] + 0.5, actions=rows[:, None] + 10,
                rewards=np.array([-1, -1, 0, -1, -1, -1], np.float32), masks=np.array([1, 1, 0, 1, 1, 1], np.float32),
                terminals=np.array([0, 0, 1, 0, 0, 1], np.float32))
    qc = dict(observations=np.array([[0.], [1.], [3.]]),
              actions=np.array([[10., 11., 12.], [11., 12., 13.], [13., 14., 15.]])[..., None],
              rewards=np.array([[-1, -1.5, -1.5], [-1, -1, -1.25], [-1, -1.5, -1.75]]),  # discount 0.5
              masks=np.array([[1., 1., 0.], [1., 0., 0.], [1., 1., 1.]]),
              terminals=np.array([[0., 0., 1.], [0., 1., 1.], [0., 0., 1.]]),
              valid=np.array([[1., 1., 1.], [1., 1., 0.], [1., 1., 1.]]),
              next_observations=np.array([[0.5, 1.5, 2.5], [1.5, 2.5, 3.5], [3.5, 4.5, 5.5]])[..., None])
    ours = sequences(dataset_source(data), jax.numpy.array([0, 1, 3]), 3)
    assert parity.sequence_differences(qc, ours, discount=0.5) == []
    assert parity.sequence_differences(dict(qc, valid=np.ones((3, 3))), ours, discount=0.5) == ['valid']
    assert parity.sequence_differences(qc, ours, discount=0.9) == ['rewards']


def test_every_agent_names_its_official_repository_and_driver(parity):
    assert set(parity.REPOSITORIES) == set(parity.AGENTS)
    assert set(parity.REPOSITORIES.values()) == set(parity.DRIVERS)
    assert set(parity.CHUNKING_AGENTS) <= set(parity.AGENTS) and set(parity.VARIANT_KEYS) <= set(parity.AGENTS)


# ---- the agreement test ----

def test_a_point_agrees_within_three_standard_errors_of_the_difference(parity):
    official, flowrl = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]  # std 1 each: SE of the difference sqrt(2/3)
    point = parity.agreement_point(official, flowrl)
    assert point['diff'] == pytest.approx(1.0) and point['se'] == pytest.approx(math.sqrt(2 / 3))
    assert point['agree'] is True
    assert parity.agreement_point(official, [6.0, 7.0, 8.0])['agree'] is False  # 5 > 3 * 0.816
    assert parity.agreement_point([1.0, 1.0], [1.0, 1.0])['agree'] is True  # equal constants agree
    assert parity.agreement_point([1.0, 1.0], [1.5, 1.5])['agree'] is False  # distinct constants do not
    # Fewer than two seeds logged that window (an online window where no episode ended): not compared.
    assert parity.agreement_point([1.0, math.nan, math.nan], [1.0, 2.0, 3.0])['agree'] is None


def _curves(means_by_step, noise=0.1):
    """Four seeds {step: {'m': value}}: mean `means_by_step[step]`, seed offsets -1.5 .. 1.5 times `noise`
    (seed spread ~1.3 noise, fixed so that only the shifts decide the agreement)."""
    return [{step: {'m': mean + noise * offset} for step, mean in means_by_step.items()}
            for offset in (-1.5, -0.5, 0.5, 1.5)]


def test_a_metric_agrees_when_80_percent_of_its_log_steps_do(parity):
    metric = (parity.Metric('m', 'm', 'synthetic'),)
    steps = list(range(1, 11))
    same = {s: 1.0 / s for s in steps}
    official = _curves(same)
    assert parity.compare(official, _curves(same), steps, metric)['synthetic']['agree'] is True
    # flowrl's curve shifted by ~8 seed stds at 2 of 10 steps: 80 % still agree; at 3 of 10: it differs.
    for shifted, expected in ((2, True), (3, False)):
        moved = {s: v + (1.0 if s <= shifted else 0.0) for s, v in same.items()}
        entry = parity.compare(official, _curves(moved), steps, metric)['synthetic']
        assert entry['agree_fraction'] == pytest.approx(1 - shifted / 10)
        assert entry['agree'] is expected
        assert parity.verdict_of({'synthetic': entry}) == (expected, [] if expected else ['synthetic'])


def test_a_metric_neither_program_logged_is_reported_not_compared(parity):
    metric = (parity.Metric('exploration/success', 'exploration/success', 'exploration success'),)
    official = [{250: {}}, {250: {}}]
    flowrl = [{250: {'exploration/success': ''}}, {250: {'exploration/success': ''}}]
    entry = parity.compare(official, flowrl, [250], metric)['exploration success']
    assert entry['agree'] is None and entry['compared'] == 0
    assert parity.verdict_of({'exploration success': entry}) == (True, [])
    assert '| exploration success | | not logged | | |' in parity.final_table({'exploration success': entry})


def test_the_printed_table_shows_each_metrics_own_numbers(parity):
    """The table docs/RESULTS.md shows is printed from each metric's own curve at the last log
    step (it was once typed by hand, and a row copied the one above)."""
    metrics = parity.AGENTS['fql']
    steps = [250, 500]
    # Seed s of metric i: official i + s/10 at every step, flowrl twice that at the last step.
    official = [{step: {m.official: i + s / 10 for i, m in enumerate(metrics)} for step in steps} for s in range(3)]
    flowrl = [{step: {m.flowrl: str((i + s / 10) * (2 if step == 500 else 1)) for i, m in enumerate(metrics)}
               for step in steps} for s in range(3)]
    rows = parity.final_table(parity.compare(official, flowrl, steps, metrics)).splitlines()
    assert rows[:2] == ['| metric | step | official | flowrl | agrees at |', '|---|---:|---:|---:|---:|']
    assert rows[2:] == [f'| {m.label} | 500 | {i + 0.1:.4g} ± 0.1 | {2 * i + 0.2:.4g} ± 0.2 | '
                        f'{2 if i == 0 else 1}/2 |' for i, m in enumerate(metrics)]
    labels = [m.label for m in metrics]
    assert 'mean Q on data actions' in labels and 'mean Q on policy actions' in labels
