"""Evaluation environments: results do not depend on how many worker processes step them."""

import functools
import importlib.metadata
import types

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.engine.env_pool import EnvPool
from flowrl.suites.ogbench_envs import make_env, parse_env_name


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
    from flowrl.suites import TaskSettings, resolve

    task = resolve('cube-single-play')
    default = make_env(task.spec).unwrapped._success_timing  # what this OGBench does when not told
    for requested, expected in ((None, default), ('pre', 'pre'), ('post', 'post')):
        settings = TaskSettings(success_timing=requested)
        assert task.env_factory(settings)().unwrapped._success_timing == expected
        assert task.description(settings)['success_timing'] == expected
    installed = importlib.metadata.version('ogbench')
    assert task.description(TaskSettings())['ogbench_version'] == installed
    with pytest.raises(UserError, match="--success_timing must be 'pre' or 'post'"):
        task.check_settings(TaskSettings(success_timing='after'), [])


def _noisy_linear_actions(state, observations, rng):
    """A stand-in agent's sample_actions: a matmul (as networks do) plus Gaussian noise."""
    noise = jax.random.normal(rng, observations.shape[:-1] + (3,))
    return jnp.tanh(observations @ state['w'] + 0.5 * noise)


@functools.cache
def _members():
    """Two members' states and the compiled policy, built once per module."""
    from flowrl.engine.evaluation import make_policy

    states = dict(w=jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 3)), jnp.float32))
    return states, make_policy(types.SimpleNamespace(sample_actions=_noisy_linear_actions))


def _evaluate(pool_size, members=None, step=7):
    from flowrl.engine.evaluation import EvalEnvs, run_episodes
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
    unbounded, created = _evaluate(pool_size=10)  # one environment per (member, episode): 2 x 5
    assert created == 10
    from flowrl.engine.env_pool import ENVS_PER_WORKER

    for size in (1, 3, 0):  # 0: the default size, ENVS_PER_WORKER for the one worker here
        stats, created = _evaluate(pool_size=size)
        assert created == (size or ENVS_PER_WORKER)
        for key, value in unbounded.items():
            np.testing.assert_array_equal(stats[key], value, err_msg=f'{key} with {size} env(s)')
    assert not np.array_equal(unbounded['episode_return'], _evaluate(pool_size=3, step=8)[0]['episode_return'])


def test_members_left_out_of_an_evaluation_get_nan_and_the_others_are_unchanged():
    everyone, _ = _evaluate(pool_size=3)
    only_second, _ = _evaluate(pool_size=3, members=[False, True])
    for key, value in only_second.items():
        assert np.isnan(value[0]) and value[1] == everyone[key][1], key


def test_default_env_count_is_bounded_by_the_workers_and_memory():
    from flowrl.engine.env_pool import ENV_MEMORY_BYTES, ENVS_PER_WORKER, default_env_count
    assert default_env_count(400, workers=64, memory_bytes=40 * ENV_MEMORY_BYTES) == 20  # half the memory
    assert default_env_count(400, workers=2, memory_bytes=10**12) == 2 * ENVS_PER_WORKER  # what 2 workers step
    assert default_env_count(400, workers=0, memory_bytes=10**12) == ENVS_PER_WORKER  # stepped in this process
    assert default_env_count(50, workers=64, memory_bytes=10**12) == 50  # no more than the episodes need
    assert default_env_count(400, workers=2, memory_bytes=0) == 1

# ---- pixels stay uint8 from the environment to the policy, in evaluation and online steps ----

class ImageEnv:
    """Renders 4x4x3 uint8 images, as OGBench's visual tasks do; episodes of 3 steps."""

    spec = types.SimpleNamespace(max_episode_steps=3)

    def __init__(self):
        import gymnasium

        self.observation_space = gymnasium.spaces.Box(0, 255, (4, 4, 3), np.uint8)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, seed=None):
        self.seed, self.time = seed, 0
        return self._image(), {}

    def step(self, action):
        self.time += 1
        return self._image(), 0.0, False, self.time == 3, {'success': 0.0}

    def _image(self):
        return np.full((4, 4, 3), (self.seed + 50 * self.time) % 256, np.uint8)


class StateEnv(ImageEnv):
    """float64 state observations, as OGBench's state-based tasks give them."""

    def __init__(self):
        import gymnasium

        super().__init__()
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float64)

    def _image(self):
        return np.full(3, self.seed + 0.5 * self.time, np.float64)


def _recording_agent(seen: list):
    """An agent that records the dtype of the observations each program is traced with."""

    def sample_actions(state, observations, rng):
        seen.append(('act', np.dtype(observations.dtype)))
        return jnp.zeros(observations.shape[:1] + (2,)) + state['w']

    def update(state, batch, rng):
        seen.append(('update', np.dtype(batch['observations'].dtype)))
        return state, dict(loss=jnp.zeros(()))

    return types.SimpleNamespace(sample_actions=sample_actions, update=update)


def test_the_pool_gives_observations_in_the_spaces_dtype():
    pool = EnvPool(ImageEnv, 2)
    assert pool.reset([1, 2]).dtype == np.uint8
    assert pool.step(np.zeros((2, 2)), np.ones(2, bool))[0].dtype == np.uint8
    assert EnvPool(StateEnv, 1).reset([1]).dtype == np.float64


def test_evaluation_traces_the_policy_on_the_dtype_training_used():
    import pytest

    from flowrl.errors import UserError
    from flowrl.engine.evaluation import EvalEnvs, make_policy, run_episodes

    states = dict(w=jnp.zeros((1,)))
    for env_class, trained in ((ImageEnv, np.uint8), (StateEnv, np.float32)):
        seen = []
        envs = EvalEnvs(env_class, num_members=1, episodes=2, max_envs=2, training_dtype=trained)
        stats = run_episodes(make_policy(_recording_agent(seen)), states, envs, [0], 0)
        assert stats['episode_length'][0] == 3
        assert seen == [('act', np.dtype(trained))]
    with pytest.raises(UserError, match='float64 observations and the agent was trained on uint8'):
        run_episodes(make_policy(_recording_agent([])), states,
                     EvalEnvs(StateEnv, 1, 1, max_envs=1, training_dtype=np.uint8), [0], 0)


def test_online_steps_trace_acting_and_updates_on_uint8_images():
    from flowrl.engine.online import MemberEnvs, OnlineProgram, empty_buffers
    from flowrl.engine.training import member_shardings

    images = np.arange(16 * 48, dtype=np.int64).reshape(16, 4, 4, 3).astype(np.uint8)
    dataset = dict(observations=images, next_observations=images, actions=np.zeros((16, 2), np.float32),
                   rewards=np.zeros(16, np.float32), terminals=np.zeros(16, np.float32),
                   masks=np.ones(16, np.float32))
    seen = []
    agent = _recording_agent(seen)
    program = OnlineProgram(agent, 4, 'auto', False, 16)
    envs = MemberEnvs(ImageEnv, [0, 1], training_dtype=np.uint8)
    states, rngs = dict(w=jnp.zeros((2, 1))), jax.random.split(jax.random.PRNGKey(0))
    rngs, actions = program.first_actions(states, rngs, envs.restart(step=0))
    online = empty_buffers(dataset, 2, 8, member_shardings(2)[0])
    totals, alive = dict(loss=jnp.zeros(2)), jnp.ones(2, bool)
    transitions, observations = envs.step(np.asarray(actions), 1)
    assert transitions['observations'].dtype == transitions['next_observations'].dtype == np.uint8
    program.step(agent.update, states, rngs, totals, alive, online, transitions,
                 observations, dataset)
    envs.close()
    assert {dtype for _, dtype in seen} == {np.dtype(np.uint8)} and len(seen) == 3


def test_an_unknown_amount_of_memory_leaves_the_pool_to_its_workers(monkeypatch):
    from flowrl import host_memory
    from flowrl.engine.env_pool import ENVS_PER_WORKER, default_env_count

    monkeypatch.setattr(host_memory, 'available_bytes', lambda: None)  # no /proc/meminfo, no sysconf
    assert default_env_count(400, workers=2) == 2 * ENVS_PER_WORKER
