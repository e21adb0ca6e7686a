"""Work an agent does over the whole dataset (agent-contract extension `dataset_work`): its
description (`DatasetWork`), the batch field that carries a batch's dataset rows (`ROWS_KEY`) and
the block-wise writer of per-row arrays (`fill_rows`). The training loop (flowrl.engine.training)
runs the work; agents (QIPO's stored support sets) describe it with these."""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowrl.kit import pixels

ROWS_KEY = 'rows'  # batch field: the dataset rows of the batch's transitions (agents with dataset work)


class DatasetWork(NamedTuple):
    """Agent-contract extension: work an agent does over the whole dataset at steps it names,
    whose results it keeps per dataset row in `state.extras` and reads in its updates (QIPO's
    support sets: drawn once per renewal instead of once per batch).

    An agent may define `dataset_work(config)` returning one (or None: no such work with this
    config). The training loop then (1) allocates `arrays(state config, rows)` in every member's
    `state.extras` (zeros; checkpointed with the state, so a resume is exact) after checking that
    they fit the device, (2) ends a chunk at each of `steps(first, last)` and, before the update
    of such a step, runs `program(step)(state, dataset, rng) -> state` for every member (its own
    compiled program; `fill_rows` does the rows in blocks), and (3) adds the rows of every batch
    (ROWS_KEY) so that the update can gather what was stored. Batches without ROWS_KEY (online
    batches, validation batches, users calling `update` on their own batches) must still work:
    the agent then computes what it needs from the batch itself."""
    steps: Callable  # (first, last) -> increasing agent steps in [first, last) before whose update the work runs
    arrays: Callable  # (state config, rows) -> {extras name: jax.ShapeDtypeStruct} held per member
    program: Callable  # agent step -> fn(state, dataset, rng) -> state: the work due at that step (one member)
    what: str  # what the arrays hold (for the memory sentence)
    instead: str  # what the user can do when they do not fit


def fill_rows(arrays: dict, fn, dataset: dict, rng, block_rows: int) -> dict:
    """`arrays` ({name: [rows, ...]}) with every row recomputed by `fn(transitions, rng) ->
    {name: [block, ...]}` (a name may fill only the leading columns), over consecutive blocks of
    `block_rows` dataset rows (the last block ends at the last row, overlapping the one before),
    written in place: the memory beyond the arrays is one block's work."""
    rows = pixels.num_transitions(dataset)
    block = min(block_rows, rows)

    def one_block(b, arrays):
        start = jnp.minimum(b * block, rows - block)
        values = fn(pixels.gather_transitions(dataset, start + jnp.arange(block)), jax.random.fold_in(rng, b))
        return {**arrays, **{k: jax.lax.dynamic_update_slice(arrays[k], v.astype(arrays[k].dtype),
                                                             (start,) + (0,) * (v.ndim - 1))
                             for k, v in values.items()}}

    return jax.lax.fori_loop(0, -(-rows // block), one_block, arrays)
