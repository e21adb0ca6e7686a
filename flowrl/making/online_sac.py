"""An agent trained from scratch in an environment through the engine's online path: the pieces
`main.py --online_steps` runs (flowrl.engine.online.MemberEnvs and OnlineProgram, the on-device
replay buffer of flowrl.engine.replay, flowrl.engine.checkpoints), for one member and with no
dataset beside the buffer (a dataset of no rows: `flowrl.engine.sampling` then samples the
buffer alone). The locomotion recipe trains its SAC with it (flowrl.making.locomotion).

Per environment step (`step`): the environment takes the pending action (MemberEnvs: reset seeds
from the step, masks = 1 - terminated, episode ends = terminated or truncated), then either the
transition is only stored (`OnlineProgram.append`: the random steps before learning starts) or
the compiled online step stores it, updates once on a batch drawn from the buffer and computes
the next action with the updated agent (`OnlineProgram.step`).

A checkpoint (`save`) holds the agent state, its key, the buffer and the running episode (its
reset seed, the actions so far and the next one), as a run's online checkpoint does; `restore`
replays that episode, so the steps after it are those of an uninterrupted run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flowrl.engine import checkpoints, replay
from flowrl.engine.online import TRANSITION_KEYS, MemberEnvs, OnlineProgram, empty_buffers
from flowrl.engine.training import metric_names
from flowrl.engine.sampling import Sampler

EXECUTION = 'vmap'  # one member: over_members runs it without a member axis either way
ALIVE = np.ones(1, bool)


class OnlineTraining:
    """One agent, its environment and its replay buffer of `capacity` rows (every transition kept
    while it fits: the locomotion recipe's medium-replay dataset is the buffer's first rows)."""

    def __init__(self, agent, config, make_env, seed: int, capacity: int, batch_size: int):
        self.agent, self.capacity = agent, capacity
        self.envs = MemberEnvs(make_env, [seed], training_dtype=np.float32)
        observation_shape, action_shape = self.envs.observations.shape[1:], self.envs.actions_taken.shape[2:]
        self.dataset = no_rows(observation_shape, action_shape)
        self.program = OnlineProgram(agent, batch_size, EXECUTION, balanced=False, buffer_size=capacity)
        example = dict(observations=np.zeros((1,) + observation_shape, np.float32),
                       actions=np.zeros((1,) + action_shape, np.float32))
        # Copied leaf by leaf: init's targets share their params' buffers.
        state = agent.init(jax.random.PRNGKey(seed), example, config)
        self.states = jax.tree.map(lambda x: jnp.array(x)[None], state)
        self.rngs = jax.random.PRNGKey(seed + 1)[None]
        self.buffers = empty_buffers(self.dataset, 1, capacity, None)
        one_member = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), self.states)
        batch_shapes = {k: jax.ShapeDtypeStruct((batch_size,) + v.shape[1:], v.dtype) for k, v in self.dataset.items()}
        self.totals = {k: jnp.zeros((1,), jnp.float32)
                       for k in metric_names(agent.update, one_member, batch_shapes, Sampler(batch_size))}
        self.actions = None  # [1, action]: what the environment takes next

    @property
    def state(self):
        """The agent's state (the member's, without the member axis)."""
        return jax.tree.map(lambda x: x[0], self.states)

    def start(self, step: int, first_action) -> None:
        """The first episode, begun at `step`, and the action it starts with."""
        self.envs.restart(step)
        self.actions = np.asarray(first_action, np.float32)[None]

    def step(self, step: int, learn: bool, next_action=None) -> dict:
        """Environment step `step` with the pending action; the transition stored, and with `learn`
        one update and the agent's next action (else `next_action` is taken next). Returns the
        transition (host arrays, one row)."""
        transitions, observations = self.envs.step(self.actions, step)
        if not learn:
            self.buffers = self.program.append(self.buffers, transitions)
            self.actions = np.asarray(next_action, np.float32)[None]
            return transitions
        self.states, self.rngs, self.totals, self.buffers, first_bad, actions = self.program.step(
            self.agent.update, self.states, self.rngs, self.totals, ALIVE, self.buffers, transitions, observations,
            self.dataset)
        self.actions = np.asarray(actions)
        if int(first_bad[0]) >= 0:
            raise RuntimeError(f'The update at environment step {step} gave non-finite metrics; the training stopped '
                               'there (its state is the one before that update).')
        return transitions

    def filled(self) -> dict:
        """The buffer's transitions so far (host arrays, oldest first; every one while it has not wrapped)."""
        buffer = jax.device_get(self.buffers)
        size = int(buffer.size[0])
        return {k: v[0, :size] for k, v in buffer.data.items()}

    # -- checkpoints ---------------------------------------------------------------------
    def _tree(self) -> dict:
        episodes = dict(self.envs.record(), next_actions=self.actions)
        return dict(states=self.states, rngs=self.rngs, buffers=self.buffers,
                    episodes={k: jnp.asarray(v) for k, v in episodes.items()})

    def save(self, directory, step: int, attachments: dict) -> None:
        checkpoints.save(directory, step, self._tree(), attachments)

    def restore(self, directory, step: int, saved_capacity: int) -> None:
        """Continues from checkpoint `step` (checked by the caller), whose buffer has `saved_capacity`
        rows (a run continued with more steps than it started with gets a larger buffer)."""
        self.actions = np.zeros_like(self.envs.actions_taken[:, 0])  # shapes only: read from the checkpoint
        like = self._tree()
        like['buffers'] = empty_buffers(self.dataset, 1, saved_capacity, None)
        tree = checkpoints.read(directory, like, step)
        self.states, self.rngs = tree['states'], tree['rngs']
        self.buffers = grown(tree['buffers'], self.capacity)
        episodes = jax.device_get(tree['episodes'])
        self.actions = np.asarray(episodes.pop('next_actions'))
        self.envs.replay(episodes)

    def close(self) -> None:
        self.envs.close()


def no_rows(observation_shape: tuple, action_shape: tuple) -> dict:
    """A dataset of no transitions with the fields and row shapes of the engine's online ones."""
    shapes = dict(observations=observation_shape, actions=action_shape, rewards=(), terminals=(), masks=(),
                  next_observations=observation_shape)
    return {k: np.zeros((0,) + tuple(shapes[k]), np.float32) for k in TRANSITION_KEYS}


def grown(buffers: replay.ReplayBuffer, capacity: int) -> replay.ReplayBuffer:
    """Member-stacked buffers with `capacity` rows, holding the same transitions at the same rows
    (never wrapped, and no more transitions than `capacity`: the recipe's buffer holds every step
    it was made for, and a continued run is never shorter than the steps it has taken)."""
    rows = next(iter(buffers.data.values())).shape[1]
    if rows == capacity:
        return buffers
    kept = min(rows, capacity)
    data = {k: jnp.zeros((v.shape[0], capacity) + v.shape[2:], v.dtype).at[:, :kept].set(v[:, :kept])
            for k, v in buffers.data.items()}
    return buffers.replace(data=data)
