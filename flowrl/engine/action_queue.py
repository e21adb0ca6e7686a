"""Acting on chunks (`--horizon_length=H`): what an agent's actions mean and the queue that
executes them open loop (docs/DESIGN.md, "Acting on chunks").

The convention: with H > 1 an agent's `sample_actions(state, observations [B, ...], rng)` (and
`explore_actions`) returns [B, H * A], the chunk of H actions flattened time-major, so that
`reshape(B, H, A)[:, t]` is action t of the chunk. With H = 1 it is today's [B, A].

`ActionQueues` is the host-side queue of online acting, one per member (as the Q-chunking code's
`action_queue`): the chunk being executed [H, A] and how many of its actions were taken. A member
takes the next action of its chunk at every environment step; once the chunk is used up, or its
episode ended, it needs a new chunk (sampled by the caller at the member's next observation).
Evaluation keeps its own chunks per episode slot (flowrl.engine.evaluation), at the same rule.
"""

import dataclasses

import numpy as np


def as_chunks(actions, horizon_length: int, action_size: int | None = None) -> np.ndarray:
    """[..., H * A] actions of the convention above as [..., H, A] (H = 1: [..., 1, A]); with
    `action_size`, A must be it (an agent that ignores --horizon_length is refused, not misread)."""
    actions = np.asarray(actions)
    size = actions.shape[-1]
    if size % horizon_length or (action_size is not None and size != horizon_length * action_size):
        expected = 'horizon_length * action_dim' if action_size is None else f'{horizon_length} x {action_size}'
        raise ValueError(f'Actions of size {size} are not chunks of {horizon_length} actions: an agent acting on '
                         f'chunks returns [batch, {expected}] (flowrl.engine.action_queue).')
    return actions.reshape(actions.shape[:-1] + (horizon_length, size // horizon_length))


# The checkpoint record of a queue of one action (H = 1) is that action, under the name and shape of the
# checkpoints written before chunking existed, so that they still resume; longer queues add the index.
SINGLE_ACTION_KEY = 'next_actions'
CHUNK_KEYS = ('action_chunks', 'chunk_taken')


@dataclasses.dataclass(frozen=True)
class ActionQueues:
    """Per member: `chunks` [N, H, A], the chunk being executed, and `taken` [N], how many of its
    actions were taken (H: used up). Immutable: each method returns new queues."""

    chunks: np.ndarray
    taken: np.ndarray

    @classmethod
    def fresh(cls, actions, horizon_length: int, action_size: int | None = None) -> 'ActionQueues':
        """Queues holding the new chunks `actions` [N, H * A] (A: `action_size` when given), none
        of their actions taken."""
        chunks = as_chunks(actions, horizon_length, action_size)
        return cls(chunks, np.zeros(len(chunks), np.int32))

    @property
    def horizon_length(self) -> int:
        return self.chunks.shape[1]

    def next_actions(self) -> np.ndarray:
        """[N, A]: the action each member takes at its next environment step."""
        if np.any(self.taken >= self.horizon_length):
            raise RuntimeError('An action queue was used up and not refilled: every used-up chunk needs a new one.')
        return self.chunks[np.arange(len(self.taken)), self.taken]

    def stepped(self, episode_ended) -> 'ActionQueues':
        """After an environment step: one more action taken; the queue of a member whose episode
        ended is dropped (its chunk's other actions belong to the episode that is over)."""
        taken = np.where(np.asarray(episode_ended, bool), self.horizon_length, self.taken + 1)
        return ActionQueues(self.chunks, taken.astype(np.int32))

    def needs_chunk(self) -> np.ndarray:
        """[N] bool: the members whose chunk is used up (or dropped)."""
        return self.taken >= self.horizon_length

    def refilled(self, actions, needed) -> 'ActionQueues':
        """The queues with the new chunks `actions` [N, H * A] where `needed`, the others as they were."""
        needed = np.asarray(needed, bool)
        chunks = np.where(needed[:, None, None], as_chunks(actions, self.horizon_length), self.chunks)
        taken = np.where(needed, 0, self.taken).astype(np.int32)
        return ActionQueues(chunks.astype(self.chunks.dtype, copy=False), taken)

    def record(self) -> dict:
        """What a checkpoint holds to continue the queues exactly (float32 actions, int32 indices)."""
        if self.horizon_length == 1:  # never partly taken between steps: the action alone
            return {SINGLE_ACTION_KEY: np.asarray(self.chunks[:, 0], np.float32)}
        return dict(zip(CHUNK_KEYS, (np.asarray(self.chunks, np.float32), np.asarray(self.taken, np.int32))))

    @classmethod
    def from_record(cls, record: dict, horizon_length: int) -> 'ActionQueues':
        """The queues of `record` (see `record`); the record's other keys are left alone."""
        if horizon_length == 1:
            return cls.fresh(record[SINGLE_ACTION_KEY], 1)
        chunks, taken = (np.asarray(record[k]) for k in CHUNK_KEYS)
        return cls(chunks, taken.astype(np.int32))

    @staticmethod
    def record_shapes(members: int, horizon_length: int, action_shape: tuple) -> dict:
        """{key: (shape, dtype)} of `record` for `members` queues of actions shaped `action_shape`."""
        if horizon_length == 1:
            return {SINGLE_ACTION_KEY: ((members,) + tuple(action_shape), np.float32)}
        return dict(zip(CHUNK_KEYS, (((members, horizon_length) + tuple(action_shape), np.float32),
                                     ((members,), np.int32))))
