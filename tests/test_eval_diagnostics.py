"""The optional `action_diagnostics(state, observations, rng) -> dict of scalars` hook of the agent
contract: evaluated on each member's first evaluation observations, returned beside success."""

import types

import gymnasium
import jax.numpy as jnp
import numpy as np
import pytest

from flowrl.engine.evaluation import EvalEnvs, episode_seed, make_diagnostics, make_policy, run_episodes


class OneStepEnv:
    """Observation [seed / 1e9, 1]; every episode ends after one step with success."""
    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,))

    def reset(self, seed):
        return np.array([seed / 1e9, 1.0], np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {'success': 1.0}


def _agent(with_hook):
    agent = types.SimpleNamespace(sample_actions=lambda state, obs, rng: jnp.zeros(obs.shape[:-1] + (1,)))
    if with_hook:
        agent.action_diagnostics = lambda state, obs, rng: {'first_obs_sum': state['scale'] * jnp.sum(obs)}
    return agent


def test_diagnostics_are_computed_on_each_members_first_observations():
    seeds, step, episodes = [3, 4], 7, 2
    states = {'scale': jnp.array([1.0, 10.0])}
    for with_hook in (True, False):
        agent = _agent(with_hook)
        envs = EvalEnvs(OneStepEnv, num_members=2, episodes=episodes)
        stats = run_episodes(make_policy(agent), states, envs, seeds, step, make_diagnostics(agent))
        assert np.all(stats['success'] == 1.0)
        if not with_hook:
            assert make_diagnostics(agent) is None and 'first_obs_sum' not in stats
            continue
        for i, seed in enumerate(seeds):
            first_obs = sum(episode_seed(seed, step, j) / 1e9 + 1.0 for j in range(episodes))
            assert float(stats['first_obs_sum'][i]) == pytest.approx(float(states['scale'][i]) * first_obs, rel=1e-6)
