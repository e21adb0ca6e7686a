"""Evaluation environments: results do not depend on how many worker processes step them."""

import functools
import importlib.metadata
import types

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.env_pool import EnvPool
from flowrl.envs import make_env, parse_env_name


def _rollout(workers, steps=30):
    pool = EnvPool(functools.partial(make_env, parse_env_name('cube-single-play')), 3, workers)
    try:
        obs = [pool.reset([11, 12, 13])]
        rng = np.random.default_rng(0)
        active = np.array([True, False, True])
        for _ in range(steps):
            new_obs, reward, terminated, truncated, success = pool.step(rng.uniform(-1, 1, (3, 5)), active)
            obs.append(new_obs)
            assert not new_obs[1].any() and reward[1] == 0  # inactive envs are not stepped
        return np.stack(obs)
    finally:
        pool.close()


def test_two_workers_step_exactly_like_one_process():
    single, split = _rollout(1), _rollout(2)
    assert single.shape == (31, 3, 28)
    np.testing.assert_array_equal(single, split)
    assert not np.array_equal(single[0, 0], single[0, 2])  # different reset seeds


# ---- success timing: OGBench's default unless the run asks for another, recorded with the run ----

def test_success_timing_reaches_the_env_and_is_recorded():
    import pytest

    from flowrl.errors import UserError
    from flowrl.runner import RunSettings
    from flowrl.suites import resolve

    task = resolve('cube-single-play')
    default = make_env(task.spec).unwrapped._success_timing  # what this OGBench does when not told
    for requested, expected in ((None, default), ('pre', 'pre'), ('post', 'post')):
        settings = RunSettings(success_timing=requested)
        assert task.env_factory(settings)().unwrapped._success_timing == expected
        assert task.description(settings)['success_timing'] == expected
    installed = importlib.metadata.version('ogbench')
    assert task.description(RunSettings())['ogbench_version'] == installed
    with pytest.raises(UserError, match="--success_timing must be 'pre' or 'post'"):
        task.check_settings(RunSettings(success_timing='after'), [])


def _noisy_linear_actions(state, observations, rng):
    """A stand-in agent's sample_actions: a matmul (as networks do) plus Gaussian noise."""
    noise = jax.random.normal(rng, observations.shape[:-1] + (3,))
    return jnp.tanh(observations @ state['w'] + 0.5 * noise)


@functools.cache
def _members():
    """Two members' states and the compiled policy, built once per module."""
    from flowrl.evaluation import make_policy

    states = dict(w=jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 3)), jnp.float32))
    return states, make_policy(types.SimpleNamespace(sample_actions=_noisy_linear_actions))


def _evaluate(pool_size, members=None, step=7):
    from flowrl.evaluation import EvalEnvs, run_episodes
    from flowrl.testing import FakeEnv

    created = []
    def make_fake_env():
        created.append(1)
        return FakeEnv()

    states, policy = _members()
    envs = EvalEnvs(make_fake_env, num_members=2, episodes=5, max_envs=pool_size)
    stats = run_episodes(policy, states, envs, [0, 1], step, members=members)
    return {k: v for k, v in stats.items() if k != 'env_steps_per_s'}, len(created)


def test_evaluation_results_do_not_depend_on_how_many_envs_are_alive():
    unbounded, created = _evaluate(pool_size=0)
    assert created == 10  # 2 members x 5 episodes fit this machine's default bound
    for size in (1, 3):
        stats, created = _evaluate(pool_size=size)
        assert created == size
        for key, value in unbounded.items():
            np.testing.assert_array_equal(stats[key], value, err_msg=f'{key} with {size} env(s)')
    assert not np.array_equal(unbounded['episode_return'], _evaluate(pool_size=3, step=8)[0]['episode_return'])


def test_members_left_out_of_an_evaluation_get_nan_and_the_others_are_unchanged():
    everyone, _ = _evaluate(pool_size=3)
    only_second, _ = _evaluate(pool_size=3, members=[False, True])
    for key, value in only_second.items():
        assert np.isnan(value[0]) and value[1] == everyone[key][1], key


def test_default_env_count_is_bounded_by_memory():
    from flowrl.env_pool import ENV_MEMORY_BYTES, default_env_count
    assert default_env_count(400, memory_bytes=40 * ENV_MEMORY_BYTES) == 20  # half the memory
    assert default_env_count(50, memory_bytes=10**12) == 50  # no more than the episodes need
    assert default_env_count(400, memory_bytes=0) == 1