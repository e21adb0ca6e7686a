"""The FQL paper's baselines (docs/ALGORITHMS.md, "Baselines"): losses on hand-computed cases,
which networks each loss moves, ReBRAC's delayed actor under scan, IFQL's argmax, flow BC's
sampler, and the published config keys and presets."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.agents import flow_bc, ifql, iql, rebrac
from flowrl.kit import losses
from flowrl.kit.flow import euler_integrate, flow_matching_loss
from flowrl.testing import max_abs_diff, synthetic_batch, tiny_config

BATCH = synthetic_batch()


def _state(agent, seed=0, **overrides):
    return agent.init(jax.random.PRNGKey(seed), BATCH, tiny_config(agent, **overrides))


def _moved(grads):
    """Network name -> whether the loss has a non-zero gradient there."""
    return {name: float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(g))) > 0 for name, g in grads.items()}


def _jit_grad(loss):
    """Compiled gradient of a scalar loss (op-by-op evaluation is slower than compiling)."""
    return jax.jit(jax.grad(loss))


def _apply_fn(agent, state):
    nets = agent.networks(state.config)
    return lambda name, p, *inputs: nets[name].apply({'params': p[name]}, *inputs)


# ---- hand-computed losses ----

def test_expectile_loss_weights_positive_errors_by_the_expectile():
    got = losses.expectile_loss(jnp.array([2.0, -1.0, 0.0]), 0.9)
    np.testing.assert_allclose(got, [0.9 * 4, 0.1 * 1, 0.0], rtol=1e-6)


def test_iql_value_and_critic_losses_by_hand():
    # V = [0, 1] against min over the target critics [[1, 3], [2, 0]] = [1, 0]: errors +1, -1
    loss, _ = losses.value_loss_from_values(jnp.array([0.0, 1.0]), jnp.array([[1.0, 3.0], [2.0, 0.0]]), 0.9)
    np.testing.assert_allclose(loss, (0.9 + 0.1) / 2, rtol=1e-6)
    # targets r + 0.5 m V' = [1 + 0.5 * 2, -1] = [2, -1]; squared errors summed over critics [5, 2]
    loss, _ = losses.critic_loss_from_values(jnp.array([[1.0, 0.0], [0.0, 0.0]]), jnp.array([2.0, 5.0]),
                                                 jnp.array([1.0, -1.0]), jnp.array([1.0, 0.0]), 0.5)
    np.testing.assert_allclose(loss, 3.5, rtol=1e-6)


def test_iql_awr_and_gaussian_log_prob_by_hand():
    log_prob = iql.gaussian_log_prob(jnp.array([[0.5, -0.5]]), jnp.zeros((1, 2)), jnp.zeros((1, 2)))
    np.testing.assert_allclose(log_prob, [-0.25 - math.log(2 * math.pi)], rtol=1e-6)
    # advantages 0, 1, 10 at alpha 1: weights 1, e, 100 (capped from e^10)
    loss, weights = iql.awr_objective(jnp.array([-1.0, -2.0, -0.5]), jnp.array([0.0, 1.0, 10.0]), jnp.zeros(3), 1.0)
    np.testing.assert_allclose(weights, [1.0, math.e, 100.0], rtol=1e-6)
    np.testing.assert_allclose(loss, (1.0 + 2 * math.e + 50.0) / 3, rtol=1e-6)


def test_rebrac_target_and_actor_objective_by_hand():
    # min Qbar' = [1, 2]; penalty ||a' - a'_data||^2 = [0.25, 0]; target = r + g m (minQ - 2 pen)
    target = rebrac.critic_target(jnp.array([[1.0, 3.0], [2.0, 2.0]]), jnp.array([[0.5], [0.0]]),
                                  jnp.array([[0.0], [0.0]]), jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0]), 0.5, 2.0)
    np.testing.assert_allclose(target, [0.5 * (1.0 - 0.5), 1.0], rtol=1e-6)
    # Q = [1, 3]: -mean(Q) / mean|Q| = -1; BC: 0.1 * mean([1, 0]) = 0.05
    loss, q_loss, bc_loss = rebrac.actor_objective(jnp.array([1.0, 3.0]), jnp.array([[1.0], [0.0]]),
                                                   jnp.zeros((2, 1)), 0.1)
    np.testing.assert_allclose([loss, q_loss, bc_loss], [-0.95, -1.0, 0.05], rtol=1e-6)


# ---- which networks each loss moves ----

def test_iql_losses_move_only_their_network():
    state = _state(iql)
    apply = _apply_fn(iql, state)
    value = _jit_grad(lambda p: losses.value_loss(apply, p, state.target_params, state.hparams, BATCH)[0])
    critic = _jit_grad(lambda p: losses.critic_loss(apply, p, state.hparams, BATCH)[0])
    assert _moved(value(state.params)) == dict(value=True, critic=False, actor=False)
    assert _moved(critic(state.params)) == dict(value=False, critic=True, actor=False)
    for actor_loss in ('awr', 'ddpgbc'):
        s = _state(iql, actor_loss=actor_loss)
        nets = iql.networks(s.config)
        actor = _jit_grad(lambda p: iql.actor_loss(nets, p, s.hparams, s.config, BATCH, jax.random.PRNGKey(0))[0])
        assert _moved(actor(s.params)) == dict(value=False, critic=False, actor=True), actor_loss


def test_rebrac_losses_move_only_their_network():
    state = _state(rebrac, alpha_critic=1.0)
    nets = rebrac.networks(state.config)
    batch = {**BATCH, 'next_actions': BATCH['actions']}
    critic = _jit_grad(lambda p: rebrac.critic_loss(nets, p, state.target_params, state.hparams, batch,
                                                   jax.random.PRNGKey(0))[0])
    actor = _jit_grad(lambda p: rebrac.actor_loss(nets, p, state.hparams, batch)[0])
    assert _moved(critic(state.params)) == dict(critic=True, actor=False)
    assert _moved(actor(state.params)) == dict(critic=False, actor=True)


def test_ifql_losses_move_only_their_network():
    state = _state(ifql)
    apply = _apply_fn(ifql, state)
    value = _jit_grad(lambda p: losses.value_loss(apply, p, state.target_params, state.hparams, BATCH)[0])
    critic = _jit_grad(lambda p: losses.critic_loss(apply, p, state.hparams, BATCH)[0])
    flow = _jit_grad(lambda p: flow_matching_loss(
        lambda x, t: apply('actor_bc_flow', p, BATCH['observations'], x, t), BATCH['actions'], jax.random.PRNGKey(0)))
    assert _moved(value(state.params)) == dict(value=True, critic=False, actor_bc_flow=False)
    assert _moved(critic(state.params)) == dict(value=False, critic=True, actor_bc_flow=False)
    assert _moved(flow(state.params)) == dict(value=False, critic=False, actor_bc_flow=True)
    # and update() is exactly the sum of those losses (no other term): a full step moves all three
    new, _ = jax.jit(ifql.update)(state, BATCH, jax.random.PRNGKey(1))
    assert all(max_abs_diff(new.params[k], state.params[k]) > 0 for k in state.params)


# ---- ReBRAC's delayed actor and targets under scan ----

def test_rebrac_actor_and_targets_move_every_actor_freq_updates_under_scan():
    state = _state(rebrac, actor_freq=2, alpha_actor=0.1, alpha_critic=0.1)
    batch = {**BATCH, 'next_actions': BATCH['actions']}
    digest = lambda tree: sum(jnp.sum(x) for x in jax.tree.leaves(tree))

    def one_update(state, rng):
        state, metrics = rebrac.update(state, batch, rng)
        adam_actor = state.opt_state.inner_state[0].mu['actor']
        return state, dict(actor=digest(state.params['actor']), critic=digest(state.params['critic']),
                           target_actor=digest(state.target_params['actor']),
                           target_critic=digest(state.target_params['critic']),
                           adam_actor=digest(adam_actor), updated=metrics['actor/updated'])

    run = jax.jit(lambda s, r: jax.lax.scan(one_update, s, jax.random.split(r, 6)))
    _, trace = run(state, jax.random.PRNGKey(0))
    before = dict(actor=digest(state.params['actor']), critic=digest(state.params['critic']),
                  target_actor=digest(state.target_params['actor']),
                  target_critic=digest(state.target_params['critic']), adam_actor=0.0)
    full = np.array([False, True, False, True, False, True])  # updates 2, 4, 6 (step + 1 divisible by 2)
    # As in the authors' code, Adam steps every update: after the first actor gradient (update 2)
    # the actor and its moments move on every update; before it they are zero, so nothing moves.
    after_first_actor_step = np.array([False, True, True, True, True, True])
    np.testing.assert_array_equal(np.asarray(trace['updated']), full.astype(np.float32))
    expected = dict(critic=np.ones(6, bool), target_actor=full, target_critic=full,
                    actor=after_first_actor_step, adam_actor=after_first_actor_step)
    for key, moves in expected.items():
        series = np.concatenate([[before[key]], np.asarray(trace[key])])
        np.testing.assert_array_equal(series[1:] != series[:-1], moves, err_msg=key)


def test_rebrac_actor_moves_by_adam_momentum_on_updates_without_actor_loss():
    """Update 3 has no actor loss; the actor still takes the Adam step of a zero gradient, computed
    here by hand from the moments left by update 2 (the authors' code does the same)."""
    state = _state(rebrac, actor_freq=2, alpha_actor=0.1, alpha_critic=0.1, lr=1e-3)
    update = jax.jit(rebrac.update)
    for i in range(2):  # updates 1 (critic only) and 2 (actor loss)
        state, _ = update(state, BATCH, jax.random.PRNGKey(i))
    new, metrics = update(state, BATCH, jax.random.PRNGKey(2))
    assert float(metrics['actor/updated']) == 0.0

    adam = state.opt_state.inner_state[0]
    b1, b2, eps, lr, count = 0.9, 0.999, 1e-8, 1e-3, int(adam.count) + 1

    def by_hand(param, mu, nu):
        mu, nu = b1 * np.asarray(mu), b2 * np.asarray(nu)  # zero gradient
        return np.asarray(param) - lr * (mu / (1 - b1 ** count)) / (np.sqrt(nu / (1 - b2 ** count)) + eps)

    expected = jax.tree.map(by_hand, state.params['actor'], adam.mu['actor'], adam.nu['actor'])
    assert max_abs_diff(new.params['actor'], state.params['actor']) > 1e-5
    assert max_abs_diff(new.params['actor'], expected) < 1e-7
    assert max_abs_diff(new.target_params['actor'], state.target_params['actor']) == 0.0


def test_rebrac_critic_penalty_uses_dataset_next_actions():
    state = _state(rebrac, alpha_critic=1.0)
    nets = rebrac.networks(state.config)
    loss = lambda next_actions: float(rebrac.critic_loss(
        nets, state.params, state.target_params, state.hparams, {**BATCH, 'next_actions': next_actions},
        jax.random.PRNGKey(0))[0])
    assert loss(BATCH['actions']) != loss(-BATCH['actions'])
    dataset = dict(actions=np.arange(4.0)[:, None], terminals=np.array([0.0, 1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(rebrac.prepare_dataset(dataset)['next_actions'][:, 0], [1.0, 1.0, 3.0, 3.0])


# ---- acting ----

def test_ifql_acts_with_the_best_of_its_flow_samples():
    state = _state(ifql, num_samples=8)
    rng = jax.random.PRNGKey(3)
    chosen = jax.jit(ifql.sample_actions)(state, BATCH['observations'], rng)
    candidates = jax.jit(ifql.candidate_actions)(state, BATCH['observations'], rng)  # [8, B, A]
    critic = lambda a: jnp.min(ifql.networks(state.config)['critic'].apply(
        {'params': state.params['critic']}, BATCH['observations'], a), axis=0)
    q = jnp.stack([critic(c) for c in candidates])  # [8, B]
    best = np.asarray(candidates)[np.asarray(jnp.argmax(q, axis=0)), np.arange(BATCH['observations'].shape[0])]
    np.testing.assert_allclose(chosen, best, atol=1e-6)
    assert len({tuple(np.round(np.asarray(c[0]), 5)) for c in candidates}) == 8  # candidates really differ


def test_flow_bc_update_and_sampler_are_the_shared_flow_math():
    state = _state(flow_bc)
    nets = flow_bc.networks(state.config)
    velocity = lambda p: lambda x, t: nets['actor_bc_flow'].apply({'params': p['actor_bc_flow']},
                                                                  BATCH['observations'], x, t)
    _, metrics = flow_bc.update(state, BATCH, jax.random.PRNGKey(1))
    expected = flow_matching_loss(velocity(state.params), BATCH['actions'], jax.random.PRNGKey(1))
    np.testing.assert_allclose(metrics['actor/bc_flow_loss'], expected, rtol=1e-6)
    rng = jax.random.PRNGKey(2)
    noises = jax.random.normal(rng, BATCH['actions'].shape)
    np.testing.assert_allclose(flow_bc.sample_actions(state, BATCH['observations'], rng),
                               euler_integrate(velocity(state.params), noises, state.config.flow_steps), atol=1e-6)


def test_iql_and_rebrac_act_deterministically():
    for agent in (iql, rebrac):
        state = _state(agent)
        a = agent.sample_actions(state, BATCH['observations'], jax.random.PRNGKey(0))
        b = agent.sample_actions(state, BATCH['observations'], jax.random.PRNGKey(1))
        np.testing.assert_array_equal(a, b)


# ---- published keys, defaults and presets ----

def test_published_config_keys_and_defaults():
    expect = {
        iql: dict(lr=3e-4, batch_size=256, expectile=0.9, alpha=10.0, actor_loss='awr', const_std=True,
                  layer_norm=True, discount=0.99, tau=0.005),
        rebrac: dict(actor_freq=2, actor_noise=0.2, actor_noise_clip=0.5, actor_fc_scale=0.01, layer_norm=True),
        ifql: dict(num_samples=32, flow_steps=10, expectile=0.9),
        flow_bc: dict(flow_steps=10, lr=3e-4, batch_size=256),
    }
    for agent, values in expect.items():
        config = agent.get_config()
        assert {k: config[k] for k in values} == values, agent.__name__
        assert config.actor_hidden_dims == (512,) * 4
    assert {'alpha_actor', 'alpha_critic'} <= set(rebrac.get_config())  # README: --agent.alpha_actor=...


@pytest.mark.parametrize('name', ['qfql', 'iql', 'rebrac', 'ifql'])
def test_presets_name_existing_keys(name):
    presets = importlib.import_module(f'flowrl.configs.{name}').PRESETS
    config = importlib.import_module(f'flowrl.agents.{name}').get_config()
    for env, values in presets.items():
        assert set(values) <= set(config), (env, set(values) - set(config))


@pytest.mark.parametrize('agent, env, values', [
    # The FQL paper, Table 6 (offline; the FQL README's baseline commands agree on humanoidmaze-medium).
    ('iql', 'humanoidmaze-medium-navigate', dict(discount=0.995, alpha=10.0)),
    ('rebrac', 'humanoidmaze-medium-navigate', dict(discount=0.995, alpha_actor=0.01, alpha_critic=0.01)),
    ('ifql', 'humanoidmaze-medium-navigate-task3', dict(discount=0.995, num_samples=32)),
    ('iql', 'antsoccer-arena-navigate', dict(discount=0.995, alpha=1.0)),
    ('iql', 'puzzle-4x4-play-task2', dict(alpha=3.0, actor_hidden_dims=(256,) * 4, value_hidden_dims=(256,) * 4)),
    ('iql', 'visual-puzzle-4x4-play', dict(encoder='impala_small', alpha=3.0)),  # pixels: 4 x 512 (Appendix E.2)
    ('rebrac', 'antmaze-giant-navigate', dict(discount=0.995, alpha_actor=0.003, alpha_critic=0.01)),
    ('rebrac', 'cube-double-play', dict(alpha_actor=0.1, alpha_critic=0.0)),
    ('rebrac', 'visual-scene-play', dict(encoder='impala_small', alpha_actor=0.1, alpha_critic=0.01)),
    ('ifql', 'antsoccer-arena-navigate', dict(discount=0.995, num_samples=64)),
    ('ifql', 'puzzle-3x3-play', dict(num_samples=32)),
    ('ifql', 'door-cloned-v1', dict(num_samples=128)),
    ('ifql', 'relocate-human-v1', dict(num_samples=128)),
    ('ifql', 'hammer-cloned-v1', dict(num_samples=32)),
    # QFQL paper, Table 2.
    ('qfql', 'scene-play', dict(guidance=0.3)),
    # The FQL paper's long-horizon discount, for every method.
    ('qfql', 'humanoidmaze-large-navigate', dict(discount=0.995)),
])
def test_published_values_are_preset(agent, env, values):
    from flowrl import suites
    from flowrl.registry.presets import presets_for
    assert presets_for(agent, suites.resolve(env)) == values


def test_offline_to_online_values_refine_the_offline_ones():
    """The FQL paper's Table 7: IFQL N 128 on the cloned adroit tasks online (pen-cloned: 32 offline)."""
    from flowrl import suites
    from flowrl.registry.presets import presets_for
    task = suites.resolve('pen-cloned-v1')
    assert presets_for('ifql', task)['num_samples'] == 32
    assert presets_for('ifql', task, online=True)['num_samples'] == 128
    assert presets_for('ifql', suites.resolve('antmaze-large-play-v2'), online=True)['num_samples'] == 32


def _resolve(agent_name, env, log=None, **settings):
    """The members' first config and the lines resolve_members logs, through the run's own preset path."""
    from flowrl import suites
    from flowrl.registry.agent_loading import load_agent
    from flowrl.run.settings import RunSettings, check_settings, resolve_members
    s = RunSettings(agent=f'agents/{agent_name}.py', env_name=env, **settings)
    check_settings(s)
    logged = []
    members = resolve_members(s, load_agent(s.agent), suites.resolve(env), logged.append)
    return members.configs[0], logged


@pytest.mark.parametrize('agent_name, env, expected', [
    ('iql', 'cube-double-play-singletask-task3-v0', dict(alpha=0.3, actor_hidden_dims=(256,) * 4)),
    ('iql', 'antmaze-large-navigate-singletask-v0', dict(alpha=10.0, actor_hidden_dims=(512,) * 4)),
    ('rebrac', 'puzzle-3x3-play-singletask-task4-v0', dict(alpha_actor=0.3, alpha_critic=0.01)),
    ('rebrac', 'humanoidmaze-large-navigate-singletask-v0', dict(alpha_actor=0.01, alpha_critic=0.01, discount=0.995)),
    ('ifql', 'relocate-human-v1', dict(num_samples=128)),
])
def test_published_baseline_values_reach_the_run_config(agent_name, env, expected):
    config, logged = _resolve(agent_name, env)
    assert {k: config[k] for k in expected} == expected
    assert not any(line.startswith('No published') for line in logged)


def test_a_run_without_published_key_values_says_so_on_its_first_screen():
    _, logged = _resolve('rebrac', 'antmaze-large-play-v2')  # D4RL: the FQL paper took ReBRAC's numbers elsewhere
    line = next(line for line in logged if line.startswith('No published'))
    assert line == ('No published alpha_actor, alpha_critic for antmaze-large-play (configs/rebrac.py): the agent '
                    'defaults alpha_actor=0.0, alpha_critic=0.0 apply, not a value the paper ran here; pass '
                    '--agent.alpha_actor=VALUE --agent.alpha_critic=VALUE to set them.')
    _, logged = _resolve('iql', 'pointmaze-medium-navigate-singletask-v0')  # a dataset the FQL paper did not use
    assert 'No published alpha for pointmaze-medium-navigate (configs/iql.py): the agent default alpha=10.0 ' \
           'applies, not a value the paper ran here; pass --agent.alpha=VALUE to set it.' in logged


def test_only_the_key_values_the_user_did_not_set_are_named():
    _, logged = _resolve('rebrac', 'antmaze-large-play-v2', agent_overrides={'alpha_actor': '0.003'})
    assert [line for line in logged if line.startswith('No published')] == [
        'No published alpha_critic for antmaze-large-play (configs/rebrac.py): the agent default alpha_critic=0.0 '
        'applies, not a value the paper ran here; pass --agent.alpha_critic=VALUE to set it.']
    _, logged = _resolve('iql', 'antmaze-large-play-v2', sweep=['agent.alpha=3,10'])
    assert not any(line.startswith('No published') for line in logged)


def test_agents_without_key_values_never_warn():
    from flowrl import suites
    from flowrl.registry.presets import unpublished_key_values
    for name in ('flow_bc', 'sac'):
        assert unpublished_key_values(name, suites.resolve('pointmaze-medium-navigate')) == (), name
    assert unpublished_key_values('ifql', suites.resolve('halfcheetah-medium-v2')) == ('num_samples',)
    assert unpublished_key_values('fql', suites.resolve('halfcheetah-medium-v2')) == ('alpha',)
    assert unpublished_key_values('fql', suites.resolve('relocate-cloned-v1'), online=True) == ()


def test_the_documented_table_of_baseline_values_is_the_presets():
    """docs/ALGORITHMS.md's table of the FQL paper's Table 6 and configs/ say the same, row by row."""
    import pathlib
    import re

    from flowrl import suites
    from flowrl.registry.presets import presets_for
    text = (pathlib.Path(__file__).parent.parent / 'docs' / 'ALGORITHMS.md').read_text()
    rows = re.findall(r'^\| ([a-z0-9-]+) \| ([\d.]+)( \(4×256\))? \| \(([\d.]+), ([\d.]+)\) \| (\d+) \|$', text, re.M)
    assert len(rows) == 15
    for family, alpha, small, actor, critic, n in rows:
        task = suites.resolve(family)
        iql = presets_for('iql', task)
        assert iql['alpha'] == float(alpha), family
        assert iql.get('actor_hidden_dims', (512,) * 4) == ((256,) * 4 if small else (512,) * 4), family
        assert {k: presets_for('rebrac', task)[k] for k in ('alpha_actor', 'alpha_critic')} == dict(
            alpha_actor=float(actor), alpha_critic=float(critic)), family
        assert presets_for('ifql', task)['num_samples'] == int(n), family


@pytest.mark.parametrize('name', ['fql', 'iql', 'rebrac', 'ifql', 'qfql', 'flowq', 'qipo'])
def test_key_values_are_config_keys(name):
    keys = importlib.import_module(f'flowrl.configs.{name}').KEY_VALUES
    assert keys and set(keys) <= set(importlib.import_module(f'flowrl.agents.{name}').get_config()), name


@pytest.mark.parametrize('name', ['fql', 'qfql', 'iql', 'rebrac', 'ifql', 'flowq', 'qipo', 'sac'])
def test_shared_long_horizon_discount_is_preset_for_every_agent(name):
    from flowrl.configs import LONG_HORIZON_FAMILIES
    from flowrl.suites.ogbench_envs import EnvSpec
    from flowrl.registry.presets import presets_for
    from flowrl.suites.ogbench import OGBenchTask
    for family in LONG_HORIZON_FAMILIES:
        assert presets_for(name, OGBenchTask(EnvSpec(family, None)))['discount'] == 0.995, family
    assert 'discount' not in presets_for(name, OGBenchTask(EnvSpec('cube-double-play', None)))


def test_an_agents_own_preset_refines_the_shared_table():
    from flowrl.configs import with_shared
    table = with_shared({'antmaze-giant-navigate': dict(discount=0.99, alpha=3.0), 'scene-play': dict(alpha=1.0)})
    assert table['antmaze-giant-navigate'] == dict(discount=0.99, alpha=3.0)
    assert table['humanoidmaze-large-navigate'] == dict(discount=0.995)
    assert table['scene-play'] == dict(alpha=1.0)


@pytest.mark.parametrize('name', ['fql', 'qfql', 'iql', 'rebrac', 'ifql', 'flowq', 'qipo'])
def test_preset_keys_are_ogbench_environments(name):
    from flowrl.suites.ogbench_envs import parse_env_name
    for env in importlib.import_module(f'flowrl.configs.{name}').PRESETS:
        assert parse_env_name(env).short_name == env


@pytest.mark.parametrize('name', ['fql', 'qfql', 'iql', 'rebrac', 'ifql', 'flowq', 'qipo', 'sac'])
def test_d4rl_preset_keys_are_d4rl_names_without_version(name):
    from flowrl.suites.d4rl import ENTRIES
    families = {entry.name.rsplit('-v', 1)[0] for entry in ENTRIES.values()}
    module = importlib.import_module(f'flowrl.configs.{name}')
    for table in ('D4RL_PRESETS', 'D4RL_ONLINE_PRESETS'):
        assert set(getattr(module, table, {})) <= families


def test_a_copied_agent_file_keeps_its_presets(tmp_path):
    """Presets are looked up by the config's agent_name, not the file's name: my_fql.py is FQL."""
    import shutil

    from flowrl import suites
    from flowrl.registry.agent_loading import load_agent
    from flowrl.run.settings import RunSettings, resolve_members
    copy = tmp_path / 'my_fql.py'
    shutil.copy('agents/fql.py', copy)
    settings = RunSettings(agent=str(copy), env_name='cube-double-play')
    logged = []
    members = resolve_members(settings, load_agent(str(copy)), suites.resolve(settings.env_name), logged.append)
    assert members.configs[0].alpha == 300.0  # FQL's cube-double preset; its default is 10
    assert any('configs/fql.py' in line for line in logged)
