"""FlowQ (agents/flowq.py): guided-path math by hand, gradient routing, cost independent of
flow_steps, and the defining property on a bandit: samples shift by lambda kappa(1) grad Q."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.agents import flowq
from flowrl.kit.flow import flow_matching_loss, sample_path_points
from flowrl.testing import index, stack, synthetic_batch, tiny_config


class LinearCritic:
    """Stand-in twin critic with Q_k(s, a) = w_k * sum(a): grad_a of the mean is mean(w)."""

    def apply(self, variables, observations, actions):
        return variables['params']['w'][:, None] * jnp.sum(actions, axis=-1)[None]


class ZeroField:
    def apply(self, variables, observations, x, t):
        return jnp.zeros_like(x)


def _config(**overrides):
    config = tiny_config(flowq, **overrides)
    config.action_dim = 2
    return config


@pytest.mark.parametrize('path, schedule, kappa_end', [
    ('linear', 't', 0.0), ('linear', 't2', 0.0), ('linear', 't2_over_1mt', 0.0),
    ('linear', 't2_over_sigma2', 1.0), ('linear', 'learned', 1.0),
    ('sqrt', 't', 0.0), ('sqrt', 't2', 0.0), ('sqrt', 't2_over_1mt', 1.0)])
def test_endpoint_kappa_of_each_path_and_schedule(path, schedule, kappa_end):
    config = _config(path=path, schedule=schedule)
    schedule_params = dict(logits=jnp.array([0.3, -1.0, 2.0, 0.0]))
    assert float(flowq.kappa(jnp.ones(()), config, schedule_params)) == pytest.approx(kappa_end, abs=1e-6)
    assert float(flowq.kappa(jnp.zeros(()), config, schedule_params)) == 0.0  # the source stays N(0, I).


@pytest.mark.parametrize('path, schedule, x_t, target', [
    # kappa = t^2, sigma = 1 - t: x = t a + t^2 shift + (1 - t) x0, u = a - x0 + 2 t shift.
    ('linear', 't2_over_sigma2', 0.2 + 0.25 * 0.2 + 0.5, 0.4 - 1.0 + 2 * 0.5 * 0.2),
    # kappa = t (1 - t)^2, kappa' = (1 - t)^2 - 2 t (1 - t) = -0.25 at t = 0.5.
    ('linear', 't', 0.2 + 0.125 * 0.2 + 0.5, 0.4 - 1.0 - 0.25 * 0.2),
    # sigma = sqrt(1 - t), sigma' = -1 / (2 sigma); kappa = t^2.
    ('sqrt', 't2_over_1mt', 0.2 + 0.25 * 0.2 + np.sqrt(0.5), 0.4 - 0.5 / np.sqrt(0.5) + 2 * 0.5 * 0.2),
])
def test_guided_path_point_by_hand(path, schedule, x_t, target):
    config = _config(path=path, schedule=schedule)
    one = lambda v: jnp.full((1, 1), v, jnp.float32)
    got_x, got_u = flowq.guided_path_point(one(0.4), one(1.0), one(0.5), one(0.2), config)
    assert float(got_x[0, 0]) == pytest.approx(x_t, abs=1e-6)
    assert float(got_u[0, 0]) == pytest.approx(target, abs=1e-6)


def _stub_nets():
    return dict(critic=LinearCritic(), actor_flow=ZeroField())


@pytest.mark.parametrize('normalize_grad', [False, True])
def test_actor_loss_by_hand_with_a_linear_critic(normalize_grad):
    """Q = w . sum(a), so g = mean(w) in every action dim; v = 0, so the loss is mean(u^2)."""
    config = _config(normalize_grad=normalize_grad)
    batch = synthetic_batch(batch_size=8, action_dim=2)
    params = dict(critic=dict(w=jnp.array([1.0, 3.0])), actor_flow={})
    hparams = {'lambda': jnp.float32(0.5)}
    loss, info = flowq.actor_loss(_stub_nets(), params, hparams, config, batch, jax.random.PRNGKey(4))

    g = 2.0 if not normalize_grad else 1.0  # mean(w) = 2; normalised by its RMS (2) it is 1.
    x0, t, _, _ = sample_path_points(jax.random.PRNGKey(4), batch['actions'])
    expected = np.mean((batch['actions'] - x0 + 2 * t * 0.5 * g) ** 2)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(info['actor/grad_q_rms']) == pytest.approx(2.0)


class QuadraticCritic:
    """Q_k(s, a) = -w_k |a - 0.3|^2 / 2: g = -mean(w) (a - 0.3), different for every sample."""

    def apply(self, variables, observations, actions):
        return -0.5 * variables['params']['w'][:, None] * jnp.sum((actions - 0.3) ** 2, axis=-1)[None]


def test_default_loss_is_bc_of_data_actions_shifted_by_lambda_g_over_its_batch_rms():
    """The documented behaviour ("FlowQ, reconstructed"): with the default config the flow regresses
    on the linear path to a + lambda kappa(1) g / rms_batch(g), kappa(t) = t^2, g = grad_a Q at the
    data action; the RMS endpoint shift is lambda."""
    config = _config()  # defaults: linear path, kappa = t^2, normalize_grad
    assert (config.path, config.schedule, config.normalize_grad) == ('linear', 't2_over_sigma2', True)
    batch = synthetic_batch(batch_size=8, action_dim=2)
    params = dict(critic=dict(w=jnp.array([1.0, 3.0])), actor_flow={})
    lam, rng = 0.5, jax.random.PRNGKey(4)
    nets = dict(critic=QuadraticCritic(), actor_flow=ZeroField())
    loss, info = flowq.actor_loss(nets, params, {'lambda': jnp.float32(lam)}, config, batch, rng)

    a = np.asarray(batch['actions'])
    g = -2.0 * (a - 0.3)
    g_hat = g / np.sqrt(np.mean(g ** 2))  # one batch constant, not a per-sample norm
    x0, t, _, _ = sample_path_points(rng, batch['actions'])
    endpoint = a + lam * 1.0 * g_hat  # kappa(1) = 1
    # v = 0, so the loss is mean(u_t^2) with x_t = t a + t^2 lam g_hat + (1 - t) x0, u_t = a - x0 + 2 t lam g_hat.
    target = a - np.asarray(x0) + 2 * np.asarray(t) * lam * g_hat
    assert float(loss) == pytest.approx(float(np.mean(target ** 2)), rel=1e-5)
    assert float(info['actor/endpoint_shift']) == pytest.approx(lam, rel=1e-5)
    x1, _ = flowq.guided_path_point(batch['actions'], x0, jnp.ones_like(t), lam * jnp.asarray(g_hat), config)
    np.testing.assert_allclose(x1, endpoint, atol=1e-6)


def test_zero_lambda_is_exactly_the_bc_flow_loss():
    config = tiny_config(flowq)
    batch = synthetic_batch()
    state = flowq.init(jax.random.PRNGKey(0), batch, config)
    nets = flowq.networks(state.config)
    rng = jax.random.PRNGKey(3)
    loss, _ = flowq.actor_loss(nets, state.params, {'lambda': jnp.float32(0.0)}, state.config, batch, rng)
    bc = flow_matching_loss(lambda x, t: nets['actor_flow'].apply(
        {'params': state.params['actor_flow']}, batch['observations'], x, t), batch['actions'], rng)
    assert float(loss) == pytest.approx(float(bc), rel=1e-6)


def _nonzero(grads):
    return {name: any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in jax.tree.leaves(tree))
            for name, tree in grads.items()}


@pytest.mark.parametrize('critic, schedule', [('iql', 't2_over_sigma2'), ('td', 'learned')])
def test_which_params_each_loss_moves(critic, schedule):
    batch = synthetic_batch()
    state = flowq.init(jax.random.PRNGKey(0), batch, tiny_config(flowq, critic=critic, schedule=schedule))
    nets, rng = flowq.networks(state.config), jax.random.PRNGKey(1)
    actor_grads = jax.grad(
        lambda p: flowq.actor_loss(nets, p, state.hparams, state.config, batch, rng)[0])(state.params)
    critic_grads = jax.grad(lambda p: flowq.critic_loss(
        nets, p, state.target_params, state.hparams, state.config, batch, rng)[0])(state.params)
    learned = schedule == 'learned'
    assert _nonzero(actor_grads) == dict(critic=False, actor_flow=True, **({'schedule': True} if learned else {}),
                                         **({'value': False} if critic == 'iql' else {}))
    assert _nonzero(critic_grads) == dict(critic=True, actor_flow=False, **({'schedule': False} if learned else {}),
                                          **({'value': True} if critic == 'iql' else {}))


def test_policy_update_does_not_depend_on_flow_steps():
    """The actor loss compiles to the same program for 1 and 64 flow steps (no policy sampling)."""
    batch = synthetic_batch()

    def actor_program(flow_steps):
        state = flowq.init(jax.random.PRNGKey(0), batch, tiny_config(flowq, flow_steps=flow_steps))
        nets = flowq.networks(state.config)
        rng = jax.random.PRNGKey(1)
        grad = jax.grad(lambda p: flowq.actor_loss(nets, p, state.hparams, state.config, batch, rng)[0])
        return str(jax.make_jaxpr(grad)(state.params))

    assert actor_program(1) == actor_program(64)


# ---- Bandit: one constant state, bimodal behaviour, reward r(a) = a and terminal transitions,
# so the IQL critic learns Q(s, a) = a and g = 1 (measured, not assumed).

def _bandit(n=4096, high_fraction=0.3, seed=0):
    rng = np.random.default_rng(seed)
    actions = np.where(rng.uniform(size=n) < high_fraction, 0.5, -0.5) + 0.1 * rng.normal(size=n)
    actions = np.clip(actions, -1 + 1e-5, 1 - 1e-5).astype(np.float32)[:, None]
    zeros = jnp.zeros((n, 1), jnp.float32)
    return dict(observations=zeros, next_observations=zeros, actions=jnp.asarray(actions),
                rewards=jnp.asarray(actions[:, 0]), masks=jnp.zeros(n, jnp.float32),
                terminals=jnp.ones(n, jnp.float32))


def _train(update, states, data, num_updates, batch_size, rng):
    """jit(vmap(scan(update))) over a stack of states, batches drawn on device."""
    def run(state):
        def one(carry, _):
            state, rng = carry
            rng, batch_rng, update_rng = jax.random.split(rng, 3)
            idx = jax.random.randint(batch_rng, (batch_size,), 0, data['actions'].shape[0])
            state, _ = update(state, jax.tree.map(lambda x: x[idx], data), update_rng)
            return (state, rng), None
        return jax.lax.scan(one, (state, rng), length=num_updates)[0][0]
    return jax.jit(jax.vmap(run))(states)


LAMBDA = 0.2


@pytest.mark.parametrize('path, schedule, kappa_end', [
    ('linear', 't2_over_sigma2', 1.0),  # the default
    pytest.param('linear', 'learned', 1.0, marks=pytest.mark.slow),
    ('linear', 't2', 0.0),  # the caveat: kappa(1) = 0 is behaviour cloning
])
def test_bandit_samples_shift_by_lambda_kappa_grad_q(path, schedule, kappa_end):
    data = _bandit()
    config = tiny_config(flowq, hidden=(64, 64), batch_size=128, lr=3e-3, normalize_grad=False,
                         path=path, schedule=schedule)
    example = jax.tree.map(lambda x: x[:4], data)
    states = []
    for lam in (0.0, LAMBDA):  # same seed: identical critics (IQL never sees the policy)
        config['lambda'] = lam
        states.append(flowq.init(jax.random.PRNGKey(0), example, config))
    trained = _train(flowq.update, stack(states), data, 1500, 128, jax.random.PRNGKey(1))

    noises_rng = jax.random.PRNGKey(7)
    obs = jnp.zeros((4000, 1))
    bc, guided = (flowq.sample_actions(index(trained, i), obs, noises_rng)[:, 0] for i in (0, 1))
    nets, critic = flowq.networks(trained.config), index(trained, 1).params['critic']
    grads = flowq.q_action_gradient(nets, critic, data['observations'], data['actions'])[:, 0]

    # lambda = 0 is behaviour cloning: modes and their mass where the data put them.
    assert float(jnp.mean(bc > 0)) == pytest.approx(0.3, abs=0.07)
    assert float(jnp.median(bc[bc > 0])) == pytest.approx(0.5, abs=0.1)
    assert float(jnp.median(bc[bc < 0])) == pytest.approx(-0.5, abs=0.1)
    for sign in (1.0, -1.0):
        predicted = LAMBDA * kappa_end * float(jnp.mean(grads[sign * data['actions'][:, 0] > 0]))
        in_mode = sign * bc > 0
        measured = float(jnp.median((guided - bc)[in_mode]))
        assert measured == pytest.approx(predicted, abs=0.05), (sign, measured, predicted)
    # A Gaussian shift moves mass within a mode; it cannot move mass between modes.
    assert float(jnp.mean(guided > LAMBDA * kappa_end)) == pytest.approx(float(jnp.mean(bc > 0)), abs=0.05)

