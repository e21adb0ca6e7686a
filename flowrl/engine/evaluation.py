"""Evaluation: every member's policy on a bounded pool of environments reused across episodes.

The (member, episode) pairs of an evaluation wait in a queue; a pool of environments whose
size is bounded by the machine's cores and memory (`env_pool.default_env_count`, or `--eval_envs`) takes them in
order: when an environment finishes its episode it starts the next pending one. Memory is
bounded by the pool, not by members x episodes.

Results do not depend on the pool size nor on which environment ran an episode:
- each episode is reset with its own seed (member seed, training step, episode);
- its action noise at time t comes from the key (member seed, step, episode, t);
- the policy runs on blocks of BLOCK episode slots per member, always of that shape, one
  jitted, member-vmapped call per block with running episodes. The shape matters: XLA's CPU
  matmuls give a row results that differ in the last bit with the batch width, but not with
  the row's position in a batch of fixed width (checked for FQL, IFQL and QFQL).
With --horizon_length=H the policy returns chunks of H actions (flowrl.engine.action_queue) and
each episode executes them open loop: at episode time t with t % H == 0 its slot takes a new
chunk, sampled with the key of (member seed, step, episode, t), then plays its H actions one per
step; an episode that ends mid-chunk drops the rest, and the next episode in the slot starts with
a new chunk. The policy runs only on the blocks where some running slot needs a new chunk, so a
chunk costs one call, not H (H = 1: every running slot, every step, as without chunks).
Seeds derive from (member seed, training step), so a resumed run evaluates exactly as an
uninterrupted one. A stop request (flowrl.stopping) abandons an evaluation between two steps
of its environments: the run resumes from the checkpoint saved before it and evaluates again.
"""

import collections
import time

import jax
import numpy as np

from flowrl import stopping
from flowrl.engine.action_queue import as_chunks
from flowrl.engine.env_pool import ENV_MEMORY_BYTES, EnvPool, default_env_count
from flowrl.errors import UserError
from flowrl.kit import contract
from flowrl.engine.training import member_program, over_members, resolve_member_execution

BLOCK = 8  # episode slots per member in one policy call


class EvalEnvs:
    """A pool of at most `max_envs` environments (0: `default_env_count`) for evaluations of
    `num_members x episodes` episodes; created once and reused."""

    def __init__(self, make_env, num_members: int, episodes: int, workers: int = 1, max_envs: int = 0,
                 training_dtype=None):
        self.num_members, self.episodes = num_members, episodes
        needed = num_members * episodes
        self.size = min(needed, max_envs) if max_envs else default_env_count(needed, workers)
        self.pool = EnvPool(make_env, self.size, workers)
        self.training_dtype = training_dtype  # the dataset's: what training compiled the agent for

    def describe(self) -> str:
        return (f'Evaluation: {self.size} environment(s) alive at once for {self.num_members} x {self.episodes} '
                f'episodes (~{self.size * ENV_MEMORY_BYTES / 2**30:.1f} GiB; --eval_envs sets it).')


def episode_seed(member_seed: int, step: int, episode: int) -> int:
    """A reset seed unique to (member seed, evaluation step, episode), stable across resumes."""
    return int(np.random.SeedSequence([member_seed, step, episode]).generate_state(1)[0])


def make_policy(agent, execution: str = 'auto'):
    """Actions for a block of episode slots of every member: states [M], observations [M, B, d],
    base keys [M] (per member and step), episode indices and episode times [M, B]; members run
    as `execution` says (flowrl.engine.training).

    Each observation is sampled alone (vmap over rows) with the key (base key, episode, t), so
    its noise does not depend on the other rows or on the slot it sits in."""

    def one(state, observation, key):
        return agent.sample_actions(state, observation[None], key)[0]

    def member_block(state, observations, base_key, episodes, times):
        keys = jax.vmap(lambda e, t: jax.random.fold_in(jax.random.fold_in(base_key, e), t))(episodes, times)
        return jax.vmap(one, in_axes=(None, 0, 0))(state, observations, keys)

    return member_program(over_members(member_block, resolve_member_execution(execution)), None, member_args=5)


def make_diagnostics(agent, execution: str = 'auto'):
    """Like make_policy, for the optional contract hook `action_diagnostics(state, observations,
    rng) -> dict of scalars`; None when the agent lacks it."""
    diagnostics = contract.hook(agent, 'action_diagnostics')
    return None if diagnostics is None else member_program(
        over_members(diagnostics, resolve_member_execution(execution)), None, member_args=3)


def member_keys(member_seeds, step: int):
    return jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), step))(np.asarray(member_seeds))


class _Slots:
    """Episode slots [member, column], the environment running each one, and the chunk of
    actions each one executes (`chunks` [member, column, H, A], from the first policy call)."""

    def __init__(self, num_members: int, episodes: int, num_envs: int, horizon_length: int = 1):
        self.episodes, self.horizon_length = episodes, horizon_length
        self.chunks = None
        width = -(-episodes // BLOCK) * BLOCK
        self.episode = np.zeros((num_members, width), np.int32)
        self.time = np.zeros((num_members, width), np.int32)
        self.occupied = np.zeros((num_members, width), bool)
        self.member = np.full(num_envs, -1)  # slot of each env, member -1 when idle
        self.column = np.zeros(num_envs, np.int64)

    def start(self, env: int, member: int, episode: int):
        column = int(np.argmin(self.occupied[member]))  # the first free column
        self.member[env], self.column[env] = member, column
        self.episode[member, column], self.time[member, column] = episode, 0
        self.occupied[member, column] = True

    def finish(self, envs):
        self.occupied[self.member[envs], self.column[envs]] = False
        self.member[envs] = -1

    def needing_chunks(self):
        """[member, column] bool: the running episodes at the start of a chunk (t % H == 0)."""
        return self.occupied & (self.time % self.horizon_length == 0)

    def blocks(self, wanted):
        """Column slices of the blocks where some slot is `wanted` [member, column]."""
        starts = range(0, wanted.shape[1], BLOCK)
        return [slice(b, b + BLOCK) for b in starts if wanted[:, b:b + BLOCK].any()]

    def receive(self, block: slice, chunks, needed):
        """Keeps the new `chunks` [member, BLOCK, H, A] of `block` where `needed`, the others' as they were."""
        if self.chunks is None:
            self.chunks = np.zeros(self.occupied.shape + chunks.shape[2:], chunks.dtype)
        self.chunks[:, block] = np.where(needed[:, block, None, None], chunks, self.chunks[:, block])

    def actions(self, members, columns):
        """The actions the slots (members, columns) take now: action t % H of their chunks."""
        return self.chunks[members, columns, self.time[members, columns] % self.horizon_length]


def run_episodes(policy, states, envs: EvalEnvs, member_seeds, step: int, diagnostics=None, members=None,
                 horizon_length: int = 1):
    """Runs `envs.episodes` episodes for every member (or those where `members` is True), acting
    on chunks of `horizon_length` actions (see above); returns per-member arrays of success,
    return, length and the scalars of `diagnostics` (see make_diagnostics) on the episodes' first
    observations (NaN for members not evaluated)."""
    m, e, pool = envs.num_members, envs.episodes, envs.pool
    members = np.ones(m, bool) if members is None else np.asarray(members, bool)
    pending = collections.deque((i, j) for j in range(e) for i in range(m) if members[i])  # members take turns
    slots = _Slots(m, e, envs.size, horizon_length)
    returns, lengths, success = np.zeros((m, e)), np.zeros((m, e), np.int64), np.zeros((m, e))
    base_keys, obs, first_obs = member_keys(member_seeds, step), None, None
    started = time.time()
    while True:
        stopping.raise_if_requested()
        obs, first_obs = _start_pending(pool, slots, pending, obs, first_obs, member_seeds, step,
                                        envs.training_dtype)
        running = slots.member >= 0
        if not running.any():
            break
        _take_new_chunks(policy, states, obs, base_keys, slots)
        rows, cols = slots.member[running], slots.column[running]
        env_actions = np.zeros((envs.size,) + slots.chunks.shape[3:], slots.chunks.dtype)
        env_actions[running] = slots.actions(rows, cols)
        new_obs, reward, terminated, truncated, final_success = pool.step(env_actions, running)
        done = terminated | truncated
        episodes = slots.episode[rows, cols]
        obs[rows, cols] = new_obs[running]
        returns[rows, episodes] += reward[running]
        lengths[rows, episodes] += 1
        slots.time[rows, cols] += 1
        ended = done[running]
        success[rows[ended], episodes[ended]] = final_success[running][ended]
        slots.finish(np.nonzero(running)[0][ended])
    rate = lengths.sum() / max(time.time() - started, 1e-9)
    extra = {}  # the agent's diagnostics, on every episode's first observation with the first step's keys
    if diagnostics is not None and first_obs is not None:
        extra = jax.device_get(diagnostics(states, first_obs, jax.vmap(lambda k: jax.random.fold_in(k, 0))(base_keys)))
    per_member = lambda x: np.where(members, x.mean(1), np.nan)
    return dict(success=per_member(success), episode_return=per_member(returns),
                episode_length=per_member(lengths.astype(float)), env_steps_per_s=np.full(m, rate),
                **{k: np.where(members, v, np.nan) for k, v in extra.items()})


def _start_pending(pool, slots: _Slots, pending, obs, first_obs, member_seeds, step, training_dtype=None):
    """Gives each idle environment the next pending (member, episode) and resets it with the
    episode's seed; returns the observation grid [M, width, d] with the new first observations,
    and every episode's first observation [M, episodes, d], in the dtype `observation_dtype` picks."""
    idle = np.nonzero(slots.member < 0)[0][:len(pending)]
    if not len(idle):
        return obs, first_obs
    seeds, selected = np.zeros(len(slots.member), np.uint32), np.zeros(len(slots.member), bool)
    for env in idle:
        member, episode = pending.popleft()
        slots.start(env, member, episode)
        seeds[env], selected[env] = episode_seed(member_seeds[member], step, episode), True
    first = pool.reset(seeds, selected)
    if obs is None:
        dtype = observation_dtype(first, training_dtype)
        obs = np.zeros(slots.occupied.shape + first.shape[1:], dtype)
        first_obs = np.zeros((obs.shape[0], slots.episodes) + first.shape[1:], dtype)
    members, columns = slots.member[idle], slots.column[idle]
    obs[members, columns] = first[idle]
    first_obs[members, slots.episode[members, columns]] = first[idle]
    return obs, first_obs


def observation_dtype(observations, training_dtype=None) -> np.dtype:
    """The dtype a policy receives `observations` in, so that it runs the program training compiled:
    `training_dtype` (the dataset's) when given, else uint8 for images (kept as the environment
    renders them: the encoder scales them) and float32 for states. Rounding float observations
    into an integer dtype would change them, so that is refused."""
    if training_dtype is None:
        return np.dtype(np.uint8 if observations.dtype == np.uint8 else np.float32)
    if not np.can_cast(observations.dtype, training_dtype, 'same_kind'):
        raise UserError(f'The environment gives {observations.dtype} observations and the agent was trained on '
                        f'{np.dtype(training_dtype)} ones; use an environment whose observations are the dataset\'s.')
    return np.dtype(training_dtype)


def _take_new_chunks(policy, states, obs, base_keys, slots: _Slots):
    """New chunks for the running slots at the start of a chunk, from one policy call per block
    that holds one; every block is dispatched before any result is pulled to the host."""
    needed = slots.needing_chunks()
    blocks = slots.blocks(needed)
    outputs = [policy(states, obs[:, b], base_keys, slots.episode[:, b], slots.time[:, b]) for b in blocks]
    for b, out in zip(blocks, outputs):
        slots.receive(b, as_chunks(out, slots.horizon_length), needed)
