"""SAC as the FQL authors run it (docs/ALGORITHMS.md, "SAC"): the TD target by hand, the temperature's
direction, bounded actions, which parameters each loss moves, and the optimum of a one-step toy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import sac
from flowrl.kit import distributions
from flowrl.run.config_overrides import apply_overrides
from flowrl.errors import UserError
from flowrl.testing import synthetic_batch, tiny_config

BATCH = synthetic_batch()


def _state(seed=0, **overrides):
    return sac.init(jax.random.PRNGKey(seed), BATCH, tiny_config(sac, **overrides))


def _with_alpha(state, alpha):
    params = {**state.params, 'alpha': {'log_alpha': jnp.asarray(math.log(alpha), jnp.float32)}}
    return state.replace(params=params)


def _alpha(state):
    return float(sac.temperature(state.params))


# ---- targets and losses by hand ----

def test_critic_target_by_hand():
    next_q, log_probs = jnp.array([1.0, 2.0]), jnp.array([-1.0, 3.0])
    rewards, masks = jnp.array([0.5, -1.0]), jnp.array([1.0, 0.0])
    plain = sac.critic_target(next_q, log_probs, rewards, masks, 0.5, 2.0, backup_entropy=False)
    np.testing.assert_allclose(plain, [0.5 + 0.5 * 1.0, -1.0], rtol=1e-6)
    # backup_entropy: - discount * mask * alpha * log pi = -0.5 * 1 * 2 * (-1) = +1 on the first; masked on the second
    soft = sac.critic_target(next_q, log_probs, rewards, masks, 0.5, 2.0, backup_entropy=True)
    np.testing.assert_allclose(soft, [0.5 + 0.5 * 1.0 + 1.0, -1.0], rtol=1e-6)


@jax.jit
def _critic_loss(state, batch, rng):
    nets = sac.networks(state.config)
    return sac.critic_loss(nets, state.params, state.target_params, state.hparams, state.config, batch, rng)[0]


@jax.jit
def _expected_critic_loss(state, batch, rng):
    """The loss written out: a' from the current actor, the target critics aggregated by q_agg."""
    nets = sac.networks(state.config)
    next_actions, _ = sac.policy_sample(nets, state.params, state.config, batch['next_observations'], rng)
    next_qs = nets['critic'].apply({'params': state.target_params['critic']}, batch['next_observations'], next_actions)
    next_q = next_qs.min(0) if state.config.q_agg == 'min' else next_qs.mean(0)
    target = batch['rewards'] + state.hparams['discount'] * batch['masks'] * next_q
    qs = nets['critic'].apply({'params': state.params['critic']}, batch['observations'], batch['actions'])
    return jnp.mean((qs - target) ** 2)


@pytest.mark.parametrize('q_agg', ['min', 'mean'])
def test_critic_loss_uses_the_target_critics_and_the_current_actor(q_agg):
    state = _state(q_agg=q_agg)
    # Targets differ from the online critics, so using the wrong ones shows.
    state = state.replace(target_params={'critic': jax.tree.map(lambda x: 1.5 * x + 0.1, state.params['critic'])})
    rng = jax.random.PRNGKey(3)
    np.testing.assert_allclose(_critic_loss(state, BATCH, rng), _expected_critic_loss(state, BATCH, rng), rtol=1e-5)


def test_entropy_enters_the_target_only_with_backup_entropy():
    rng = jax.random.PRNGKey(4)
    for backup, changes in ((False, False), (True, True)):
        state = _state(backup_entropy=backup)
        losses = [float(_critic_loss(_with_alpha(state, alpha), BATCH, rng)) for alpha in (1.0, 5.0)]
        assert (losses[0] != losses[1]) == changes, (backup, losses)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = jnp.array([[0.3, -1.0]]), jnp.array([[-0.5, 0.2]])
    actions, log_prob = distributions.sample_and_log_prob(mean, log_std, jax.random.PRNGKey(0), tanh_squash=True)
    pre_tanh = jnp.arctanh(actions)
    expected = distributions.gaussian_log_prob(pre_tanh, mean, log_std) - jnp.sum(jnp.log(1 - actions ** 2), -1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-4)
    # Far in the tails log(1 - tanh^2) underflows; the stable form stays finite (~ -2|u| + 2 log 2).
    far = distributions.tanh_log_det_jacobian(jnp.array([[30.0]]))
    np.testing.assert_allclose(far, [2 * math.log(2) - 60], rtol=1e-6)


# ---- temperature ----

def test_default_target_entropy_is_minus_half_the_action_dim():
    assert float(_state().hparams['target_entropy']) == -0.5 * BATCH['actions'].shape[-1]
    assert float(_state(target_entropy=-7.0).hparams['target_entropy']) == -7.0


def test_target_entropy_from_the_command_line():
    config = apply_overrides(tiny_config(sac), {'target_entropy': '-3'}, 'agents/sac.py')  # parsed as the int -3
    assert float(sac.init(jax.random.PRNGKey(0), BATCH, config).hparams['target_entropy']) == -3.0
    with pytest.raises(UserError, match='target_entropy must be a number'):
        apply_overrides(tiny_config(sac), {'target_entropy': 'high'}, 'agents/sac.py')


@pytest.mark.parametrize('target, grows', [(10.0, True), (-100.0, False)])
def test_temperature_grows_while_the_entropy_is_below_its_target(target, grows):
    """A 3-d policy with std ~1 has entropy ~ 3 (squashed: less): far below 10 and far above -100."""
    state = _state(target_entropy=target)
    new, metrics = jax.jit(sac.update)(state, BATCH, jax.random.PRNGKey(1))
    assert (float(metrics['actor/entropy']) < target) == grows
    assert (_alpha(new) > _alpha(state)) == grows, (_alpha(state), _alpha(new))


# ---- actions ----

@pytest.mark.parametrize('tanh_squash', [True, False])
def test_actions_lie_in_the_action_box(tanh_squash):
    state = _state(tanh_squash=tanh_squash)
    # Blow up the heads so raw means and stds are far outside [-1, 1].
    actor = jax.tree.map(lambda x: 300.0 * x, state.params['actor'])
    state = state.replace(params={**state.params, 'actor': actor})
    for act in (sac.sample_actions, sac.explore_actions):
        actions = np.asarray(act(state, BATCH['observations'], jax.random.PRNGKey(2)))
        assert actions.shape == BATCH['actions'].shape
        assert np.abs(actions).max() <= 1.0 and np.abs(actions).max() > 0.9


def test_exploration_samples_and_evaluation_takes_the_mode():
    state = _state()
    obs = BATCH['observations']
    modes = [sac.sample_actions(state, obs, jax.random.PRNGKey(i)) for i in (0, 1)]
    samples = [sac.explore_actions(state, obs, jax.random.PRNGKey(i)) for i in (0, 1)]
    np.testing.assert_array_equal(modes[0], modes[1])
    assert float(jnp.abs(samples[0] - samples[1]).max()) > 0.1  # std ~1 at init


# ---- gradient routing ----

def _moved(grads):
    return {name for name, tree in grads.items() if any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(tree))}


def test_each_loss_moves_only_its_parameters():
    state = _state()
    rng = jax.random.PRNGKey(5)

    names = ('critic/loss', 'actor/loss', 'actor/alpha_loss')
    # d(each loss)/d(params), all three in one compiled program
    grads = jax.jit(jax.jacrev(lambda params: {k: sac.total_loss(params, state, BATCH, rng)[1][k] for k in names}))(
        state.params)
    assert {name: _moved(grads[name]) for name in names} == {
        'critic/loss': {'critic'}, 'actor/loss': {'actor'}, 'actor/alpha_loss': {'alpha'}}


def test_update_moves_every_network_and_averages_the_target():
    state = _state()
    new, _ = jax.jit(sac.update)(state, BATCH, jax.random.PRNGKey(6))
    tau = float(state.hparams['tau'])
    expected = jax.tree.map(lambda t, o: (1 - tau) * t + tau * o, state.target_params['critic'], new.params['critic'])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 new.target_params['critic'], expected)
    assert _moved(jax.tree.map(lambda a, b: a - b, new.params, state.params)) == {'critic', 'actor', 'alpha'}


# ---- a one-step toy with a known optimum ----

def test_learns_the_best_action_of_a_contextual_bandit():
    """Two contexts with best actions -0.5 and +0.5, reward -(a - a*)^2, every step terminal: Q = r,
    and the soft-optimal policy exp(Q / alpha) peaks at a*, so the mode tanh(mean) must approach it."""
    rng = np.random.default_rng(0)
    n = 512
    context = rng.integers(0, 2, n)
    obs = np.eye(2, dtype=np.float32)[context]
    best = np.where(context == 0, -0.5, 0.5).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    data = dict(observations=obs, actions=actions, rewards=-(actions[:, 0] - best) ** 2, masks=np.zeros(n, np.float32),
                terminals=np.ones(n, np.float32), next_observations=obs)
    data = {k: jnp.asarray(v) for k, v in data.items()}
    config = tiny_config(sac, batch_size=64, lr=3e-3)
    state = sac.init(jax.random.PRNGKey(0), data, config)

    def step(state, rng):
        idx_rng, update_rng = jax.random.split(rng)
        idx = jax.random.randint(idx_rng, (64,), 0, n)
        return sac.update(state, jax.tree.map(lambda x: x[idx], data), update_rng)[0], None

    state, _ = jax.jit(lambda s: jax.lax.scan(step, s, jax.random.split(jax.random.PRNGKey(1), 1500)))(state)
    modes = sac.sample_actions(state, jnp.eye(2), jax.random.PRNGKey(0))[:, 0]
    np.testing.assert_allclose(modes, [-0.5, 0.5], atol=0.05)
