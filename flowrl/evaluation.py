"""Evaluation: every member's policy on a batch of environments, stepped together.

All (member x episode) environments advance in lock-step; each env step is one jitted,
member-vmapped `sample_actions` call on the whole observation batch. Environments that
finished stop stepping (their rows still ride along in the batch, which keeps shapes static).
Seeds for environment resets and policy noise derive from (member seed, training step), so an
evaluation is reproducible and a resumed run evaluates exactly as an uninterrupted one.
"""

import time

import jax
import numpy as np

from flowrl.env_pool import EnvPool
from flowrl.training import over_members, resolve_member_execution


class EvalEnvs:
    """`num_members x episodes` environments in an EnvPool, created once and reused."""

    def __init__(self, make_env, num_members: int, episodes: int, workers: int = 1):
        self.num_members, self.episodes = num_members, episodes
        self.pool = EnvPool(make_env, num_members * episodes, workers)


def episode_seed(member_seed: int, step: int, episode: int) -> int:
    """A reset seed unique to (member seed, evaluation step, episode), stable across resumes."""
    return int(np.random.SeedSequence([member_seed, step, episode]).generate_state(1)[0])


def make_policy(agent, execution: str = 'auto'):
    """jit(sample_actions over the member axis, run as `execution` says (flowrl.training)):
    states [M], obs [M, E, d], keys [M]."""
    return jax.jit(over_members(agent.sample_actions, resolve_member_execution(execution)))


def make_diagnostics(agent, execution: str = 'auto'):
    """Like make_policy, for the optional contract hook `action_diagnostics(state, observations,
    rng) -> dict of scalars`; None when the agent lacks it."""
    hook = getattr(agent, 'action_diagnostics', None)
    return None if hook is None else jax.jit(over_members(hook, resolve_member_execution(execution)))


def run_episodes(policy, states, envs: EvalEnvs, member_seeds, step: int, diagnostics=None):
    """Runs one episode in every env; returns per-member arrays of success, return, length, and
    the scalars of `diagnostics` (see make_diagnostics) on the first observations."""
    m, e = envs.num_members, envs.episodes
    seeds = [episode_seed(member_seeds[i], step, j) for i in range(m) for j in range(e)]
    obs = envs.pool.reset(seeds).reshape(m, e, -1)
    active = np.ones(m * e, bool)
    returns, lengths, success = np.zeros(m * e), np.zeros(m * e, np.int64), np.zeros(m * e)
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), step))(np.asarray(member_seeds))
    extra = {}  # the agent's diagnostics, on the first observations with the first step's keys
    if diagnostics is not None:
        extra = jax.device_get(diagnostics(states, obs, jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)))
    started, t = time.time(), 0
    while active.any():
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
        actions = np.asarray(policy(states, obs, step_keys)).reshape(m * e, -1)
        new_obs, reward, done, final_success = envs.pool.step(actions, active)
        obs = np.where(active[:, None], new_obs, obs.reshape(m * e, -1)).reshape(m, e, -1)
        returns += reward
        lengths += active
        success = np.where(active & done, final_success, success)
        active &= ~done
        t += 1
    rate = lengths.sum() / max(time.time() - started, 1e-9)
    per_member = lambda x: x.reshape(m, e).mean(1)
    return dict(success=per_member(success), episode_return=per_member(returns),
                episode_length=per_member(lengths.astype(float)), env_steps_per_s=np.full(m, rate), **extra)


def final_score(success_history) -> float:
    """The FQL paper's score: mean success of the last three evaluations."""
    return float(np.mean(success_history[-3:])) if len(success_history) else float('nan')
