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


class EvalEnvs:
    """A grid of `num_members x episodes` environments, created once and reused."""

    def __init__(self, make_env, num_members: int, episodes: int):
        self.num_members, self.episodes = num_members, episodes
        self.envs = [[make_env() for _ in range(episodes)] for _ in range(num_members)]


def episode_seed(member_seed: int, step: int, episode: int) -> int:
    """A reset seed unique to (member seed, evaluation step, episode), stable across resumes."""
    return int(np.random.SeedSequence([member_seed, step, episode]).generate_state(1)[0])


def make_policy(agent):
    """jit(vmap(sample_actions)) over the member axis: states [M], obs [M, E, d], keys [M]."""
    return jax.jit(jax.vmap(agent.sample_actions))


def run_episodes(policy, states, envs: EvalEnvs, member_seeds, step: int):
    """Runs one episode in every env; returns per-member arrays of success, return, length."""
    m, e = envs.num_members, envs.episodes
    obs = np.stack([[env.reset(seed=episode_seed(member_seeds[i], step, j))[0]
                     for j, env in enumerate(row)] for i, row in enumerate(envs.envs)]).astype(np.float32)
    active = np.ones((m, e), bool)
    returns, lengths, success = np.zeros((m, e)), np.zeros((m, e), np.int64), np.zeros((m, e))
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), step))(np.asarray(member_seeds))
    t = 0
    started = time.time()
    while active.any():
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
        actions = np.asarray(policy(states, obs, step_keys))
        for i, j in zip(*np.nonzero(active)):
            ob, reward, terminated, truncated, info = envs.envs[i][j].step(actions[i, j])
            obs[i, j] = ob
            returns[i, j] += reward
            lengths[i, j] += 1
            if terminated or truncated:
                active[i, j] = False
                success[i, j] = float(info.get('success', 0.0))
        t += 1
    env_steps = int(lengths.sum())
    return dict(success=success.mean(1), episode_return=returns.mean(1), episode_length=lengths.mean(1),
                env_steps_per_s=np.full(m, env_steps / max(time.time() - started, 1e-9)))


def final_score(success_history) -> float:
    """The FQL paper's score: mean success of the last three evaluations."""
    return float(np.mean(success_history[-3:])) if len(success_history) else float('nan')
