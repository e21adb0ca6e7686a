"""On-device replay buffers for offline-to-online training (docs/DESIGN.md, "Data flow of a run").

A buffer is a pytree: a dict of fixed-capacity arrays (one row per transition) with `size`, the
number of rows that hold transitions, and `insert`, the row the next transition goes to (int32
scalars). Sampling draws rows uniformly below `size`, which may be a traced value, so offline and
online updates run in one compiled program whatever the buffer holds. Everything here is written
for one member; a run vmaps (or `lax.map`s) it over its members' buffers.

Semantics of the authors' FQL code (`main.py`, `utils/datasets.py`), `--buffer_size` default 2M:
- `--balanced_sampling=0`: the dataset is the start of the replay buffer, `from_dataset(dataset,
  buffer_size)`: size = dataset size, capacity = max(dataset size, buffer_size). Online
  transitions go to the next rows and wrap around to row 0 at capacity, overwriting the oldest.
- `--balanced_sampling=1`: the dataset is kept apart and never written to, online transitions go
  to `empty_like(dataset, buffer_size)`, and `balanced_sample` draws half of each batch from each.
- One difference: the authors' buffer sets `size = max(pointer, size)` after advancing the
  pointer, so once it wraps its last row is written but never sampled (its size stops at
  capacity - 1), which is why they allocate dataset size + 1 rows. Here `size` reaches capacity
  and every row written is sampled.

Device memory, from the shapes (float32 observations, next_observations, actions, rewards,
masks, terminals; the test suite computes these numbers from the buffer's shapes):
- cube-double-play (observation 37, action 5): 328 bytes per transition; a 2,000,000-row
  buffer takes 656,000,000 bytes (625.6 MiB), plus 8 bytes for `size` and `insert`.
- humanoidmaze-medium-navigate (observation 69, action 21): 648 bytes per transition;
  2,000,000 rows take 1,296,000,000 bytes (1.21 GiB).
With `--balanced_sampling=0` each member's buffer holds its own copy of the dataset; with
`--balanced_sampling=1` the members can share one offline buffer and each owns an online one.
"""

import functools

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


@functools.partial(jax.jit, static_argnames='capacity')
def _padded(dataset: dict, capacity: int) -> dict:
    """The dataset's arrays followed by zero rows up to `capacity` (one allocation per field)."""
    return {k: jnp.concatenate([v, jnp.zeros((capacity - v.shape[0],) + v.shape[1:], v.dtype)])
            for k, v in dataset.items()}


def from_dataset(dataset: dict, buffer_size: int) -> ReplayBuffer:
    """A buffer holding `dataset` (size = its rows) with room for max(its rows, buffer_size)."""
    rows = _rows(dataset)
    capacity = max(rows, buffer_size)
    return ReplayBuffer(data=_padded(dataset, capacity), size=_scalar(rows), insert=_scalar(rows % capacity))


def empty_like(dataset: dict, capacity: int) -> ReplayBuffer:
    """An empty buffer of `capacity` rows with the fields, row shapes and dtypes of `dataset`."""
    data = {k: jnp.zeros((capacity,) + tuple(v.shape[1:]), v.dtype) for k, v in dataset.items()}
    return ReplayBuffer(data=data, size=_scalar(0), insert=_scalar(0))


def sample(buffer: ReplayBuffer, rng, batch_size: int) -> dict:
    """`batch_size` rows drawn uniformly with replacement below `buffer.size` (row 0 if empty)."""
    idx = jax.random.randint(rng, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda x: x[idx], buffer.data)


def _check_fields(buffer_data: dict, transitions: dict, what: str) -> None:
    if set(transitions) != set(buffer_data):
        raise ValueError(f'{what} have fields {sorted(transitions)}, the buffer has {sorted(buffer_data)}.')
    for key, rows in buffer_data.items():
        if tuple(np.shape(transitions[key])[1:]) != tuple(rows.shape[1:]):
            raise ValueError(f'{what} field {key!r} has rows of shape {np.shape(transitions[key])[1:]}, '
                             f'the buffer {rows.shape[1:]}.')


def append(buffer: ReplayBuffer, transitions: dict) -> ReplayBuffer:
    """The buffer with k transitions (fields shaped (k, ...)) written at rows insert, insert + 1, ...
    modulo capacity (the oldest rows are overwritten once it is full). Under `append_in_place` the
    arrays are updated where they are instead of copied."""
    _check_fields(buffer.data, transitions, 'Transitions')
    k, capacity = _rows(transitions), buffer.capacity
    if k > capacity:
        raise ValueError(f'Cannot append {k} transitions at once to a buffer of {capacity} rows.')
    rows = (buffer.insert + jnp.arange(k)) % capacity
    data = {key: x.at[rows].set(jnp.asarray(transitions[key], x.dtype)) for key, x in buffer.data.items()}
    return buffer.replace(data=data, size=jnp.minimum(buffer.size + k, capacity), insert=(buffer.insert + k) % capacity)


# Donating the buffer lets XLA write the new rows into its arrays: no copy of the whole buffer.
append_in_place = jax.jit(append, donate_argnums=0)


def balanced_sample(offline: ReplayBuffer, online: ReplayBuffer, rng, batch_size: int) -> dict:
    """`--balanced_sampling=1`: rows [0, batch_size - batch_size // 2) drawn from `offline`, the last
    batch_size // 2 from `online` (uniformly below each size, with replacement, so an online buffer
    smaller than its half gives repeated rows, as in the authors' code). The authors append before
    every update, so their online buffer is never empty when sampled; here, while it is empty the
    online half is drawn from `offline` too. (For an odd batch_size the authors' batch has
    batch_size - 1 rows, half from each; this one keeps batch_size rows.)"""
    _check_fields(online.data, offline.data, 'Offline data')
    online_rows = batch_size // 2
    offline_rng, online_rng, fallback_rng = jax.random.split(rng, 3)
    offline_part = sample(offline, offline_rng, batch_size - online_rows)
    online_part = sample(online, online_rng, online_rows)
    fallback = sample(offline, fallback_rng, online_rows)
    online_part = jax.tree.map(lambda o, f: jnp.where(online.size > 0, o, f), online_part, fallback)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), offline_part, online_part)


def device_bytes(buffer: ReplayBuffer) -> int:
    """Bytes the buffer's arrays take (works on `jax.eval_shape` results too)."""
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(buffer))
