"""QFQL's defining properties (docs/ALGORITHMS.md, "QFQL"): guidance at inference only, beta = 0 is
flow BC bit for bit, guidance raises Q on a bandit whose Q is known, clipping bounds each step,
huge or non-finite gradients never reach the actions, and beta vmaps over stacked states."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import flow_bc, qfql
from flowrl.testing import index, max_abs_diff, stack, synthetic_batch, tiny_config

OBS = synthetic_batch()['observations']
BEST_ACTION = jnp.array([0.6, -0.4])  # the bandit's optimum


def _state(seed=0, **overrides):
    return qfql.init(jax.random.PRNGKey(seed), synthetic_batch(), tiny_config(qfql, **overrides))


def _with(state, **hparams):
    return state.replace(hparams={**state.hparams, **{k: jnp.float32(v) for k, v in hparams.items()}})


def _flow_bc_twin(state):
    """A flow BC state with QFQL's velocity field (same sizes and flow steps)."""
    config = tiny_config(flow_bc, flow_steps=state.config.flow_steps)
    twin = flow_bc.init(jax.random.PRNGKey(0), synthetic_batch(), config)
    return twin.replace(params={'actor_bc_flow': state.params['actor_bc_flow']})


def _huge_critic(state, scale=1e35):
    """The critic's output layers scaled so that grad_a Q overflows (inf/NaN in float32)."""
    critic = jax.tree_util.tree_map_with_path(
        lambda path, x: x * scale if 'Dense_2' in jax.tree_util.keystr(path) else x, state.params['critic'])
    return state.replace(params={**state.params, 'critic': critic})


sample = jax.jit(qfql.sample_actions)
sample_with_info = jax.jit(qfql.sample_actions_with_info)
sample_flow_bc = jax.jit(flow_bc.sample_actions)


def true_q(actions):
    return -jnp.sum((actions - BEST_ACTION) ** 2, axis=-1)


# One xdist worker builds the module's fixtures once and runs every test that reads them.
pytestmark = pytest.mark.xdist_group('test_qfql')


@pytest.fixture(scope='module')
def bandit_state():
    """QFQL trained on a one-step bandit: masks = 0, so the critic's target is r = true_q(a)."""
    rng = np.random.default_rng(0)
    size, obs_dim = 2048, 2
    actions = jnp.asarray(rng.uniform(-0.9, 0.9, (size, 2)), jnp.float32)
    data = dict(observations=jnp.asarray(rng.normal(size=(size, obs_dim)), jnp.float32), actions=actions,
                rewards=true_q(actions), masks=jnp.zeros(size), next_observations=jnp.zeros((size, obs_dim)))
    config = tiny_config(qfql, hidden=(64, 64), batch_size=128, lr=3e-3)
    state = qfql.init(jax.random.PRNGKey(0), jax.tree.map(lambda x: x[:128], data), config)

    def one_update(state, rng):
        batch_rng, update_rng = jax.random.split(rng)
        idx = jax.random.randint(batch_rng, (128,), 0, size)
        return qfql.update(state, jax.tree.map(lambda x: x[idx], data), update_rng)

    state, metrics = jax.jit(lambda s, r: jax.lax.scan(one_update, s, jax.random.split(r, 600)))(
        state, jax.random.PRNGKey(1))
    assert float(metrics['critic/loss'][-50:].mean()) < 0.02  # the critic has learned the known Q
    return state, data['observations'][:512]


def test_guidance_zero_is_flow_bc_bit_for_bit():
    state = _state(guidance=0.0)
    twin = _flow_bc_twin(state)
    for seed in range(3):
        rng = jax.random.PRNGKey(seed)
        guided = sample(state, OBS, rng)
        np.testing.assert_array_equal(guided, sample_flow_bc(twin, OBS, rng))
    # also with annealing on and with a critic whose gradients are huge: beta = 0 ignores them
    bold = _huge_critic(_with(state, guidance_anneal=1.0))
    np.testing.assert_array_equal(sample(bold, OBS, rng),
                                  sample_flow_bc(twin, OBS, rng))


def test_mean_q_increases_with_guidance(bandit_state):
    state, observations = bandit_state
    betas = (0.0, 0.3, 1.0, 3.0)
    stacked = stack([_with(state, guidance=b) for b in betas])
    actions = jax.jit(jax.vmap(qfql.sample_actions, in_axes=(0, None, None)))(
        stacked, observations, jax.random.PRNGKey(3))
    known = [float(true_q(a).mean()) for a in actions]
    learned = [float(qfql.networks(state.config)['critic'].apply({'params': state.params['critic']},
                                                                 observations, a).mean()) for a in actions]
    assert all(np.diff(known) > 0), known
    assert all(np.diff(learned) > 0), learned
    assert known[-1] > known[0] + 0.2  # a real improvement, not noise


def test_guidance_does_not_change_training():
    batch = synthetic_batch()
    low, _ = jax.jit(qfql.update)(_state(guidance=0.0), batch, jax.random.PRNGKey(1))
    high, _ = jax.jit(qfql.update)(_state(guidance=30.0, grad_clip=5.0), batch, jax.random.PRNGKey(1))
    assert max_abs_diff(low.params, high.params) == 0.0


def test_each_loss_moves_only_its_network():
    state, batch = _state(), synthetic_batch()
    nets = qfql.networks(state.config)
    critic_grads = jax.jit(jax.grad(lambda p: qfql.critic_loss(nets, p, state.target_params, state.hparams, state.config,
                                                       batch, jax.random.PRNGKey(0))[0]))(state.params)
    actor_grads = jax.jit(jax.grad(lambda p: qfql.actor_loss(nets, p, state.hparams, state.config, batch, jax.random.PRNGKey(0))[0]))(state.params)
    norm = lambda tree: float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))
    assert norm(critic_grads['critic']) > 0 and norm(critic_grads['actor_bc_flow']) == 0
    assert norm(actor_grads['actor_bc_flow']) > 0 and norm(actor_grads['critic']) == 0


def test_annealing_redistributes_a_fixed_total():
    steps = 10
    t = jnp.arange(steps, dtype=jnp.float32)[:, None] / steps
    for anneal in (-1.0, 0.0, 0.5, 1.0):
        weights = qfql.guidance_weight({'guidance': 2.0, 'guidance_anneal': anneal}, t, steps)[:, 0]
        np.testing.assert_allclose(float(weights.mean()), 2.0, rtol=1e-6)
        assert np.all(np.sign(np.diff(weights)) == np.sign(anneal))
        assert float(weights.min()) >= 0.0


@pytest.mark.parametrize('critic_scale', [1.0, 1e35])
def test_clipping_bounds_each_step(critic_scale):
    clip, beta = 0.25, 3.0
    state = _with(_huge_critic(_state(), critic_scale), guidance=beta, grad_clip=clip, guidance_anneal=0.5)
    nets, config = qfql.networks(state.config), state.config
    field = jax.jit(lambda x, t: qfql.guided_field(nets, state.params, state.hparams, config, OBS)(x, t))
    velocity = jax.jit(lambda x, t: nets['actor_bc_flow'].apply({'params': state.params['actor_bc_flow']}, OBS, x, t))
    x = jax.random.normal(jax.random.PRNGKey(0), (OBS.shape[0], config.action_dim))
    for k in range(config.flow_steps):
        t = jnp.full((OBS.shape[0], 1), k / config.flow_steps)
        push = np.linalg.norm(field(x, t) - velocity(x, t), axis=-1)
        bound = float(qfql.guidance_weight(state.hparams, t[0], config.flow_steps)[0]) * clip
        assert np.all(push <= bound * (1 + 1e-5)), (k, push.max(), bound)
        assert push.max() > 0.5 * bound  # the bound is reached: the clip acts, guidance is on
    # end to end with one Euler step: the action moves at most beta * clip from flow BC's
    one_step = _with(_huge_critic(_state(flow_steps=1), critic_scale), guidance=beta, grad_clip=clip)
    rng = jax.random.PRNGKey(4)
    shift = sample(one_step, OBS, rng) - sample_flow_bc(_flow_bc_twin(one_step), OBS, rng)
    assert np.all(np.linalg.norm(shift, axis=-1) <= beta * clip * (1 + 1e-5))


@pytest.mark.parametrize('critic_scale', [1e35, 1e39])  # gradients ~1e35 (norm overflows), inf/NaN
def test_huge_gradients_give_finite_actions(critic_scale):
    state = _with(_huge_critic(_state(), critic_scale), guidance=100.0, grad_clip=1.0)
    rng = jax.random.PRNGKey(0)
    actions, info = sample_with_info(state, OBS, rng)
    assert bool(jnp.all(jnp.isfinite(actions))) and float(jnp.max(jnp.abs(actions))) <= 1.0
    assert int(info['nonfinite']) == 0  # the robust clip alone kept them finite
    if critic_scale < 1e38:  # finite gradients keep their direction: guidance still acts
        assert max_abs_diff(actions, sample_flow_bc(_flow_bc_twin(state), OBS, rng)) > 1e-3
    raw = jax.grad(lambda x: jnp.sum(qfql.networks(state.config)['critic'].apply(
        {'params': state.params['critic']}, OBS, x)))(jnp.zeros((OBS.shape[0], 3)))
    naive_norm = jnp.sqrt(jnp.sum(raw ** 2, axis=-1))
    assert not bool(jnp.all(jnp.isfinite(naive_norm)))  # a naive clip would have failed here


@pytest.mark.parametrize('bad_beta', [np.nan, np.inf])
def test_guard_replaces_non_finite_actions_by_the_flow_sample(bad_beta):
    state = _with(_state(), guidance=bad_beta)
    rng = jax.random.PRNGKey(5)
    actions, info = sample_with_info(state, OBS, rng)
    assert int(info['nonfinite']) == OBS.shape[0]
    np.testing.assert_array_equal(actions, sample_flow_bc(_flow_bc_twin(state), OBS, rng))


def test_guidance_vmaps_through_sample_actions_without_retracing():
    traces = []

    def counted(state, observations, rng):
        traces.append(1)
        return qfql.sample_actions(state, observations, rng)

    sample_stack = jax.jit(jax.vmap(counted, in_axes=(0, None, None)))
    state, rng = _state(), jax.random.PRNGKey(6)
    betas = (0.0, 0.3, 1.0, 3.0)
    actions = sample_stack(stack([_with(state, guidance=b) for b in betas]), OBS, rng)
    sample_stack(stack([_with(state, guidance=b * 2) for b in betas]), OBS, rng)
    assert len(traces) == 1
    for i, beta in enumerate(betas):
        single = sample(_with(state, guidance=beta), OBS, rng)
        np.testing.assert_allclose(actions[i], single, atol=1e-5)
    np.testing.assert_allclose(actions[0], sample_flow_bc(_flow_bc_twin(state), OBS, rng), atol=1e-6)
    assert max_abs_diff(index(actions, 0), index(actions, 3)) > 1e-3


# ---- the paper's unclipped rule by default, and grad_a Q norms as diagnostics ----

class LinearCritic:
    """Twin critic Q_k(s, a) = w_k sum(a): grad_a of the mean is mean(w) in every action dim."""

    def apply(self, variables, observations, actions):
        return variables['params']['w'][:, None] * jnp.sum(actions, axis=-1)[None]


class QuadraticCritic:
    """Twin critic Q_k(s, a) = -w_k |a|^2 / 2: grad_a of the mean is -mean(w) a."""

    def apply(self, variables, observations, actions):
        return -0.5 * variables['params']['w'][:, None] * jnp.sum(actions ** 2, axis=-1)[None]


class ZeroField:
    def apply(self, variables, observations, x, t):
        return jnp.zeros_like(x)


def _stub_state(monkeypatch, critic, w, **hparams):
    """A QFQL state whose networks are `critic` (weights w) and a zero velocity field."""
    monkeypatch.undo()  # a real state first (init needs the real networks), then the stubs
    state = _state()
    monkeypatch.setattr(qfql, 'networks', lambda config: dict(critic=critic, actor_bc_flow=ZeroField()))
    params = dict(critic=dict(w=jnp.asarray(w, jnp.float32)), actor_bc_flow={})
    return _with(state.replace(params=params), **hparams)


def test_default_guidance_is_the_papers_unclipped_rule(monkeypatch):
    """grad_a Q = 5 in each of 3 dims (norm 8.7 > 1): K steps of beta g / K move every sample by beta g."""
    assert qfql.get_config().grad_clip == float('inf')
    state = _stub_state(monkeypatch, LinearCritic(), [4.0, 6.0], guidance=0.1, grad_clip=qfql.get_config().grad_clip)
    rng = jax.random.PRNGKey(7)
    noises = jax.random.normal(rng, (OBS.shape[0], 3))
    np.testing.assert_allclose(qfql.sample_actions(state, OBS, rng), jnp.clip(noises + 0.1 * 5.0, -1, 1), atol=1e-5)


def test_action_diagnostics_report_the_raw_gradient_norms(monkeypatch):
    # Constant gradient: norm 5 sqrt(3) at every sample and step, whatever the clip.
    state = _stub_state(monkeypatch, LinearCritic(), [4.0, 6.0], guidance=0.1, grad_clip=1.0)
    info = qfql.action_diagnostics(state, OBS, jax.random.PRNGKey(0))
    assert float(info['grad_q_norm_mean']) == pytest.approx(5 * np.sqrt(3), rel=1e-5)
    assert float(info['grad_q_norm_max']) == pytest.approx(5 * np.sqrt(3), rel=1e-5)
    assert float(info['grad_q_nonfinite']) == 0.0
    # grad = -2 a; with beta = 0 and a zero field every sample stays at its noise x0 for all K
    # steps, so the norms are 2 |x0|: mean and max over the samples of sample_actions' noise.
    rng = jax.random.PRNGKey(1)
    state = _stub_state(monkeypatch, QuadraticCritic(), [1.0, 3.0], guidance=0.0)
    info = qfql.action_diagnostics(state, OBS, rng)
    norms = 2.0 * np.linalg.norm(jax.random.normal(rng, (OBS.shape[0], 3)), axis=-1)
    assert float(info['grad_q_norm_mean']) == pytest.approx(norms.mean(), rel=1e-5)
    assert float(info['grad_q_norm_max']) == pytest.approx(norms.max(), rel=1e-5)
    # A non-finite gradient is counted, not averaged in.
    state = _stub_state(monkeypatch, LinearCritic(), [np.nan, 1.0], guidance=0.1)
    info = qfql.action_diagnostics(state, OBS, rng)
    assert float(info['grad_q_nonfinite']) == 1.0 and float(info['grad_q_norm_max']) == 0.0


def test_guidance_is_swept_on_a_trained_checkpoint_with_its_gradient_norms(tmp_path, monkeypatch):
    """flowrl.run.evaluate_run's library path (its CLI: tests/test_main.py) on a trained QFQL run: one row
    per (seed, guidance), and QFQL's action_diagnostics hook reports grad_a Q norms beside success."""
    import csv
    import os

    from flowrl.run.evaluate_run import evaluate_values
    from flowrl.run.runner import Run
    from flowrl.testing import tiny_run_settings, use_fake_world

    use_fake_world(monkeypatch)
    settings = tiny_run_settings(tmp_path, agent='agents/qfql.py', num_seeds=2, eval_episodes=0,
                                 agent_overrides=dict(actor_hidden_dims='8,8', value_hidden_dims='8,8', batch_size='8',
                                                      flow_steps='2'))
    run = Run(settings, log=lambda *_: None)
    run.train()
    evaluate_values(run.run_dir, {'guidance': '0,1,3'}, episodes=1, workers=1, log=lambda *_: None)
    with open(os.path.join(run.run_dir, 'evaluate_guidance_step8.csv')) as f:
        rows = list(csv.DictReader(f))
    assert sorted((int(r['seed']), float(r['guidance'])) for r in rows) == [(s, g) for s in (0, 1) for g in (0, 1, 3)]
    assert all(0 <= float(r['success']) <= 1 and float(r['episode_length']) > 0 for r in rows)
    assert all(float(r['grad_q_norm_max']) >= float(r['grad_q_norm_mean']) > 0 for r in rows)
