"""Offline-to-online fine-tuning: after `--offline_steps` updates, `--online_steps` environment
steps, one update after each (the authors' FQL `main.py`; docs/ALGORITHMS.md, "Offline-to-online fine-tuning").

Per online step and member: act in the member's own environment with the agent's
`explore_actions` (optional contract hook; `sample_actions` when absent), store the transition
(observation, action, reward, terminal = episode over, mask = 1 - terminated, next observation)
in the member's online buffer, then run one update on a batch drawn from dataset and online
transitions (flowrl.engine.replay: the authors' single buffer, or half and half with
`--balanced_sampling=1`).

The device part of a step is two compiled programs for all members: append the transitions
(`store`), then draw the batches, update, and compute the next actions with the updated agent;
the host steps the environments in between. That is two dispatches and one small transfer each
way per environment step.

Episodes: every reset of member m's environment at update u uses the seed (m's seed, u), and
episodes go on across checkpoints and evaluations, as in the authors' loop, so the transitions
do not depend on `--eval_interval` or `--save_interval`. A checkpoint records each member's
running episode (`MemberEnvs.record`: its reset seed, the actions taken so far in an array as long
as the time limit, the observation to act on) and its action queue (the chunk it executes and
how much of it was taken: flowrl.engine.action_queue, flowrl.run.online_steps); a resumed run resets
each environment with that seed and takes the same actions again (MuJoCo is deterministic),
checks that this gives the recorded observation bit for bit (else it stops: the episode cannot be
continued exactly), and goes on exactly as the uninterrupted run. Replaying costs at most one
episode of environment steps per member at a resume.
"""

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.engine import replay
from flowrl.engine.env_pool import EnvPool
from flowrl.errors import UserError
from flowrl.kit import contract
from flowrl.engine.evaluation import observation_dtype
from flowrl.engine.sampling import Sampler
from flowrl.engine.training import all_finite, member_mesh, member_program, over_members

STEP_DONATION = (1, 2)  # rngs and totals; the states are not: see `keep_if`
EXPLORATION_KEYS = ('exploration/success', 'exploration/episode_return', 'exploration/episode_length',
                    'exploration/episodes')
TRANSITION_KEYS = ('observations', 'actions', 'rewards', 'terminals', 'masks', 'next_observations')


def explore_function(agent):
    """The actions members take in their environments: the optional hook `explore_actions(state,
    observations, rng)` (e.g. SAC samples its policy where `sample_actions` gives its mode), else
    `sample_actions`, as the authors' loop calls it with temperature 1."""
    return contract.hook(agent, 'explore_actions')


def batch_source(balanced: bool, buffer_size: int, batch_size: int, horizon: int = 1):
    """(dataset, online buffer, rng) -> a training batch of `horizon`-step rows, as
    `--balanced_sampling` says (flowrl.engine.sampling)."""
    sampler = Sampler(batch_size, horizon)
    return lambda dataset, online, rng: sampler.from_dataset_and_online(dataset, online, rng, balanced, buffer_size)


def store(online, transition):
    """One member's buffer with its environment step's `transition` appended.

    Compiled as a program of its own, vmapped over members, ahead of the step that samples the
    buffer: XLA:CPU fuses a gather from an appended buffer with the append itself and then copies
    every buffer array to append in place (~170 ms per step for a 1M-row cube buffer against
    0.1 ms, measured 2026-12-04, jax 0.10.2); the same happens under lax.map or on a member
    sliced out of the stack."""
    return replay.append(online, jax.tree.map(lambda x: x[None], transition))


def draw(sample, online, rng, dataset):
    """One member's training batch (from `sample`) and keys: (batch, rng, update_rng, act_rng)."""
    rng, batch_rng, update_rng, act_rng = jax.random.split(rng, 4)
    return sample(dataset, online, batch_rng), rng, update_rng, act_rng


def update_and_act(update, act, state, totals, alive, batch, update_rng, act_rng, observation):
    """One member's update on `batch` and its next actions at `observation`. A member that is not
    alive, or whose metrics are non-finite, keeps its state (as in flowrl.engine.training.train_member).
    Returns (state, totals, first_bad: 0 if this update was non-finite else -1, actions)."""
    new_state, metrics = update(state, batch, update_rng)
    finite = all_finite(metrics)
    state = keep_if(alive & finite, new_state, state)
    totals = {k: totals[k] + jnp.asarray(metrics[k], jnp.float32) for k in totals}
    actions = act(state, observation[None], act_rng)[0]
    return state, totals, jnp.where(finite, -1, 0).astype(jnp.int32), actions


def keep_if(keep, new_state, state):
    """`new_state` where `keep`, else `state`: a select per leaf, not a `lax.cond`. XLA fuses each
    leaf's select into the elementwise kernel that computes the leaf (the optimizer step, the
    target average), which reads the old value anyway, so freezing costs no pass over the state
    of its own. A cond returns one of two whole states and copied all of it (~44 MB for FQL at
    paper size) every step. The step program does not donate the states either (STEP_DONATION):
    with the outputs written over the inputs, XLA copies each parameter that two kernels read
    (the optimizer step and the target average) before the first overwrites it, the same ~44 MB
    per step with or without the cond; fresh output buffers need no copy (tests/test_online.py
    checks the compiled program). The offline loop carries its state through a loop instead."""
    return jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_state, state)


FIRST_ACTIONS_STREAM = 1 << 20  # folded into a member's key for its first online actions


def first_member_actions(act, state, rng, observation):
    """Actions at the first observations of new episodes (before any online update), on a key
    folded from the member's without changing it: a checkpoint at the last offline update (a stop
    just before the first online step) holds no episodes, and the resumed run starts them again
    from the same keys, so that they are the same episodes and actions."""
    return rng, act(state, observation[None], jax.random.fold_in(rng, FIRST_ACTIONS_STREAM))[0]


class OnlineProgram:
    """The compiled online step and first-action programs for all members (members sharded over
    devices and run as `execution` says, like flowrl.engine.training.ChunkRunner)."""

    def __init__(self, agent, batch_size: int, execution: str, balanced: bool, buffer_size: int, placement=None,
                 horizon: int = 1):
        """`horizon`: steps per batch row (flowrl.engine.sampling; the run's ChunkRunner's)."""
        self.placement = placement  # flowrl.engine.placement.Placement: the run's member mesh (None: member_mesh)
        self.act = explore_function(agent)
        self.sample = batch_source(balanced, buffer_size, batch_size, horizon)
        self.execution = execution
        self._compiled = {}

    def _sharded(self, key, local, num_members, member_args, replicated_args=0, donate=()):
        """jit(shard_map(`local`)) over the member axis, compiled once per `key` (which must name
        `local`); `local` takes one device's member-stacked args, then the replicated ones."""
        if key not in self._compiled:
            self._compiled[key] = member_program(local, self._mesh(num_members), member_args, replicated_args, donate)
        return self._compiled[key]

    def _mesh(self, num_members: int):
        return member_mesh(num_members) if self.placement is None else self.placement.mesh

    def step(self, update, states, rngs, totals, alive, online, transitions, observations, dataset):
        """All members' device work for one environment step: `store` the transitions, then (one
        program) `draw` each member's batch and `update_and_act`. Returns (states, rngs, totals,
        online, first_bad, actions); the keys, totals and buffers are donated (not the states: `keep_if`)."""
        members = rngs.shape[0]
        online = self.append(online, transitions)

        def local(states, rngs, totals, alive, online, observations, dataset):
            batches, rngs, update_rngs, act_rngs = jax.vmap(lambda *m: draw(self.sample, *m, dataset))(online, rngs)
            learn = lambda *member: update_and_act(update, self.act, *member)
            states, totals, first_bad, actions = over_members(learn, self.execution)(
                states, totals, alive, batches, update_rngs, act_rngs, observations)
            return states, rngs, totals, first_bad, actions

        program = self._sharded(('step', members, update), local, members, member_args=6, replicated_args=1,
                                donate=STEP_DONATION)
        states, rngs, totals, first_bad, actions = program(states, rngs, totals, alive, online, observations, dataset)
        return states, rngs, totals, online, first_bad, actions

    def append(self, online, transitions):
        """All members' online buffers with one environment step's transitions [members, ...]
        appended (`store`, donated: written in place). `step` starts with it; alone, it stores
        steps that train nothing (the locomotion recipe's random steps)."""
        members = jax.tree.leaves(transitions)[0].shape[0]
        return self._sharded(('store', members), jax.vmap(store), members, member_args=2, donate=(0,))(
            online, transitions)

    def first_actions(self, states, rngs, observations):
        """(rngs, actions) of all members at their episodes' first observations."""
        local = over_members(lambda *member: first_member_actions(self.act, *member), self.execution)
        return self._sharded(('first', rngs.shape[0]), local, rngs.shape[0], member_args=3)(states, rngs, observations)


def empty_buffers(dataset: dict, num_members: int, capacity: int, sharding) -> replay.ReplayBuffer:
    """Member-stacked empty online buffers with the dataset's fields, built on the device."""
    one = jax.eval_shape(lambda: replay.empty_like(dataset, capacity))
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_members,) + x.shape, x.dtype), one)
    return jax.jit(lambda: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), stacked), out_shardings=sharding)()


def reset_seed(member_seed: int, step: int) -> int:
    """The reset seed of an online episode of the member with `member_seed` starting at update `step`
    (a stream apart from the evaluation episodes' seeds)."""
    return int(np.random.SeedSequence([member_seed, step, 1 << 30]).generate_state(1)[0])


class MemberEnvs:
    """One environment per member, stepped together; keeps each member's running episode (its
    reset seed and the actions taken so far, enough to replay it: `record` / `replay`) and the
    statistics of the episodes that ended since they were last read."""

    def __init__(self, make_env, member_seeds, workers: int = 1, reward_fn=None, training_dtype=None):
        self.seeds = list(member_seeds)
        self.pool = EnvPool(make_env, len(self.seeds), workers)
        self.reward_fn = reward_fn or (lambda r: r)
        observation_space, action_space, limit = self.pool.spaces()
        if limit is None:
            raise UserError('Online fine-tuning needs environments with a time limit (gymnasium\'s '
                            'max_episode_steps): checkpoints record the actions of every running episode, up to it.')
        count = len(self.seeds)
        # The dataset's dtype (None given: uint8 images, float32 states), checked against the space's.
        self.training_dtype = observation_dtype(np.zeros((), observation_space.dtype), training_dtype)
        self.observations = np.zeros((count,) + observation_space.shape, self.training_dtype)
        self.episode_seeds = np.zeros(count, np.uint32)
        self.actions_taken = np.zeros((count, limit) + action_space.shape, np.float32)
        self.returns, self.lengths = np.zeros(count), np.zeros(count, np.int64)
        self._ended = [[] for _ in range(count)]

    def restart(self, step: int) -> np.ndarray:
        """New episodes for every member (the running ones are cut); their first observations."""
        self.episode_seeds[:] = [reset_seed(s, step) for s in self.seeds]
        self.observations = self._as_trained(self.pool.reset(self.episode_seeds))
        self.returns[:], self.lengths[:] = 0, 0
        return self.observations

    def step(self, actions, step: int):
        """Steps every member's environment with `actions` at update `step`; returns (transitions
        [M, ...], the observations to act on next: the next observation, or a new episode's first
        one where the episode ended)."""
        actions = np.asarray(actions, np.float32)
        members = np.arange(len(self.seeds))
        self.actions_taken[members, self.lengths] = actions  # an episode past the time limit: IndexError
        next_obs, reward, terminated, truncated, success = self.pool.step(actions, np.ones(len(self.seeds), bool))
        next_obs = self._as_trained(next_obs)
        reward = self.reward_fn(np.asarray(reward, np.float32))
        done = terminated | truncated
        transitions = dict(observations=self.observations, actions=actions, rewards=reward,
                           terminals=done.astype(np.float32), masks=1.0 - terminated.astype(np.float32),
                           next_observations=next_obs)
        self.returns += reward
        self.lengths += 1
        for i in np.nonzero(done)[0]:
            self._ended[i].append((float(success[i]), float(self.returns[i]), float(self.lengths[i])))
            self.returns[i], self.lengths[i] = 0, 0
        observations = next_obs
        if done.any():
            seeds = np.asarray([reset_seed(s, step) for s in self.seeds], np.uint32)
            first = self._as_trained(self.pool.reset(seeds, done))
            observations = np.where(done.reshape((-1,) + (1,) * (next_obs.ndim - 1)), first, next_obs)
            self.episode_seeds[done] = seeds[done]
        self.observations = observations
        return transitions, observations

    def record(self) -> dict:
        """What continues the running episodes exactly (`replay`): per member the episode's reset
        seed, the actions taken so far [time limit, ...] and how many, and the observation to act on."""
        return dict(seeds=self.episode_seeds.copy(), actions=self.actions_taken.copy(),
                    taken=self.lengths.astype(np.int32), observations=self.observations.copy())

    def replay(self, record: dict) -> np.ndarray:
        """Continues the episodes of `record`: each environment is reset with its episode's seed and
        takes the recorded actions again (MuJoCo is deterministic), which must lead to the recorded
        observations bit for bit; returns and lengths are counted again on the way. Returns the
        observations. Raises if an environment does not reproduce its episode."""
        seeds, actions = np.asarray(record['seeds'], np.uint32), np.asarray(record['actions'], np.float32)
        taken = np.asarray(record['taken'], np.int64)
        observations = self._as_trained(self.pool.reset(seeds))
        self.returns[:], self.lengths[:] = 0, 0
        for t in range(int(taken.max(initial=0))):
            active = taken > t
            next_obs, reward, terminated, truncated, _ = self.pool.step(actions[:, t], active)
            if np.any((terminated | truncated) & active):
                raise RuntimeError(f'Replaying the online episodes of members {np.nonzero(active & (terminated | truncated))[0].tolist()} '
                                   f'ended them at time {t + 1}, before the checkpointed time: their environments are not '
                                   'deterministic, so the run cannot continue them exactly.')
            self.returns += np.where(active, self.reward_fn(np.asarray(reward, np.float32)), 0)
            observations = np.where(active.reshape((-1,) + (1,) * (observations.ndim - 1)),
                                    self._as_trained(next_obs), observations)
        self.lengths[:] = taken
        expected = np.asarray(record['observations'])
        different = [i for i in range(len(self.seeds)) if not np.array_equal(observations[i], expected[i])]
        if different:
            raise RuntimeError(f'Replaying the online episodes of members {different} from their reset seeds and actions '
                               'did not reproduce the checkpointed observations: their environments are not '
                               'deterministic, so the run cannot continue them exactly.')
        self.episode_seeds[:], self.actions_taken[:] = seeds, actions
        self.observations = observations
        return observations

    def _as_trained(self, observations):
        """Observations in the dtype the agent was trained and compiled on (flowrl.engine.evaluation)."""
        return observations.astype(observation_dtype(observations, self.training_dtype), copy=False)

    def statistics(self) -> dict:
        """Per member: mean success, return and length of the episodes that ended since the last
        call (NaN where none did) and how many ended; then forgets them."""
        columns = [np.asarray(e).reshape(-1, 3) for e in self._ended]
        means = np.asarray([c.mean(0) if len(c) else np.full(3, np.nan) for c in columns])
        self._ended = [[] for _ in self.seeds]
        counts = np.asarray([len(c) for c in columns], np.float64)
        return dict(zip(EXPLORATION_KEYS, (means[:, 0], means[:, 1], means[:, 2], counts)))

    def close(self):
        self.pool.close()
