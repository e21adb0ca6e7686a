"""QIPO (agents/qipo.py): weights and losses by hand, the step-driven phases (critic frozen,
snapshot renewals) under one jit, and the defining property on a bandit: the learned sampler's
mass on the high-Q mode matches the tilt pi_beta exp(l beta Q) after l renewals."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.agents import qipo
from flowrl.errors import UserError
from flowrl.kit.flow import flow_matching_errors
from flowrl.testing import index, max_abs_diff, stack, synthetic_batch, tiny_config
from flowrl.engine.training import ChunkRunner, init_members, with_zero_arrays
from flowrl.kit.dataset_work import ROWS_KEY


class LinearCritic:
    """Stand-in twin critic with Q_k(s, a) = w_k * a[..., 0]."""

    def apply(self, variables, observations, actions):
        return variables['params']['w'][:, None, None] * actions[None, ..., 0] * jnp.ones(actions.shape[:-1])


class ZeroField:
    def apply(self, variables, observations, x, t):
        return jnp.zeros_like(x)


STUB_NETS = dict(critic=LinearCritic(), actor_flow=ZeroField())


def test_support_weights_by_hand():
    q = jnp.array([[0.0, math.log(2.0)], [1.0, 1.0]])
    np.testing.assert_allclose(qipo.support_weights(q, 1.0, False), [[1 / 3, 2 / 3], [0.5, 0.5]], rtol=1e-6)
    # normalize: q is divided by the batch mean of per-state std over the support: (1 + 2) / 2.
    q = jnp.array([[0.0, 2.0], [0.0, 4.0]])
    expected = jax.nn.softmax(q / 1.5, axis=-1)
    np.testing.assert_allclose(qipo.support_weights(q, 1.0, True), expected, rtol=1e-5)


def test_critic_loss_by_hand():
    """Target critics w = (1, 2): Qbar = min = a for a >= 0. Support a' = (0, ln 3): with
    beta_Q = 1, weights (1/4, 3/4), V = 3/4 ln 3; y = r + 0.5 * m * V."""
    config = tiny_config(qipo, critic_support=2, normalize_q=False)
    batch = dict(observations=jnp.zeros((1, 1)), next_observations=jnp.zeros((1, 1)),
                 actions=jnp.array([[0.5]]), rewards=jnp.array([1.0]), masks=jnp.array([1.0]))
    next_actions = jnp.array([[[0.0], [math.log(3.0)]]])
    params = dict(critic=dict(w=jnp.array([1.0, -1.0])))
    target_params = dict(critic=dict(w=jnp.array([1.0, 2.0])))
    hparams = dict(critic_beta=jnp.float32(1.0), discount=jnp.float32(0.5))
    loss, info = qipo.critic_loss(STUB_NETS, params, target_params, hparams, config, batch, next_actions)
    y = 1.0 + 0.5 * 0.75 * math.log(3.0)
    assert float(info['critic/next_v']) == pytest.approx(0.75 * math.log(3.0), rel=1e-6)
    assert float(loss) == pytest.approx(((0.5 - y) ** 2 + (-0.5 - y) ** 2) / 2, rel=1e-6)


def test_policy_loss_by_hand():
    """v = 0 and Q_k = w_k a with w = (1, 2): phase 3 weighs each support action's error by softmax(beta a_j)."""
    config = tiny_config(qipo, policy_support=2, normalize_q=False)
    batch = dict(observations=jnp.zeros((3, 1)), actions=jnp.array([[0.1], [-0.2], [0.3]]))
    snapshot_actions = jnp.array([[[0.5], [-0.5]], [[0.0], [0.2]], [[0.9], [-0.9]]])
    params = dict(critic=dict(w=jnp.array([1.0, 2.0])), actor_flow={})
    rng = jax.random.PRNGKey(3)
    loss, _ = qipo.policy_loss(STUB_NETS, params, dict(beta=jnp.float32(2.0)), config, batch, snapshot_actions, rng)
    support = jnp.concatenate([batch['actions'][:, None], snapshot_actions], axis=1)
    errors = flow_matching_errors(lambda x, t: jnp.zeros_like(x), support, rng)
    min_q = jnp.minimum(support[..., 0], 2.0 * support[..., 0])
    weights = jax.nn.softmax(2.0 * min_q, axis=-1)
    assert float(loss) == pytest.approx(float(jnp.mean(jnp.sum(weights * errors, axis=-1))), rel=1e-6)
    bc, _ = qipo.bc_loss(STUB_NETS, params, batch, rng)  # phases 1-2: the dataset action alone
    assert float(bc) == pytest.approx(float(jnp.mean(flow_matching_errors(
        lambda x, t: jnp.zeros_like(x), batch['actions'], rng))), rel=1e-6)


def test_default_weights_are_the_papers_softmax_of_beta_q():
    """With the default config the phase-3 weights are softmax_j(beta Q(s, a_j)) on the critic's raw Q
    (no per-state normalisation), so beta is the paper's beta and pi_l ∝ pi_beta exp(l beta Q)."""
    config = tiny_config(qipo, policy_support=2)
    assert config.normalize_q is False and config.beta == 3.0
    batch = dict(observations=jnp.zeros((2, 1)), actions=jnp.array([[0.1], [-0.2]]))
    snapshot_actions = jnp.array([[[0.5], [-0.5]], [[0.9], [0.2]]])  # Q spreads 1.0 and 1.1: not unit
    params = dict(critic=dict(w=jnp.array([1.0, 2.0])), actor_flow={})
    _, info = qipo.policy_loss(STUB_NETS, params, dict(beta=jnp.float32(config.beta)), config, batch,
                               snapshot_actions, jax.random.PRNGKey(0))
    support = jnp.concatenate([batch['actions'][:, None], snapshot_actions], axis=1)[..., 0]
    weights = jax.nn.softmax(config.beta * jnp.minimum(support, 2.0 * support), axis=-1)
    assert float(info['actor/data_weight']) == pytest.approx(float(jnp.mean(weights[:, 0])), rel=1e-6)
    assert float(info['actor/max_weight']) == pytest.approx(float(jnp.mean(jnp.max(weights, axis=-1))), rel=1e-6)
    q = jnp.array([[0.0, 2.0, 5.0], [1.0, 1.5, -3.0]])
    np.testing.assert_array_equal(qipo.support_weights(q, config.beta, config.normalize_q),
                                  jax.nn.softmax(config.beta * q, axis=-1))


def test_support_steps_by_hand():
    """Stored supports are drawn at phase 2's start and at every renewal (phase 3's start and
    every renew_period after), counted from any first step."""
    config = tiny_config(qipo, bc_steps=2, critic_steps=3, renew_period=2)
    assert qipo.support_steps(config, 0, 12) == [2, 5, 7, 9, 11]
    assert qipo.support_steps(config, 6, 12) == [7, 9, 11]
    assert qipo.support_steps(config, 5, 6) == [5] and qipo.support_steps(config, 3, 5) == []
    no_critic_phase = tiny_config(qipo, bc_steps=2, critic_steps=0, renew_period=2)
    assert qipo.support_steps(no_critic_phase, 0, 7) == [2, 4, 6]  # phase 3's draws only
    assert qipo.dataset_work(tiny_config(qipo, support='batch')) is None
    with pytest.raises(UserError, match='--agent.support must be one of batch, dataset'):
        qipo.dataset_work(tiny_config(qipo, support='rows'))


def _stored_state(config, dataset, step):
    """A state at `step` with zero stored supports for `dataset`'s rows."""
    state = qipo.init(jax.random.PRNGKey(0), dataset, config)
    arrays = qipo.support_arrays(state.config, dataset['actions'].shape[0])
    return index(with_zero_arrays(stack([state]), arrays), 0).replace(step=jnp.int32(step))


def test_stored_and_per_batch_supports_define_the_same_weights():
    """A renewal stores, for every row (three blocks of 16 rows, the last overlapping), the
    snapshot's actions and min_k Q_k of {dataset action} + them; the phase-3 update that gathers
    them computes the same Q, weights and loss as the per-batch update given the same support
    actions, and phase 2 gathers its next-state supports the same way."""
    config = tiny_config(qipo, bc_steps=1, critic_steps=1, policy_support=3, critic_support=2, flow_steps=2,
                         support_block_rows=16)
    dataset = synthetic_batch(batch_size=40)
    state = _stored_state(config, dataset, qipo.policy_start(config))
    state = state.replace(params={**state.params, 'actor_flow': jax.tree.map(lambda x: x + 0.01,
                                                                                  state.params['actor_flow'])})
    renewed = jax.jit(qipo.draw_policy_supports)(state, dataset, jax.random.PRNGKey(4))
    assert max_abs_diff(renewed.extras['snapshot'], state.params['actor_flow']) == 0  # the snapshot was renewed
    actions = renewed.extras[qipo.SUPPORT_ACTIONS]
    assert bool(jnp.all(jnp.any(actions != 0, axis=(1, 2))))  # every row drawn, the overlapped last block too
    assert bool(jnp.all(jnp.abs(actions) <= 1.0))
    nets = qipo.networks(renewed.config)
    rows = jnp.array([0, 17, 39, 39, 5])
    batch = {k: v[rows] for k, v in dataset.items()}
    support = jnp.concatenate([batch['actions'][:, None], actions[rows]], axis=1)
    expected_q = jnp.min(jnp.stack([nets['critic'].apply({'params': renewed.params['critic']},
                                                         batch['observations'], support[:, j])
                                    for j in range(4)], axis=-1), axis=0)
    np.testing.assert_allclose(renewed.extras[qipo.SUPPORT_Q][rows], expected_q, rtol=1e-5, atol=1e-6)
    rng = jax.random.PRNGKey(5)
    with_rows = dict(batch, **{ROWS_KEY: rows})
    stored_loss, stored_info = qipo.policy_phase_loss(renewed.params, renewed, with_rows, rng)
    _, flow_rng = jax.random.split(rng)
    batch_loss, batch_info = qipo.policy_loss(nets, renewed.params, renewed.hparams, renewed.config, batch,
                                              actions[rows], flow_rng)  # Q computed from the critic
    assert float(stored_loss) == pytest.approx(float(batch_loss), rel=1e-5)
    for key in ('actor/data_weight', 'actor/max_weight', 'actor/support_q', 'actor/bc_loss'):
        assert float(stored_info[key]) == pytest.approx(float(batch_info[key]), rel=1e-5), key
    # Without rows (online, validation, a user's batch) the update draws its own support: other weights.
    assert float(qipo.policy_phase_loss(renewed.params, renewed, batch, rng)[0]) != pytest.approx(float(stored_loss))

    drawn = jax.jit(qipo.draw_next_state_supports)(_stored_state(config, dataset, 1), dataset, jax.random.PRNGKey(6))
    next_actions = drawn.extras[qipo.SUPPORT_ACTIONS]
    assert bool(jnp.all(jnp.any(next_actions[:, :2] != 0, axis=(1, 2)))) and bool(jnp.all(next_actions[:, 2:] == 0))
    _, info = qipo.critic_phase_loss(drawn.params, drawn, with_rows, rng)
    _, expected = qipo.critic_loss(nets, drawn.params, drawn.target_params, drawn.hparams, drawn.config, batch,
                                   next_actions[rows, :2])
    assert float(info['critic/next_v']) == pytest.approx(float(expected['critic/next_v']), rel=1e-5)
    assert float(info['critic/loss']) == pytest.approx(float(expected['critic/loss']), rel=1e-5)


def _nonzero(grads):
    return {name: any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in jax.tree.leaves(tree))
            for name, tree in grads.items()}


def test_which_params_each_loss_moves():
    batch = synthetic_batch()
    state = qipo.init(jax.random.PRNGKey(0), batch, tiny_config(qipo))
    nets, config, rng = qipo.networks(state.config), state.config, jax.random.PRNGKey(1)
    support = qipo.draw_support_actions(nets, state.params['actor_flow'], batch['next_observations'], 4, config, rng)
    critic_grads = jax.grad(lambda p: qipo.critic_loss(
        nets, p, state.target_params, state.hparams, config, batch, support)[0])(state.params)
    policy_grads = jax.grad(lambda p: qipo.policy_loss(
        nets, p, state.hparams, config, batch, support, rng)[0])(state.params)
    bc_grads = jax.grad(lambda p: qipo.bc_loss(nets, p, batch, rng)[0])(state.params)
    assert _nonzero(critic_grads) == dict(critic=True, actor_flow=False)
    assert _nonzero(policy_grads) == dict(critic=False, actor_flow=True)
    assert _nonzero(bc_grads) == dict(critic=False, actor_flow=True)


def test_phases_freeze_the_critic_and_renew_the_snapshot_under_one_jit():
    """bc_steps=2, critic_steps=3, renew_period=2: the critic (and its target) move only in
    updates 2..4; the snapshot is the flow as it was before updates 5, 7, 9."""
    config = tiny_config(qipo, bc_steps=2, critic_steps=3, renew_period=2)
    batch = synthetic_batch()
    state = qipo.init(jax.random.PRNGKey(0), batch, config)
    traces = []

    def counted(state, batch, rng):
        traces.append(1)
        return qipo.update(state, batch, rng)

    update = jax.jit(counted)
    for step in range(10):
        new_state, metrics = update(state, synthetic_batch(rng_seed=step), jax.random.PRNGKey(step))
        critic_moved = max_abs_diff(new_state.params['critic'], state.params['critic']) > 0
        target_moved = max_abs_diff(new_state.target_params['critic'], state.target_params['critic']) > 0
        assert critic_moved == target_moved == (2 <= step < 5), step
        assert max_abs_diff(new_state.params['actor_flow'], state.params['actor_flow']) > 0
        renewed = step >= 5 and (step - 5) % 2 == 0
        snapshot = new_state.extras['snapshot']
        assert max_abs_diff(snapshot, state.params['actor_flow'] if renewed else state.extras['snapshot']) == 0
        assert (max_abs_diff(snapshot, state.extras['snapshot']) > 0) == renewed, step
        assert float(metrics['actor/phase']) == (1 if step < 2 else 2 if step < 5 else 3)
        state = new_state
    assert len(traces) == 1 and int(state.step) == 10


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_vmap_over_beta_in_phase_three_matches_single_runs():
    batch = synthetic_batch()
    states = [qipo.init(jax.random.PRNGKey(0), batch, tiny_config(qipo, beta=beta, bc_steps=0, critic_steps=0))
              for beta in (0.0, 3.0)]
    rng = jax.random.PRNGKey(2)
    stacked, _ = jax.jit(jax.vmap(qipo.update, in_axes=(0, None, None)))(stack(states), batch, rng)
    singles = [jax.jit(qipo.update)(state, batch, rng)[0] for state in states]
    for i, single in enumerate(singles):
        assert max_abs_diff(index(stacked, i).params, single.params) < 1e-5
    assert max_abs_diff(singles[0].params['actor_flow'], singles[1].params['actor_flow']) > 0


# ---- Bandit: one constant state, behaviour 20 % at a = +0.5 and 80 % at a = -0.5, reward
# r(a) = 0.3 a on terminal transitions, so the phase-2 critic learns Q(s, a) = 0.3 a.

HIGH_FRACTION, SLOPE, BETA, SUPPORT, RENEWALS = 0.2, 0.3, 3.0, 8, 2


def _bandit(n=4096, seed=0):
    rng = np.random.default_rng(seed)
    actions = np.where(rng.uniform(size=n) < HIGH_FRACTION, 0.5, -0.5) + 0.1 * rng.normal(size=n)
    actions = np.clip(actions, -1 + 1e-5, 1 - 1e-5).astype(np.float32)[:, None]
    zeros = jnp.zeros((n, 1), jnp.float32)
    return dict(observations=zeros, next_observations=zeros, actions=jnp.asarray(actions),
                rewards=jnp.asarray(SLOPE * actions[:, 0]), masks=jnp.zeros(n, jnp.float32),
                terminals=jnp.ones(n, jnp.float32))


def next_high_mass(p_behaviour, p_snapshot, q_high, q_low, beta, support):
    """Exact target mass on the high mode of one snapshot period, for two point modes:
    E[sum_j w_j 1(a_j high)], w = softmax(beta Q), over support sets of one behaviour action and
    `support` snapshot actions."""
    high, low = math.exp(beta * q_high), math.exp(beta * q_low)
    mass = 0.0
    for data_high, p_data in ((1, p_behaviour), (0, 1 - p_behaviour)):
        for n in range(support + 1):
            count = n + data_high
            p_n = math.comb(support, n) * p_snapshot ** n * (1 - p_snapshot) ** (support - n)
            mass += p_data * p_n * count * high / (count * high + (support + 1 - count) * low)
    return mass


def tilted_high_mass(p_behaviour, q_high, q_low, beta, support, renewals):
    """High-mode mass after `renewals` periods starting from the behaviour; for a large support
    this is the energy tilt pi_beta exp(l beta Q)."""
    p = p_behaviour
    for _ in range(renewals):
        p = next_high_mass(p_behaviour, p, q_high, q_low, beta, support)
    return p


def test_tilted_high_mass_tends_to_the_energy_tilt():
    ideal = 0.2 * math.exp(2 * 0.9) / (0.2 * math.exp(2 * 0.9) + 0.8)
    assert tilted_high_mass(0.2, 0.15, -0.15, 3.0, 800, 2) == pytest.approx(ideal, abs=2e-3)
    assert tilted_high_mass(0.2, 0.15, -0.15, 0.0, 8, 2) == pytest.approx(0.2)


def _train_chunks(config, data, seeds, chunks, chunk):
    """The training loop's compiled chunks (each phase's own update; with support='dataset' the
    supports drawn at phase 2's start and at renewals) of `chunk` updates; yields after each."""
    configs = [c for c, _ in seeds]
    states, rngs = init_members(qipo, configs, [seed for _, seed in seeds], jax.tree.map(lambda x: x[:4], data),
                                rows=data['actions'].shape[0], log=lambda *_: None)
    runner = ChunkRunner(qipo, config.batch_size, 'auto', config)
    for i in range(chunks):
        states, rngs, _ = runner(states, rngs, data, chunk, i * chunk)
        yield i + 1, states


# Two renewals compound each period's shortfall (the flow trains 600 updates towards its target):
# per-batch supports ended at 0.454-0.471 for seeds 0-3 against the predicted 0.539. Stored
# supports are one draw per period, reused by every batch of it, and spread more over seeds with
# the same mean: 0.394-0.500 for seeds 0-5 (mean 0.455; 2026-12-06). The per-period checks above
# hold for both at 0.08.
FINAL_TOLERANCE = dict(batch=0.1, dataset=0.12)


# The per-batch draw is the slow one (40,960 velocity passes per update): run with -m slow.
@pytest.mark.parametrize('support', [pytest.param(s, marks=pytest.mark.slow) if s == 'batch' else s
                                     for s in qipo.SUPPORTS])
def test_bandit_mass_on_high_q_mode_matches_the_energy_tilt(support):
    data = _bandit()
    chunk, betas = 200, (0.0, BETA)
    config = tiny_config(qipo, hidden=(64, 64), batch_size=128, lr=3e-3, normalize_q=False, support=support,
                         critic_support=SUPPORT, policy_support=SUPPORT,
                         bc_steps=2 * chunk, critic_steps=chunk, renew_period=3 * chunk)
    members = []
    for beta in betas:  # same seed: identical until phase 3, where beta starts to act
        members.append((config.copy_and_resolve_references(), 0))
        members[-1][0].beta = beta
    warm_up_chunks = (config.bc_steps + config.critic_steps) // chunk
    period_chunks = config.renew_period // chunk

    obs, noise_rng = jnp.zeros((4000, 1)), jax.random.PRNGKey(7)
    masses = {beta: [] for beta in betas}  # high-mode mass of each member at every renewal
    for done, trained in _train_chunks(config, data, members, warm_up_chunks + RENEWALS * period_chunks, chunk):
        if done >= warm_up_chunks and (done - warm_up_chunks) % period_chunks == 0:
            for member, beta in enumerate(betas):
                samples = qipo.sample_actions(index(trained, member), obs, noise_rng)
                masses[beta].append(float(jnp.mean(samples > 0)))

    nets = qipo.networks(trained.config)
    q_high, q_low = (float(q) for q in jnp.min(nets['critic'].apply(
        {'params': index(trained, 1).params['critic']}, jnp.zeros((2, 1)), jnp.array([[0.5], [-0.5]])), axis=0))
    assert q_high == pytest.approx(SLOPE * 0.5, abs=0.03) and q_low == pytest.approx(-SLOPE * 0.5, abs=0.03)

    behaviour = float(jnp.mean(data['actions'] > 0))
    assert masses[BETA][0] == pytest.approx(behaviour, abs=0.05)  # the warm-up flow clones the behaviour
    for beta in betas:
        for renewal in range(RENEWALS):  # each period tilts its snapshot once more by exp(beta Q)
            predicted = next_high_mass(behaviour, masses[beta][renewal], q_high, q_low, beta, SUPPORT)
            assert masses[beta][renewal + 1] == pytest.approx(predicted, abs=0.08), (beta, renewal, masses)
        # ... and overall, l renewals give pi_beta exp(l beta Q) (finite-M exact form).
        predicted = tilted_high_mass(behaviour, q_high, q_low, beta, SUPPORT, RENEWALS)
        assert masses[beta][-1] == pytest.approx(predicted, abs=FINAL_TOLERANCE[support]), (beta, masses, predicted)
