"""Evaluation environments: results do not depend on how many worker processes step them."""

import functools
import importlib.metadata

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
            new_obs, reward, done, success = pool.step(rng.uniform(-1, 1, (3, 5)), active)
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
    from flowrl.runner import RunSettings, env_factory, ogbench_description

    spec = parse_env_name('cube-single-play')
    default = make_env(spec).unwrapped._success_timing  # what this OGBench does when not told
    for requested, expected in ((None, default), ('pre', 'pre'), ('post', 'post')):
        settings = RunSettings(success_timing=requested)
        assert env_factory(settings, spec)().unwrapped._success_timing == expected
        assert ogbench_description(settings, spec)['success_timing'] == expected
    installed = importlib.metadata.version('ogbench')
    assert ogbench_description(RunSettings(), spec)['ogbench_version'] == installed
    with pytest.raises(UserError, match="--success_timing must be 'pre' or 'post'"):
        env_factory(RunSettings(success_timing='after'), spec)
