"""How a training batch is made: the one place that decides which rows a batch holds and how they
are put together, for datasets and replay buffers alike (docs/DESIGN.md, "Batches: transitions or
sequences").

A batch is drawn from a *row source*: a number of rows (static, or traced for a buffer that fills
up) and a `gather(idx)` giving the transitions at integer indices of any shape. Three sources
exist: a dataset (image observations stacked from their frames, flowrl.kit.pixels), a member's
online buffer, and the authors' single buffer (dataset rows, then online rows: flowrl.engine.replay).

`Sampler.horizon` H says what a batch row is:
- H = 1: one transition, drawn uniformly (with replacement) among the rows: every field as stored,
  [B, ...]. This is the batch every agent has always trained on.
- H > 1: a sequence of H consecutive rows t .. t + H - 1, its start t drawn uniformly among the
  rows where a whole sequence fits (rows - H + 1 starts; the Q-chunking code's `sample_sequence`,
  ColinQiyangLi/qc utils/datasets.py). The batch holds
    observations       [B, ...]     the observation at t
    actions            [B, H, A]    the H actions
    rewards            [B, H]       the H rewards as stored (the agent discounts them: its discount
                                    is its own, possibly swept, config value)
    masks              [B, H]       running minimum of the masks: 0 from the first terminated step on
    terminals          [B, H]       running maximum of the episode ends: 1 from the first end on
    valid              [B, H]       1 for step 0; for step i > 0, 1 - terminals[i - 1]: whether step i
                                    still belongs to the episode of step 0
    next_observations  [B, ...]     the next observation of step H - 1 (the observation at t + H)
  and every other field (e.g. the dataset work's rows) of the start row. A sequence may run past
  an episode end into the next episode; `valid` says where, and QC's losses weight by it.
  Sources with fewer than H rows (an online buffer just started) repeat their last row.
Random-crop augmentation (`p_aug`) applies to observations and next observations as for H = 1.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowrl.engine import replay
from flowrl.kit import pixels
from flowrl.kit.chunking import VALID
from flowrl.kit.dataset_work import ROWS_KEY

SEQUENCE_FIELDS = ('actions', 'rewards', 'masks', 'terminals')  # per step in a sequence batch



class Source(NamedTuple):
    count: object  # rows held (an int, or a traced int32 for a buffer)
    gather: Callable  # idx (int array of any shape) -> {field: [*idx.shape, ...]}


class Sampler(NamedTuple):
    """What a batch is: `batch_size` rows of `horizon` steps, cropped with probability `p_aug`
    (image observations), with the start rows under ROWS_KEY when `with_rows` (an agent's dataset
    work reads what it stored per row). Hashable: compiled programs are keyed by it."""
    batch_size: int
    horizon: int = 1
    p_aug: float = 0.0
    with_rows: bool = False

    def from_dataset(self, dataset: dict, rng) -> dict:
        """A batch of `dataset` (image observations stacked from their frames)."""
        batch, starts = draw(dataset_source(dataset), rng, self.batch_size, self.horizon)
        return self.finish(batch, starts, rng)

    def from_dataset_and_online(self, dataset: dict, online: replay.ReplayBuffer, rng, balanced: bool,
                                buffer_size: int) -> dict:
        """An online fine-tuning batch of one member: from the authors' single buffer
        (`single_buffer_source`), or with `balanced` half from the dataset and half from the online
        buffer (`balanced`). Neither is augmented nor carries rows (as online batches never have)."""
        if balanced:
            return balanced_batch(dataset, online, rng, self.batch_size, self.horizon)
        return single_buffer_batch(dataset, online, rng, self.batch_size, buffer_size, self.horizon)

    def finish(self, batch: dict, starts, rng) -> dict:
        """The batch augmented as `p_aug` says and with its rows if asked (sampling order fixed:
        the augmentation's key is folded from the batch's key, as it always was)."""
        if self.p_aug > 0:
            batch = pixels.augment(batch, jax.random.fold_in(rng, pixels.AUGMENT_STREAM), self.p_aug)
        if self.with_rows:
            batch[ROWS_KEY] = starts
        return batch


def dataset_source(dataset: dict) -> Source:
    return Source(pixels.num_transitions(dataset), lambda idx: pixels.gather_transitions(dataset, idx))


def rows_source(data: dict, size) -> Source:
    """Rows [0, size) of plain per-row arrays (an online buffer: `size` may be traced)."""
    return Source(size, lambda idx: jax.tree.map(lambda x: x[idx], data))


def single_buffer_source(dataset: dict, online: replay.ReplayBuffer, buffer_size: int) -> Source:
    """`--balanced_sampling=0`: the authors' single buffer (the dataset's D rows, then the online
    transitions, capacity C = max(D, buffer_size), wrapping to row 0) as a row source
    (flowrl.engine.sampling), without building it. Online transition k sits at buffer row
    (D + k) mod C and here at online row k mod C; buffer row v therefore holds online row
    (v - D) mod C if that row has been written, else dataset row v. The online buffer must have
    min(online steps, C) rows (`online_capacity`), so an online row that has been written is
    always present. A dataset of no rows (fields with their row shapes: training from scratch,
    e.g. the locomotion recipe's SAC) makes the single buffer the online one (C = buffer_size)."""
    rows = pixels.num_transitions(dataset)
    if rows == 0:  # static
        return rows_source(online.data, online.size)
    capacity = max(rows, buffer_size)

    def gather(v):
        online_row = (v - rows) % capacity
        from_online = online_row < online.size
        online_part = jax.tree.map(lambda x: x[jnp.minimum(online_row, online.capacity - 1)], online.data)
        offline_part = jax.tree.map(lambda x: x[jnp.minimum(v, rows - 1)], dataset)
        pick = lambda o, d: jnp.where(from_online.reshape(from_online.shape + (1,) * (o.ndim - from_online.ndim)), o, d)
        return jax.tree.map(pick, online_part, {k: offline_part[k] for k in online_part})

    return Source(jnp.minimum(rows + online.size, capacity), gather)


def buffer_batch(online: replay.ReplayBuffer, rng, batch_size: int, horizon: int = 1) -> dict:
    """A batch of the rows an online buffer holds (below its size)."""
    return draw(rows_source(online.data, online.size), rng, batch_size, horizon)[0]


def single_buffer_batch(dataset: dict, online: replay.ReplayBuffer, rng, batch_size: int, buffer_size: int,
                        horizon: int = 1) -> dict:
    """`--balanced_sampling=0`: a batch of the authors' single buffer (`single_buffer_source`)."""
    return draw(single_buffer_source(dataset, online, buffer_size), rng, batch_size, horizon)[0]


def balanced_batch(dataset: dict, online: replay.ReplayBuffer, rng, batch_size: int, horizon: int = 1) -> dict:
    """`--balanced_sampling=1`: rows [0, batch_size - batch_size // 2) drawn from `dataset`, the last
    batch_size // 2 from `online` (uniformly below each size, with replacement, so an online buffer
    smaller than its half gives repeated rows, as in the authors' code). The authors append before
    every update, so their online buffer is never empty when sampled; here, while it is empty the
    online half is drawn from the dataset too. (For an odd batch_size the authors' batch has
    batch_size - 1 rows, half from each; this one keeps batch_size rows.)"""
    replay.check_fields(online.data, dataset, 'Dataset fields')
    online_rows, offline = batch_size // 2, rows_source(dataset, pixels.num_transitions(dataset))
    offline_rng, online_rng, fallback_rng = jax.random.split(rng, 3)
    offline_part = draw(offline, offline_rng, batch_size - online_rows, horizon)[0]
    online_part = buffer_batch(online, online_rng, online_rows, horizon)
    fallback = draw(offline, fallback_rng, online_rows, horizon)[0]
    online_part = jax.tree.map(lambda o, f: jnp.where(online.size > 0, o, f), online_part, fallback)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), offline_part, online_part)


def draw(source: Source, rng, batch_size: int, horizon: int = 1) -> tuple[dict, jax.Array]:
    """(batch, start rows): `batch_size` rows (horizon 1) or sequences of `source`, drawn uniformly
    with replacement (see the module doc). A source of no rows gives row 0."""
    starts = jax.random.randint(rng, (batch_size,), 0, jnp.maximum(source.count - horizon + 1, 1))
    if horizon == 1:
        return source.gather(starts), starts
    return sequences(source, starts, horizon), starts


def sequences(source: Source, starts, horizon: int) -> dict:
    """The sequence batch of `horizon` steps from each of `starts` (module doc). Each field is
    gathered only where it is used: the observation at the start, the next observation at the
    end, the per-step fields at every step (under jit what a gather does not use is not computed,
    so image observations are stacked twice per row, not 2H times)."""
    last_row = jnp.maximum(source.count, 1) - 1
    steps = jnp.minimum(starts[:, None] + jnp.arange(horizon), last_row)  # [B, H]
    batch = dict(source.gather(starts))
    batch['next_observations'] = source.gather(steps[:, -1])['next_observations']
    window = source.gather(steps)
    batch.update({name: window[name] for name in SEQUENCE_FIELDS})
    batch['masks'] = jax.lax.cummin(window['masks'], axis=1)
    batch['terminals'] = jax.lax.cummax(window['terminals'], axis=1)
    ended_before = jnp.concatenate([jnp.zeros_like(batch['terminals'][:, :1]), batch['terminals'][:, :-1]], axis=1)
    batch[VALID] = 1.0 - ended_before
    return batch


def sample_batch(dataset: dict, rng, batch_size: int, p_aug: float = 0.0, with_rows: bool = False) -> dict:
    """Uniformly sampled transitions of `dataset` (`Sampler` with horizon 1)."""
    return Sampler(batch_size, 1, p_aug, with_rows).from_dataset(dataset, rng)
