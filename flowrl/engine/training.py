"""The compiled training program: jit( shard_map_over_devices( members( loop_over_K_updates(...) ) ) ).

A "member" is one independent training run: a seed, or a (seed, swept values) pair. All
members share one compiled program; their states are stacked on a leading axis that is
sharded over the devices of the run's placement (flowrl.engine.placement: every process's devices, or
`member_mesh` of one process when none is given). Batches are sampled on the device inside the loop, so a
chunk of K updates costs one dispatch and no host<->device traffic but its metric sums. K is
an argument of the compiled program, not part of it: the training loop cuts chunks by wall
time (flowrl.run.progress) and any K runs without compiling again.

How the members held by one device run is the *member execution* mode:
- 'vmap': batched together. Fills an accelerator, whose matrix units want large batches.
- 'map': one after another inside the compiled program (`lax.map`). On a CPU a vmapped
  member axis turns every matrix product into a batched one, which XLA's CPU backend runs at
  about half the speed of plain products; running members in turn keeps plain products.
'auto' picks 'map' on CPUs and 'vmap' elsewhere. A device that holds one member runs it with
no member axis at all, in either mode.
"""

import bisect
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flowrl import host_memory
from flowrl.engine.placement import MEMBER_AXIS
from flowrl.errors import UserError
from flowrl.engine.sampling import Sampler
from flowrl.kit import chunking, contract, pixels
from flowrl.kit.dataset_work import DatasetWork

NONFINITE_KEY = 'nonfinite_update'  # index in the chunk of the first update with a non-finite metric, or -1
MEMBER_EXECUTIONS = ('auto', 'vmap', 'map')


def resolve_member_execution(requested: str = 'auto', backend: str | None = None) -> str:
    """'vmap' or 'map' for `requested` ('auto', 'vmap' or 'map') on `backend` (default: JAX's)."""
    if requested not in MEMBER_EXECUTIONS:
        raise UserError(f'--member_execution must be one of {", ".join(MEMBER_EXECUTIONS)}, got {requested!r}.')
    if requested != 'auto':
        return requested
    return 'map' if (backend or jax.default_backend()) == 'cpu' else 'vmap'


def member_mesh(num_members: int) -> Mesh:
    """A 1-D mesh over the largest number of local devices that divides the member count, so
    every device holds the same number of members; members never communicate."""
    devices = jax.local_devices()
    count = math.gcd(num_members, len(devices))
    return Mesh(np.asarray(devices[:count]), (MEMBER_AXIS,))


def member_shardings(num_members: int):
    """(sharding of member-stacked arrays, replicated sharding) over `member_mesh`."""
    mesh = member_mesh(num_members)
    return NamedSharding(mesh, PartitionSpec(MEMBER_AXIS)), NamedSharding(mesh, PartitionSpec())


def over_members(fn, execution: str):
    """`fn(*per_member_args)` applied to member-stacked args on one device, as `execution` says."""

    def run(*stacked):
        if jax.tree.leaves(stacked)[0].shape[0] == 1:  # one member here: no member axis at all
            out = fn(*jax.tree.map(lambda x: x[0], stacked))
            return jax.tree.map(lambda x: x[None], out)
        if execution == 'vmap':
            return jax.vmap(fn)(*stacked)
        return jax.lax.map(lambda args: fn(*args), stacked)

    return run


def member_program(local, mesh: Mesh | None, member_args: int, replicated_args: int = 0, donate=(),
                   static_argnums=()):
    """The one builder of the engine's compiled member programs (chunks, dataset work, online
    steps, policies, validation): `local` takes `member_args` member-stacked arguments, then
    `replicated_args` replicated ones, and returns member-stacked outputs. With a `mesh`:
    jit(shard_map(`local`)) over its member axis, each device running its own members (members
    never communicate); without one (None): jit(`local`) on arrays wherever they are (a process's
    own rows for evaluation and validation, whose member count need not divide a mesh).
    `static_argnums` counts before the member arguments and applies without a mesh only."""
    if mesh is None:
        return jax.jit(local, donate_argnums=donate, static_argnums=static_argnums)
    specs = (PartitionSpec(MEMBER_AXIS),) * member_args + (PartitionSpec(),) * replicated_args
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(MEMBER_AXIS)),
                   donate_argnums=donate)


def all_finite(metrics: dict):
    """Whether every metric of one update is finite (a traced bool): the divergence test of the
    offline loop and of the online step alike."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))


def metric_names(update, state, dataset, sampler: Sampler) -> list:
    """The names of the metrics `update` returns on `sampler`'s batches of `dataset`, found by
    tracing it (without running it)."""
    # Everything abstract: `state` and `dataset` may be shapes only, or arrays of another process's mesh.
    metrics = jax.eval_shape(lambda s, d, rng: update(s, sampler.from_dataset(d, rng), rng)[1],
                             state, dataset, jax.random.PRNGKey(0))
    return list(metrics)


def train_member(update, sampler: Sampler, num_updates, state, rng, dataset, alive=True, totals=None):
    """`num_updates` calls of `update` on one member, each on a batch `sampler` draws from
    `dataset`; returns (state, rng, totals, first_bad).

    `num_updates` may be a traced value: one compiled program serves every chunk length, so the
    loop can cut chunks by wall time (flowrl.run.progress) without compiling again. `totals` are
    running sums of the metrics, added to in update order: a train.csv row (totals / updates)
    is then the same bits however the updates between two rows were cut into chunks.
    `first_bad` is the index in this chunk of the first update with a non-finite metric, or -1.

    A member that is not `alive`, or whose metrics turn non-finite in this chunk, keeps the
    state and rng it had before the chunk: a diverged member of a sweep stays frozen
    while the others train (this holds one more copy of the state on the device)."""
    if totals is None:
        totals = {k: jnp.zeros((), jnp.float32) for k in metric_names(update, state, dataset, sampler)}

    def one_update(i, carry):
        state, rng, totals, first_bad = carry
        rng, batch_rng, update_rng = jax.random.split(rng, 3)
        state, metrics = update(state, sampler.from_dataset(dataset, batch_rng), update_rng)
        first_bad = jnp.where((first_bad < 0) & ~all_finite(metrics), i, first_bad)
        totals = {k: totals[k] + jnp.asarray(metrics[k], jnp.float32) for k in totals}
        return state, rng, totals, first_bad

    # -1 derived from a per-member input, so that under shard_map it varies over members like
    # the value the loop computes (shard_map checks that a loop carry keeps its type).
    no_bad_update = jnp.where(jnp.asarray(alive), -1, -1).astype(jnp.int32)
    start = (state, rng, totals, no_bad_update)
    new_state, new_rng, new_totals, first_bad = jax.lax.fori_loop(0, num_updates, one_update, start)
    keep = jnp.logical_and(alive, first_bad < 0)
    state, rng = jax.tree.map(lambda new, old: jnp.where(keep, new, old), (new_state, new_rng), (state, rng))
    return state, rng, new_totals, first_bad  # the totals show which metrics turned non-finite


def make_validation_metrics(sampler: Sampler, execution: str = 'auto'):
    """jit((update, states, dataset, keys [members]) -> the metrics `update` reports on a batch
    `sampler` draws from `dataset` with each member's key, per member; the updated states are dropped)."""
    execution = resolve_member_execution(execution)
    sampler = sampler._replace(with_rows=False)  # validation rows are not the rows the dataset work stored

    def metrics(update, states, dataset, keys):
        def one(state, key):
            batch_key, update_key = jax.random.split(key)
            return update(state, sampler.from_dataset(dataset, batch_key), update_key)[1]

        return over_members(one, execution)(states, keys)

    return member_program(metrics, None, member_args=3, static_argnums=0)


def update_phases(agent, config) -> list:
    """[(first step, update function), ...] sorted by step, starting at 0.

    Agent contract extension: an agent whose update does very different work in different
    stretches of training (QIPO's phases) may define `phase_updates(config)` returning such
    pairs. The loop ends a chunk at every phase start and runs each chunk with the update of
    the phase it is in, so a phase pays only for its own work (under vmap a `lax.switch` on
    the step would run every branch). All members share the step, and phase lengths are
    static config, so every member is in the same phase. Every phase's update returns the same
    metrics (train.csv rows sum them across phase starts). `agent.update` itself stays correct
    at every step for users who call it directly.
    """
    phases = dict(contract.hook(agent, 'phase_updates')(config))
    if 0 not in phases:
        raise ValueError(f'{agent.__name__}.phase_updates must include a phase starting at step 0.')
    return sorted(phases.items())


def phase_at(phases, step: int):
    """The update function of the phase that `step` (the first update of a chunk) falls in."""
    return [update for start, update in phases if start <= step][-1]


def dataset_work(agent, config) -> DatasetWork | None:
    """The agent's dataset work for `config` (the optional `dataset_work` hook), or None."""
    work = contract.hook(agent, 'dataset_work')
    return None if work is None or config is None else work(config)


def free_bytes(device) -> int | None:
    """Memory free on `device`: an accelerator's allocator limit less its use, or on the CPU the
    host's available memory (Linux: MemAvailable); None where neither is known."""
    stats = device.memory_stats() if device.platform != 'cpu' else None
    if stats and 'bytes_limit' in stats:
        return int(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
    return host_memory.available_bytes()


def gib(count: int) -> str:
    return f'{count / 2**30:.2f} GiB'


def check_work_memory(work: DatasetWork, arrays: dict, num_members: int, log=print, free=None) -> None:
    """States the memory of the dataset work's per-row arrays and refuses a run whose members'
    arrays do not fit the free memory of the devices holding them (one sentence)."""
    per_member = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in arrays.values())
    devices = member_mesh(num_members).devices.size
    on_host = jax.default_backend() == 'cpu'  # CPU "devices" share the host's memory
    need = per_member * (num_members if on_host else -(-num_members // devices))
    free = free_bytes(jax.local_devices()[0]) if free is None else free
    shapes = ', '.join(f'{name} {"x".join(map(str, a.shape))} {np.dtype(a.dtype).name}' for name, a in arrays.items())
    log(f'{work.what}: {gib(per_member)} per member ({shapes}); {gib(need)} on a device.')
    if free is not None and need > free:
        raise UserError(f'{work.what} need {gib(need)} on a {jax.default_backend()} device ({num_members} member(s), '
                        f'{shapes} each) and {gib(free)} is free; {work.instead}')


def with_zero_arrays(states, arrays: dict):
    """Member-stacked states whose extras also hold zero `arrays` (one per member)."""
    members = jax.tree.leaves(states)[0].shape[0]
    zeros = {name: jnp.zeros((members,) + a.shape, a.dtype) for name, a in arrays.items()}
    return states.replace(extras={**states.extras, **zeros})


class ChunkRunner:
    """Compiles (once per member count and phase: the chunk length is an argument) and runs
    chunks of updates for all members: jit(shard_map over devices(members run as `execution`
    says(loop over updates))))."""

    def __init__(self, agent, batch_size: int, execution: str = 'auto', config=None, p_aug: float = 0.0,
                 placement=None):
        """`placement` (flowrl.engine.placement.Placement): the member mesh of a run, e.g. over every
        process's devices; None: `member_mesh` of the member count (one process)."""
        self.agent, self.placement = agent, placement
        self.execution = resolve_member_execution(execution)
        self.phases = update_phases(agent, config) if config is not None else [(0, agent.update)]
        self.work = dataset_work(agent, config)  # DatasetWork or None
        horizon = 1 if config is None else chunking.sequence_horizon(agent, config)
        self.sampler = Sampler(batch_size, horizon, p_aug, with_rows=self.work is not None)
        self._compiled, self._metric_names = {}, {}

    def function(self, num_members: int = 1, update=None):
        update = update or self.agent.update
        key = (num_members, update)
        if key not in self._compiled:
            def local(states, rngs, totals, alive, dataset, num_updates):
                one = lambda s, r, t, a: train_member(update, self.sampler, num_updates, s, r, dataset, a, t)
                return over_members(one, self.execution)(states, rngs, totals, alive)

            self._compiled[key] = member_program(local, self._mesh(num_members), member_args=4, replicated_args=2,
                                                 donate=(0, 1, 2))
        return self._compiled[key]

    def _mesh(self, num_members: int) -> Mesh:
        return member_mesh(num_members) if self.placement is None else self.placement.mesh

    def _shardings(self, num_members: int):
        if self.placement is None:
            return member_shardings(num_members)
        return self.placement.member_sharding, self.placement.replicated

    def zero_totals(self, update, states, dataset) -> dict:
        """Member-stacked zero sums of the metrics `update` returns."""
        if update not in self._metric_names:  # finding them traces the update: once
            one_member = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), states)
            self._metric_names[update] = metric_names(update, one_member, dataset, self.sampler)
        num_members = jax.tree.leaves(states)[0].shape[0]
        return {k: jnp.zeros((num_members,), jnp.float32) for k in self._metric_names[update]}

    def run(self, states, rngs, totals, dataset, num_updates: int, first_step: int = 0, alive=None):
        """Runs updates first_step+1 .. first_step+num_updates (the chunk must not cross a phase
        start), adding each member's metrics to `totals` (member-stacked sums, or None for zeros).
        `alive` [members] bool (default: all): members that are not keep their state.
        Returns (states, rngs, totals, first_bad [members]: first non-finite update in the chunk or -1)."""
        update = phase_at(self.phases, first_step)
        num_members = rngs.shape[0]
        alive = np.ones(num_members, bool) if alive is None else np.asarray(alive, bool)
        if totals is None:
            totals = self.zero_totals(update, states, dataset)
        # Inputs placed as the outputs will be (no-op when they already are), so that a chunk's
        # outputs fed back in hit the same compiled program.
        members, replicated = self._shardings(num_members)
        states, rngs, totals, alive = jax.device_put((states, rngs, totals, alive), members)
        dataset = jax.device_put(dataset, replicated)
        if self.work is not None and self.work.steps(first_step, first_step + 1):
            self._require_work_arrays(states, dataset)
            states, rngs = self.work_function(num_members, self.work.program(first_step))(states, rngs, alive, dataset)
        return self.function(num_members, update)(states, rngs, totals, alive, dataset, jnp.int32(num_updates))

    def _require_work_arrays(self, states, dataset):
        """The states hold the dataset work's arrays, sized for `dataset` (init_members(rows=...))."""
        arrays = self.work.arrays(states.config, pixels.num_transitions(dataset))
        held = {name: tuple(states.extras[name].shape[1:]) for name in arrays if name in states.extras}
        wanted = {name: tuple(a.shape) for name, a in arrays.items()}
        if held != wanted:
            raise ValueError(f'The agents\' dataset work needs per-row arrays {wanted} in state.extras and the states '
                             f'hold {held}: create them with init_members(..., rows=<dataset rows>).')

    def work_function(self, num_members: int, work):
        """jit(shard_map(members(`work`))) on (states, rngs, alive, dataset) -> (states, rngs): the
        dataset work due at a step, on a key split from each member's; members not alive keep theirs."""
        key = (num_members, 'work', work)
        if key not in self._compiled:
            def one(state, rng, alive, dataset):
                rng, work_rng = jax.random.split(rng)
                new = work(state, dataset, work_rng)
                return jax.tree.map(lambda n, o: jnp.where(alive, n, o), (new, rng), (state, rng))

            def local(states, rngs, alive, dataset):
                return over_members(lambda s, r, a: one(s, r, a, dataset), self.execution)(states, rngs, alive)

            self._compiled[key] = member_program(local, self._mesh(num_members), member_args=3, replicated_args=1,
                                                 donate=(0, 1))
        return self._compiled[key]

    def schedule_steps(self, first_agent_step: int, run_steps: int) -> list:
        """The run's updates (counted from the run's start, whose agents are at `first_agent_step`)
        at which a chunk must end: phase starts and the steps the dataset work runs at."""
        last = first_agent_step + run_steps
        steps = [start for start, _ in self.phases]
        if self.work is not None:
            steps += list(self.work.steps(first_agent_step, last))
        return sorted({step - first_agent_step for step in steps if first_agent_step < step < last})

    def __call__(self, states, rngs, dataset, num_updates: int, first_step: int = 0, alive=None):
        """One chunk from zero totals: (states, rngs, summary), summary = the chunk's per-member
        metric means and NONFINITE_KEY (first non-finite update in the chunk, or -1)."""
        states, rngs, totals, first_bad = self.run(states, rngs, None, dataset, num_updates, first_step, alive)
        return states, rngs, {**{k: v / max(num_updates, 1) for k, v in totals.items()}, NONFINITE_KEY: first_bad}


def init_members(agent, member_configs, member_seeds, example_batch, rows: int | None = None, log=print):
    """Stacked initial states and training RNGs, one per member.

    Members with equal configs share one compiled init; seed i always gives the same state
    whatever the other members are, so member i of an N-member run equals a single run.
    `rows`: the training dataset's size, for an agent with dataset work (`DatasetWork`): its
    per-row arrays are checked against the device's memory and allocated (without `rows` they
    are not, as for evaluating a saved run, which does not read them).
    """
    init = jax.jit(agent.init, static_argnums=2)
    states, rngs = [], []
    for config, seed in zip(member_configs, member_seeds):
        init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
        states.append(init(init_rng, example_batch, ml_collections.FrozenConfigDict(config)))
        rngs.append(train_rng)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    work = dataset_work(agent, member_configs[0])
    if work is not None and rows is not None:
        arrays = work.arrays(states[0].config, rows)
        check_work_memory(work, arrays, len(states), log)
        stacked = with_zero_arrays(stacked, arrays)
    return stacked, jnp.stack(rngs)


def chunk_boundaries(start: int, total: int, intervals, points=()):
    """Steps after `start` (up to `total`) at which a chunk must end, in increasing order: every
    multiple of each interval (log, eval, save), each of `points` (phase starts) and the end.
    Chunks between boundaries run in one dispatch. Generated one at a time, so a huge `total`
    costs no memory up front."""
    intervals = [interval for interval in intervals if interval and interval > 0]
    points = sorted(p for p in points if 0 < p < total)
    step = start
    while step < total:
        following = points[bisect.bisect_right(points, step):bisect.bisect_right(points, step) + 1]
        step = min([total] + following + [(step // interval + 1) * interval for interval in intervals])
        yield step
