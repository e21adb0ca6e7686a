"""On-device replay buffers for offline-to-online training (docs/DESIGN.md, "Data flow of a run").

A buffer is a pytree: a dict of fixed-capacity arrays (one row per transition) with `size`, the
number of rows that hold transitions, and `insert`, the row the next transition goes to (int32
scalars). Sampling draws rows uniformly below `size`, which may be a traced value, so one
compiled program serves every fill level. Everything here is written for one member; a run
maps it over its members' online buffers, while the dataset is one array shared by all.

Semantics of the authors' FQL code (`main.py`, `utils/datasets.py`), `--buffer_size` B (2M):
- `--balanced_sampling=0`: the dataset (D rows) is the start of one replay buffer of capacity
  C = max(D, B); online transitions go to rows D, D + 1, ... and wrap around to row 0 at C,
  overwriting the oldest (dataset rows first). `sample_with_dataset` samples exactly that
  buffer without copying the dataset: online transition k lives in the member's online buffer
  at row (k mod C) (see there), so each member owns only its online rows and the members share
  one dataset. The online buffer needs min(online steps, C) rows.
- `--balanced_sampling=1`: the dataset is kept apart and never written to, online transitions
  go to a buffer of capacity B, and `balanced_sample` draws half of each batch from each.
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


def uniform_rows(data: dict, size, rng, batch_size: int) -> dict:
    """`batch_size` rows of `data` drawn uniformly with replacement below `size` (row 0 if 0)."""
    idx = jax.random.randint(rng, (batch_size,), 0, jnp.maximum(size, 1))
    return jax.tree.map(lambda x: x[idx], data)


def sample(buffer: ReplayBuffer, rng, batch_size: int) -> dict:
    """`batch_size` rows drawn uniformly with replacement below `buffer.size` (row 0 if empty)."""
    return uniform_rows(buffer.data, buffer.size, rng, batch_size)


SUCCESSOR_PREFIX = 'next_'
EPISODE_END = 'terminals'


def successor_fields(buffer_data: dict, transitions: dict) -> list[str]:
    """Buffer fields `next_X` that the transitions lack but whose X they carry (see the module doc)."""
    return [k for k in buffer_data if k not in transitions and k.startswith(SUCCESSOR_PREFIX)
            and k[len(SUCCESSOR_PREFIX):] in transitions]


def _check_fields(buffer_data: dict, transitions: dict, what: str, derived=()) -> None:
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
    _check_fields(buffer.data, transitions, 'Transitions', derived)
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


def sample_with_dataset(dataset: dict, online: ReplayBuffer, rng, batch_size: int, buffer_size: int) -> dict:
    """`--balanced_sampling=0`: a uniform batch from the authors' single buffer (the dataset's D
    rows, then the online transitions, capacity C = max(D, buffer_size), wrapping to row 0)
    without building it. Online transition k sits at buffer row (D + k) mod C and here at online
    row k mod C; buffer row v therefore holds online row (v - D) mod C if that row has been
    written, else dataset row v. The online buffer must have min(online steps, C) rows
    (`online_capacity`), so an online row that has been written is always present. A dataset of
    no rows (fields with their row shapes: training from scratch, e.g. the locomotion recipe's
    SAC) leaves the online buffer alone: rows drawn uniformly below its size (`sample`)."""
    rows = _rows(dataset)
    if rows == 0:  # static: D = 0 makes the single buffer the online one (C = buffer_size)
        return sample(online, rng, batch_size)
    capacity = max(rows, buffer_size)
    virtual_size = jnp.minimum(rows + online.size, capacity)
    v = jax.random.randint(rng, (batch_size,), 0, virtual_size)
    online_row = (v - rows) % capacity
    from_online = online_row < online.size
    online_part = jax.tree.map(lambda x: x[jnp.minimum(online_row, online.capacity - 1)], online.data)
    offline_part = jax.tree.map(lambda x: x[jnp.minimum(v, rows - 1)], dataset)
    pick = lambda o, d: jnp.where(from_online.reshape((-1,) + (1,) * (o.ndim - 1)), o, d)
    return jax.tree.map(pick, online_part, {k: offline_part[k] for k in online_part})


def balanced_sample(dataset: dict, online: ReplayBuffer, rng, batch_size: int) -> dict:
    """`--balanced_sampling=1`: rows [0, batch_size - batch_size // 2) drawn from `dataset`, the last
    batch_size // 2 from `online` (uniformly below each size, with replacement, so an online buffer
    smaller than its half gives repeated rows, as in the authors' code). The authors append before
    every update, so their online buffer is never empty when sampled; here, while it is empty the
    online half is drawn from the dataset too. (For an odd batch_size the authors' batch has
    batch_size - 1 rows, half from each; this one keeps batch_size rows.)"""
    _check_fields(online.data, dataset, 'Dataset fields')
    online_rows, dataset_rows = batch_size // 2, _rows(dataset)
    offline_rng, online_rng, fallback_rng = jax.random.split(rng, 3)
    offline_part = uniform_rows(dataset, dataset_rows, offline_rng, batch_size - online_rows)
    online_part = sample(online, online_rng, online_rows)
    fallback = uniform_rows(dataset, dataset_rows, fallback_rng, online_rows)
    online_part = jax.tree.map(lambda o, f: jnp.where(online.size > 0, o, f), online_part, fallback)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), offline_part, online_part)


def device_bytes(buffer: ReplayBuffer) -> int:
    """Bytes the buffer's arrays take (works on `jax.eval_shape` results too)."""
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(buffer))
