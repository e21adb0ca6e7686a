"""The compiled training program: jit( vmap_over_members( scan_over_K_updates(...) ) ).

A "member" is one independent training run: a seed, or a (seed, swept values) pair. All
members share one compiled program; their states are stacked on a leading axis that is
sharded over the local devices. Batches are sampled on the device inside the scan, so a
chunk of K updates costs one dispatch and no host<->device traffic but its summary metrics.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MEMBER_AXIS = 'members'
NONFINITE_KEY = 'nonfinite_update'  # index in the chunk of the first update with a non-finite metric, or -1


def member_shardings(num_members: int):
    """(sharding of member-stacked arrays, replicated sharding) over the local devices.

    Uses the largest number of devices that divides the member count, so every device holds
    the same number of members; members never communicate, so this is embarrassingly parallel.
    """
    devices = jax.local_devices()
    count = math.gcd(num_members, len(devices))
    mesh = Mesh(np.asarray(devices[:count]), (MEMBER_AXIS,))
    return NamedSharding(mesh, PartitionSpec(MEMBER_AXIS)), NamedSharding(mesh, PartitionSpec())


def sample_batch(dataset: dict, rng, batch_size: int) -> dict:
    """Uniformly sampled transitions (with replacement), gathered on the device."""
    size = next(iter(dataset.values())).shape[0]
    idx = jax.random.randint(rng, (batch_size,), 0, size)
    return jax.tree.map(lambda x: x[idx], dataset)


def summarize(metrics: dict) -> dict:
    """Chunk means of per-update metrics, plus the first update whose metrics were non-finite."""
    finite = jnp.all(jnp.stack([jnp.isfinite(v) for v in metrics.values()]), axis=0)
    first_bad = jnp.where(jnp.all(finite), -1, jnp.argmin(finite))
    return {**{k: jnp.mean(v) for k, v in metrics.items()}, NONFINITE_KEY: first_bad}


def train_member(agent, batch_size: int, num_updates: int, state, rng, dataset):
    """`num_updates` updates of one member; returns (state, rng, summary metrics)."""

    def one_update(carry, _):
        state, rng = carry
        rng, batch_rng, update_rng = jax.random.split(rng, 3)
        state, metrics = agent.update(state, sample_batch(dataset, batch_rng, batch_size), update_rng)
        return (state, rng), metrics

    (state, rng), metrics = jax.lax.scan(one_update, (state, rng), length=num_updates)
    return state, rng, summarize(metrics)


class ChunkRunner:
    """Compiles (once per distinct chunk length) and runs chunks of updates for all members."""

    def __init__(self, agent, batch_size: int):
        self.agent, self.batch_size = agent, batch_size
        self._compiled = {}

    def function(self, num_updates: int):
        if num_updates not in self._compiled:
            def chunk(states, rngs, dataset):
                run = lambda s, r: train_member(self.agent, self.batch_size, num_updates, s, r, dataset)
                return jax.vmap(run)(states, rngs)

            self._compiled[num_updates] = jax.jit(chunk, donate_argnums=(0, 1))
        return self._compiled[num_updates]

    def __call__(self, states, rngs, dataset, num_updates: int):
        return self.function(num_updates)(states, rngs, dataset)


def init_members(agent, member_configs, member_seeds, example_batch):
    """Stacked initial states and training RNGs, one per member.

    Members with equal configs share one compiled init; seed i always gives the same state
    whatever the other members are, so member i of an N-member run equals a single run.
    """
    init = jax.jit(agent.init, static_argnums=2)
    states, rngs = [], []
    for config, seed in zip(member_configs, member_seeds):
        init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
        states.append(init(init_rng, example_batch, ml_collections.FrozenConfigDict(config)))
        rngs.append(train_rng)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states), jnp.stack(rngs)


def chunk_boundaries(start: int, total: int, intervals):
    """Steps after `start` (up to `total`) at which a chunk must end, in increasing order: every
    multiple of each interval (log, eval, save) and the end. Chunks between boundaries run in
    one dispatch. Generated one at a time, so a huge `total` costs no memory up front."""
    intervals = [interval for interval in intervals if interval and interval > 0]
    step = start
    while step < total:
        step = min([total] + [(step // interval + 1) * interval for interval in intervals])
        yield step
