"""Q-chunking's agent (agents/acfql.py): the H-step critic where its value is known, what each
loss moves, best-of-N acting, chunk shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.agents import acfql
from flowrl.engine.sampling import Sampler
from flowrl.kit import chunking
from flowrl.kit.networks import apply_named
from flowrl.testing import max_abs_diff, tiny_config

GAMMA = 0.8
UPDATE, ACT = jax.jit(acfql.update), jax.jit(acfql.sample_actions)


def _dataset(observations, rewards, terminals, masks):
    """Rows with random actions (the rewards do not depend on them)."""
    actions = np.random.default_rng(0).uniform(-1, 1, (len(rewards), 2)).astype(np.float32)
    next_observations = np.concatenate([observations[1:], observations[-1:]])
    return dict(observations=observations, next_observations=next_observations, actions=actions,
                rewards=np.asarray(rewards, np.float32), terminals=np.asarray(terminals, np.float32),
                masks=np.asarray(masks, np.float32))


def _endless(rows=200):
    """One state, reward 1 at every step, never terminated (its one episode ends by a time limit at the
    last row: terminal, mask 1): Q = 1 / (1 - GAMMA) = 5."""
    return _dataset(np.zeros((rows, 1), np.float32), np.ones(rows), np.eye(rows)[-1], np.ones(rows))


def _terminating(episodes=40, length=5):
    """Episodes of H = 5 steps, reward t + 1 at step t, terminated after the last: the only sequences
    inside one episode start at t = 0, so Q(s_0, any chunk) = sum_t GAMMA^t (t + 1) = 8.616, with
    nothing bootstrapped after the termination."""
    t = np.tile(np.arange(length, dtype=np.float32), episodes)
    ends = (t == length - 1).astype(np.float32)
    return _dataset(t[:, None] / length, t + 1, ends, 1.0 - ends)


def _config(**changes):
    values = dict(batch_size=64, horizon_length=5, discount=GAMMA, tau=0.1, lr=3e-3, flow_steps=2)
    return tiny_config(acfql, **{**values, **changes})


def _train(config, dataset, updates, seed=0):
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    sampler = Sampler(config.batch_size, chunking.config_horizon(config))
    state = acfql.init(jax.random.PRNGKey(seed), {k: v[:2] for k, v in dataset.items()}, config)

    def step(carry, key):
        batch_key, update_key = jax.random.split(key)
        return acfql.update(carry, sampler.from_dataset(dataset, batch_key), update_key)[0], None

    return jax.jit(lambda s: jax.lax.scan(step, s, jax.random.split(jax.random.PRNGKey(seed + 1), updates))[0])(state)


@pytest.mark.parametrize('dataset, expected, action_chunking', [
    (_endless, 1 / (1 - GAMMA), True), (_terminating, sum(GAMMA ** t * (t + 1) for t in range(5)), True),
    (_terminating, sum(GAMMA ** t * (t + 1) for t in range(5)), False)])
def test_the_critic_learns_the_h_step_value(dataset, expected, action_chunking):
    """The H-step target (the discounted sum of the H rewards, GAMMA^H, the chunk's mask) has these
    values as its fixed point at the first state, for the chunks of the data (FQL-n: their first actions). The next
    actions are single BC-flow samples (best of 1), so no maximisation biases the estimate."""
    config = _config(action_chunking=action_chunking, actor_type='best-of-n', actor_num_samples=1)
    data = dataset()
    state = _train(config, data, 800)
    first = np.nonzero(data['observations'][:, 0] == 0)[0][:8]  # sequences starting at s_0: their chunks
    chunks = np.stack([data['actions'][i:i + 5] for i in first])
    actions = jnp.asarray(chunks.reshape(len(first), -1) if action_chunking else chunks[:, 0])
    qs = apply_named(acfql.networks(state.config), 'critic', state.params, jnp.zeros((len(first), 1)), actions).mean(0)
    np.testing.assert_allclose(np.asarray(qs), expected, rtol=0.05)


def _batch(horizon=3, batch=8, valid_last=1.0):
    rng = np.random.default_rng(1)
    valid = np.ones((batch, horizon), np.float32)
    valid[:, -1] = valid_last
    return dict(observations=jnp.asarray(rng.normal(size=(batch, 4)), jnp.float32),
                next_observations=jnp.asarray(rng.normal(size=(batch, 4)), jnp.float32),
                actions=jnp.asarray(rng.uniform(-1, 1, (batch, horizon, 2)), jnp.float32),
                rewards=jnp.asarray(rng.normal(size=(batch, horizon)), jnp.float32),
                masks=jnp.ones((batch, horizon)), terminals=jnp.zeros((batch, horizon)), valid=jnp.asarray(valid))


def _moved(before, after) -> set:
    return {name for name in before.params if max_abs_diff(before.params[name], after.params[name]) > 0}


@pytest.mark.parametrize('actor_type, moved', [('distill-ddpg', {'critic', 'actor_bc_flow', 'actor_onestep_flow'}),
                                               ('best-of-n', {'critic', 'actor_bc_flow'})])
def test_what_each_actor_type_trains(actor_type, moved):
    config = _config(horizon_length=3, actor_type=actor_type, actor_num_samples=4)
    batch = _batch()
    state = acfql.init(jax.random.PRNGKey(0), batch, config)
    after, metrics = UPDATE(state, batch, jax.random.PRNGKey(1))
    assert _moved(state, after) == moved
    assert ('actor/distill_loss' in metrics) == (actor_type == 'distill-ddpg')


def test_chunks_that_leave_their_episode_do_not_train_the_critic():
    """valid[:, -1] = 0 everywhere: the critic loss is 0 and Adam leaves the critic where it was."""
    config = _config(horizon_length=3)
    batch = _batch(valid_last=0.0)
    state = acfql.init(jax.random.PRNGKey(0), batch, config)
    after, metrics = UPDATE(state, batch, jax.random.PRNGKey(1))
    assert float(metrics['critic/loss']) == 0.0
    assert max_abs_diff(state.params['critic'], after.params['critic']) == 0.0


def test_best_of_n_acts_with_the_candidate_the_critic_ranks_first():
    config = _config(horizon_length=3, actor_type='best-of-n', actor_num_samples=6)
    batch = _batch()
    state = _train(config, _terminating(), 50)
    observations, key = batch['observations'][:, :1], jax.random.PRNGKey(3)
    chosen = ACT(state, observations, key)
    nets = acfql.networks(state.config)
    noises = jax.random.normal(key, (6,) + observations.shape[:1] + (state.config.action_dim,))
    candidates = jax.vmap(lambda z: jnp.clip(_euler(nets, state, observations, z), -1, 1))(noises)
    q = jax.vmap(lambda a: apply_named(nets, 'critic', state.params, observations, a).mean(0))(candidates)
    best = np.asarray(candidates)[np.asarray(jnp.argmax(q, 0)), np.arange(observations.shape[0])]
    np.testing.assert_allclose(np.asarray(chosen), best, atol=1e-5)


def _euler(nets, state, observations, x):
    for k in range(state.config.flow_steps):
        t = jnp.full(x.shape[:-1] + (1,), k / state.config.flow_steps)
        x = x + apply_named(nets, 'actor_bc_flow', state.params, observations, x, t) / state.config.flow_steps
    return x


@pytest.mark.parametrize('action_chunking, width', [(True, 6), (False, 2)])
def test_actions_are_chunks_with_chunking_and_single_actions_without(action_chunking, width):
    config = _config(horizon_length=3, action_chunking=action_chunking)
    state = acfql.init(jax.random.PRNGKey(0), _batch(), config)
    assert ACT(state, _batch()['observations'], jax.random.PRNGKey(1)).shape == (8, width)
    assert acfql.action_horizon(state.config) == (3 if action_chunking else 1)
    assert acfql.sequence_horizon(state.config) == 3


def test_horizon_one_trains_on_plain_transitions():
    """At H = 1 the run's batches are single transitions: the agent reads them as sequences of one step."""
    config = _config(horizon_length=1)
    data = {k: jnp.asarray(v) for k, v in _terminating().items()}
    batch = Sampler(16).from_dataset(data, jax.random.PRNGKey(0))
    state = acfql.init(jax.random.PRNGKey(0), batch, config)
    _, metrics = UPDATE(state, batch, jax.random.PRNGKey(1))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert ACT(state, batch['observations'], jax.random.PRNGKey(1)).shape == (16, 2)


def test_discounted_sum_closed_form():
    np.testing.assert_allclose(chunking.discounted_sum(jnp.array([[1.0, 2.0, 3.0]]), 0.5), [2.75])
