"""On-device replay buffers for offline-to-online training (docs/DESIGN.md, "Data flow of a run").

A buffer is a pytree: a dict of fixed-capacity arrays (one row per transition) with `size`, the
number of rows that hold transitions, and `insert`, the row the next transition goes to (int32
scalars). Batches are drawn from it by flowrl.engine.sampling (`Sampler.from_dataset_and_online`),
rows uniformly below `size`, which may be a traced value, so one compiled program serves every
fill level. Everything here is written for one member; a run
maps it over its members' online buffers, while the dataset is one array shared by all.

Semantics of the authors' FQL code (`main.py`, `utils/datasets.py`), `--buffer_size` B (2M):
- `--balanced_sampling=0`: the dataset (D rows) is the start of one replay buffer of capacity
  C = max(D, B); online transitions go to rows D, D + 1, ... and wrap around to row 0 at C,
  overwriting the oldest (dataset rows first). `flowrl.engine.sampling.single_buffer_source` samples exactly that
  buffer without copying the dataset: online transition k lives in the member's online buffer
  at row (k mod C) (see there), so each member owns only its online rows and the members share
  one dataset. The online buffer needs min(online steps, C) rows.
- `--balanced_sampling=1`: the dataset is kept apart and never written to, online transitions
  go to a buffer of capacity B, and the sampler draws half of each batch from each (`balanced`).
- One difference: the authors' buffer sets `size = max(pointer, size)` after advancing the
  pointer, so once it wraps its last row is written but never sampled (its size stops at
  capacity - 1), which is why they allocate D + 1 rows. Here every row written is sampled.

Fields named `next_X` that a transition does not carry (ReBRAC's `next_actions`, from its
`prepare_dataset`) are filled as that hook fills the dataset: row t gets X of row t + 1, or
its own X where row t ends an episode (`terminals`). The next transition is not known when
row t is written, so row t holds its own X until then (the authors' buffer gives the newest
row its own next action too).

Device memory, from the shapes (float32 observations, next_observations, actions, rewards,
masks, terminals; the test suite computes these numbers from the buffer's shapes):
- cube-double-play (observation 37, action 5): 328 bytes per transition; a 2,000,000-row
  buffer takes 656,000,000 bytes (625.6 MiB), plus 8 bytes for `size` and `insert`.
- humanoidmaze-medium-navigate (observation 69, action 21): 648 bytes per transition;
  2,000,000 rows take 1,296,000,000 bytes (1.21 GiB).
With the dataset shared, M members of a 1M-step online run on cube-double-play take
328 MB for the dataset plus M x 328 MB of online rows (the authors' code, one process per
seed, holds a 656 MB buffer in each).
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


class ReplayBuffer(flax.struct.PyTreeNode):
    data: dict  # field -> array of shape (capacity, ...)
    size: jax.Array  # int32: rows [0, size) hold transitions
    insert: jax.Array  # int32: the row the next appended transition goes to

    @property
    def capacity(self) -> int:
        return next(iter(self.data.values())).shape[0]


def _rows(dataset: dict) -> int:
    return next(iter(dataset.values())).shape[0]


def _scalar(value):
    return jnp.asarray(value, jnp.int32)


def empty_like(dataset: dict, capacity: int) -> ReplayBuffer:
    """An empty buffer of `capacity` rows with the fields, row shapes and dtypes of `dataset`."""
    data = {k: jnp.zeros((capacity,) + tuple(v.shape[1:]), v.dtype) for k, v in dataset.items()}
    return ReplayBuffer(data=data, size=_scalar(0), insert=_scalar(0))


SUCCESSOR_PREFIX = 'next_'
EPISODE_END = 'terminals'


def successor_fields(buffer_data: dict, transitions: dict) -> list[str]:
    """Buffer fields `next_X` that the transitions lack but whose X they carry (see the module doc)."""
    return [k for k in buffer_data if k not in transitions and k.startswith(SUCCESSOR_PREFIX)
            and k[len(SUCCESSOR_PREFIX):] in transitions]


def check_fields(buffer_data: dict, transitions: dict, what: str, derived=()) -> None:
    if set(transitions) | set(derived) != set(buffer_data):
        raise ValueError(f'{what} have fields {sorted(transitions)}, the buffer has {sorted(buffer_data)}.')
    for key in transitions:
        rows = buffer_data[key]
        if tuple(np.shape(transitions[key])[1:]) != tuple(rows.shape[1:]):
            raise ValueError(f'{what} field {key!r} has rows of shape {np.shape(transitions[key])[1:]}, '
                             f'the buffer {rows.shape[1:]}.')


def _with_successors(buffer: ReplayBuffer, transitions: dict, derived: list) -> tuple[dict, dict]:
    """(transitions with their `next_X` fields, buffer data with the row before them completed):
    within the new rows the successor is the next row's X, the last new row holds its own X, and
    the row written before them gets the first new X unless it ended an episode."""
    ends = jnp.asarray(transitions[EPISODE_END]) > 0
    data, completed = dict(buffer.data), dict(transitions)
    previous = (buffer.insert - 1) % buffer.capacity
    continues = (buffer.size > 0) & (buffer.data[EPISODE_END][previous] <= 0)
    for name in derived:
        values = jnp.asarray(transitions[name[len(SUCCESSOR_PREFIX):]])
        following = jnp.concatenate([values[1:], values[-1:]])
        completed[name] = jnp.where(ends.reshape((-1,) + (1,) * (values.ndim - 1)), values, following)
        column = data[name]
        data[name] = column.at[previous].set(jnp.where(continues, values[0].astype(column.dtype), column[previous]))
    return completed, data


def append(buffer: ReplayBuffer, transitions: dict) -> ReplayBuffer:
    """The buffer with k transitions (fields shaped (k, ...)) written at rows insert, insert + 1, ...
    modulo capacity (the oldest rows are overwritten once it is full). Under jit with the buffer
    donated, the arrays are updated where they are instead of copied."""
    derived = successor_fields(buffer.data, transitions)
    check_fields(buffer.data, transitions, 'Transitions', derived)
    k, capacity = _rows(transitions), buffer.capacity
    if k > capacity:
        raise ValueError(f'Cannot append {k} transitions at once to a buffer of {capacity} rows.')
    transitions, data = _with_successors(buffer, transitions, derived) if derived else (transitions, buffer.data)
    rows = (buffer.insert + jnp.arange(k)) % capacity
    data = {key: x.at[rows].set(jnp.asarray(transitions[key], x.dtype)) for key, x in data.items()}
    return buffer.replace(data=data, size=jnp.minimum(buffer.size + k, capacity), insert=(buffer.insert + k) % capacity)


def online_capacity(online_steps: int, dataset_rows: int, buffer_size: int, balanced: bool) -> int:
    """Rows a member's online buffer needs: min(online steps, the wrap-around length), where the
    wrap-around length is buffer_size (balanced) or max(dataset rows, buffer_size) (see the module doc)."""
    wrap = buffer_size if balanced else max(dataset_rows, buffer_size)
    return max(1, min(online_steps, wrap))


def device_bytes(buffer: ReplayBuffer) -> int:
    """Bytes the buffer's arrays take (works on `jax.eval_shape` results too)."""
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(buffer))
