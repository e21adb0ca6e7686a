"""FQL: losses on small cases, gradient routing, and its defining behaviour on a bandit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.agents import fql
from flowrl.testing import synthetic_batch, tiny_config


@pytest.fixture(scope='module')
def setup():
    config = tiny_config(fql)
    batch = synthetic_batch()
    state = fql.init(jax.random.PRNGKey(0), batch, config)
    return state, fql.networks(state.config), batch


def _critic(nets, params, obs, actions):
    return nets['critic'].apply({'params': params['critic']}, obs, actions)


def test_critic_loss_matches_the_td_formula(setup):
    state, nets, batch = setup
    rng = jax.random.PRNGKey(3)
    loss, _ = fql.critic_loss(nets, state.params, state.target_params, state.hparams, state.config, batch, rng)
    noises = jax.random.normal(rng, batch['actions'].shape)
    next_actions = np.clip(np.asarray(fql.one_step_actions(nets, state.params, batch['next_observations'], noises)), -1, 1)
    next_q = np.asarray(_critic(nets, state.target_params, batch['next_observations'], next_actions)).mean(0)
    target = np.asarray(batch['rewards']) + 0.99 * np.asarray(batch['masks']) * next_q
    q = np.asarray(_critic(nets, state.params, batch['observations'], batch['actions']))
    np.testing.assert_allclose(loss, np.mean((q - target[None]) ** 2), rtol=1e-5)


def test_terminal_transitions_regress_to_the_reward(setup):
    state, nets, batch = setup
    batch = {**batch, 'masks': jnp.zeros_like(batch['masks']), 'rewards': jnp.full_like(batch['rewards'], -2.0)}
    loss, _ = fql.critic_loss(nets, state.params, state.target_params, state.hparams, state.config, batch,
                              jax.random.PRNGKey(0))
    q = np.asarray(_critic(nets, state.params, batch['observations'], batch['actions']))
    np.testing.assert_allclose(loss, np.mean((q + 2.0) ** 2), rtol=1e-5)


def test_q_agg_min_uses_the_smaller_target_critic(setup):
    state, nets, batch = setup
    config = state.config.as_configdict()
    config.q_agg = 'min'
    rng = jax.random.PRNGKey(3)
    loss_min, _ = fql.critic_loss(nets, state.params, state.target_params, state.hparams, config, batch, rng)
    loss_mean, _ = fql.critic_loss(nets, state.params, state.target_params, state.hparams, state.config, batch, rng)
    noises = jax.random.normal(rng, batch['actions'].shape)
    next_actions = jnp.clip(fql.one_step_actions(nets, state.params, batch['next_observations'], noises), -1, 1)
    next_q = np.asarray(_critic(nets, state.target_params, batch['next_observations'], next_actions)).min(0)
    target = np.asarray(batch['rewards']) + 0.99 * np.asarray(batch['masks']) * next_q
    q = np.asarray(_critic(nets, state.params, batch['observations'], batch['actions']))
    np.testing.assert_allclose(loss_min, np.mean((q - target[None]) ** 2), rtol=1e-5)
    assert float(loss_min) != float(loss_mean)


def test_distillation_target_is_the_clipped_euler_flow(setup):
    state, nets, batch = setup
    noises = jax.random.normal(jax.random.PRNGKey(4), batch['actions'].shape)
    obs = batch['observations']
    loss, onestep = fql.distillation_loss(nets, state.params, state.config, obs, noises)
    x = np.asarray(noises)
    for k in range(state.config.flow_steps):  # the Euler loop written out by hand
        t = np.full((x.shape[0], 1), k / state.config.flow_steps, np.float32)
        x = x + np.asarray(nets['actor_bc_flow'].apply({'params': state.params['actor_bc_flow']}, obs, x, t)) / 10
    np.testing.assert_allclose(loss, np.mean((np.asarray(onestep) - np.clip(x, -1, 1)) ** 2), rtol=1e-4)


def test_normalized_q_loss_has_unit_scale(setup):
    state, nets, batch = setup
    config = state.config.as_configdict()
    config.normalize_q_loss = True
    onestep = fql.one_step_actions(nets, state.params, batch['observations'], jnp.zeros_like(batch['actions']))
    loss, q = fql.q_loss(nets, state.params, config, batch['observations'], onestep)
    np.testing.assert_allclose(loss, -np.mean(q) / np.mean(np.abs(q)), rtol=1e-5)


def _nonzero_networks(grads):
    return {name for name, g in grads.items() if any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(g))}


def test_each_loss_moves_only_its_network(setup):
    state, nets, batch = setup
    rng = jax.random.PRNGKey(7)
    obs, noises = batch['observations'], jax.random.normal(rng, batch['actions'].shape)
    losses = {
        'critic': lambda p: fql.critic_loss(nets, p, state.target_params, state.hparams, state.config, batch, rng)[0],
        'bc_flow': lambda p: fql.bc_flow_loss(nets, p, batch, rng),
        'distill': lambda p: fql.distillation_loss(nets, p, state.config, obs, noises)[0],
        'q': lambda p: fql.q_loss(nets, p, state.config, obs, fql.one_step_actions(nets, p, obs, noises))[0],
    }
    moved = {name: _nonzero_networks(jax.grad(loss)(state.params)) for name, loss in losses.items()}
    assert moved == {'critic': {'critic'}, 'bc_flow': {'actor_bc_flow'}, 'distill': {'actor_onestep_flow'},
                     'q': {'actor_onestep_flow'}}


def test_update_moves_the_target_critic_by_tau(setup):
    state, _, batch = setup
    new, _ = jax.jit(fql.update)(state, batch, jax.random.PRNGKey(0))
    expected = jax.tree.map(lambda t, o: 0.005 * o + 0.995 * t, state.target_params['critic'], new.params['critic'])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 new.target_params['critic'], expected)


def test_sample_actions_is_the_clipped_one_step_policy(setup):
    state, nets, batch = setup
    rng = jax.random.PRNGKey(2)
    actions = fql.sample_actions(state, batch['observations'], rng)
    noises = jax.random.normal(rng, batch['actions'].shape)
    expected = jnp.clip(fql.one_step_actions(nets, state.params, batch['observations'], noises), -1, 1)
    np.testing.assert_array_equal(actions, expected)


# --- defining behaviour: a bimodal bandit where Q prefers one mode ----------------------------

def _bandit_batch(rng, size=64):
    """One state; behaviour actions at -0.6 or +0.6 (50/50); reward = action; episodes end at once."""
    mode_rng, noise_rng = jax.random.split(rng)
    modes = jnp.where(jax.random.bernoulli(mode_rng, 0.5, (size, 1)), 0.6, -0.6)
    actions = jnp.clip(modes + 0.05 * jax.random.normal(noise_rng, (size, 1)), -1, 1)
    obs = jnp.zeros((size, 1))
    return dict(observations=obs, next_observations=obs, actions=actions, rewards=actions[:, 0],
                masks=jnp.zeros(size), terminals=jnp.ones(size))


@functools.partial(jax.jit, static_argnums=(1,))
def _train_bandit(state, steps):
    def step(state, rng):
        batch_rng, update_rng = jax.random.split(rng)
        state, _ = fql.update(state, _bandit_batch(batch_rng), update_rng)
        return state, None
    state, _ = jax.lax.scan(step, state, jax.random.split(jax.random.PRNGKey(1), steps))
    return state


def test_policy_moves_to_the_better_mode_as_alpha_drops():
    config = tiny_config(fql, hidden=(64, 64), batch_size=64, lr=3e-3)
    positive = {}
    for alpha in (1000.0, 0.3):
        state = fql.init(jax.random.PRNGKey(0), _bandit_batch(jax.random.PRNGKey(0)), config.copy_and_resolve_references())
        state = state.replace(hparams={**state.hparams, 'alpha': jnp.float32(alpha)})
        state = _train_bandit(state, 1500)
        actions = fql.sample_actions(state, jnp.zeros((2000, 1)), jax.random.PRNGKey(5))
        positive[alpha] = float(jnp.mean(actions > 0))
    # Strong distillation keeps both behaviour modes; weak distillation follows Q to the +0.6 mode.
    assert 0.25 < positive[1000.0] < 0.75, positive
    assert positive[0.3] > 0.95, positive


def test_mean_q_on_data_and_on_policy_actions_are_two_metrics(setup):
    """critic/q_mean is Q at the batch's actions, actor/q at the one-step policy's: computed from
    their own actions, they differ (docs/RESULTS.md's parity table once showed one value twice)."""
    state, nets, batch = setup
    _, metrics = fql.update(state, batch, jax.random.PRNGKey(5))
    q_data = np.asarray(_critic(nets, state.params, batch['observations'], batch['actions'])).mean()
    assert float(metrics['critic/q_mean']) == pytest.approx(q_data, rel=1e-5)
    _, actor = fql.actor_loss(nets, state.params, state.hparams, state.config, batch,
                              jax.random.split(jax.random.PRNGKey(5))[1])
    assert float(metrics['actor/q']) == pytest.approx(float(actor['actor/q']), rel=1e-5)
    assert abs(float(metrics['actor/q']) - float(metrics['critic/q_mean'])) > 1e-4
