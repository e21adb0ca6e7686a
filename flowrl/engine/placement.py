"""Where a run's members live: one placement, built once, for one process or for every process
of JAX's multi-controller runtime (a TPU pod slice, a multi-node GPU job, CPU processes).

A run's M members are stacked on one axis sharded over a 1-D mesh of devices. With several
processes (`jax.process_count() > 1`) the mesh spans every process's devices, ordered by
process, and each process holds a contiguous block of members: process p holds members
p*B .. (p+1)*B - 1, B = members per process. The member count is padded up with *inactive*
members so that it divides evenly: every process holds B members and every device used holds
the same number. An inactive member is a copy of member 0's config and seed; it is never
alive (its state is never changed), never evaluated and never logged. How many devices:
each process uses min(its devices, B) of them, so 7 members on one process with 8 devices run
one per device on 7 (a pad on the 8th would do no useful work) and 9 run two per device on 8
(7 pads); 7 members over 2 processes with 4 devices each run on all 8 (1 pad).

Members never communicate: the training chunk runs no collective. What crosses processes is
small and happens on the host side of the loop: per chunk the metric sums and first
non-finite update of every member (`gather`, so every process takes the same decisions, e.g.
freezing a diverged member), per evaluation the per-member statistics, and at start-up the run
directory's name and a hash of the training data. Process 0 alone writes the run's files
(`writes_files`); every process writes its own shards of the checkpoints (orbax).

One process, no distributed flags: `Placement.build(M)` gives the one-process mesh and
`gather` is `jax.device_get`; nothing else changes.
"""

import dataclasses
import hashlib
import json
import math
import os

import jax
import numpy as np
from absl import flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flowrl.errors import UserError

MEMBER_AXIS = 'members'  # flowrl.engine.training's member axis (imported from here would make a cycle)
MAX_PATH_BYTES = 4096  # the run directory's name sent from process 0 to the others


class ProcessLost(UserError):
    """Another process of the run stopped (killed, out of memory, crashed): a collective failed."""


_checkpoint_note = [lambda: 'no checkpoint is known yet']  # set by the run: what a lost process leaves


def tell_checkpoints_with(note) -> None:
    """`note()` says where the newest checkpoint is when a lost process stops the run."""
    _checkpoint_note[0] = note


def _collective(what: str, call):
    """`call()`, a collective with the other processes; a failure (another process is gone: JAX
    says so at once when a connection closes, or after its heartbeat timeout) is a ProcessLost
    naming the newest checkpoint."""
    try:
        return call()
    except (jax.errors.JaxRuntimeError, ValueError, RuntimeError) as error:
        # JAX reports a closed connection of its CPU collectives (gloo) as a ValueError at some call sites.
        lost = isinstance(error, jax.errors.JaxRuntimeError) or any(
            sign in str(error) for sign in ('Gloo', 'UNAVAILABLE', 'heartbeat', 'DEADLINE_EXCEEDED'))
        if not lost:
            raise
        raise ProcessLost(f'Another process of this run stopped (killed, out of memory or crashed: see its log) '
                          f'while this one was {what} ({str(error).splitlines()[0][:200]}); '
                          f'{_checkpoint_note[0]()}: resume with --resume=RUN_DIR on every process.') from None


@dataclasses.dataclass(frozen=True)
class Placement:
    """The member mesh and which members each process holds (see the module docstring)."""
    mesh: Mesh
    num_members: int  # real members (the run's labels)
    padded: int  # real + inactive members: the length of every member-stacked array
    process_index: int
    process_count: int

    @classmethod
    def build(cls, num_members: int, devices=None, process_index: int | None = None) -> 'Placement':
        """The placement of `num_members` members over `devices` (default: `jax.devices()`, every
        process's)."""
        if num_members < 1:
            raise ValueError(f'A run has at least one member, got {num_members}.')
        devices = list(jax.devices() if devices is None else devices)
        processes = sorted({d.process_index for d in devices})
        per_process = math.ceil(num_members / len(processes))
        local = {p: sorted((d for d in devices if d.process_index == p), key=lambda d: d.id) for p in processes}
        used = min(per_process, min(len(ds) for ds in local.values()))
        per_device = math.ceil(per_process / used)
        ordered = [d for p in processes for d in local[p][:used]]
        return cls(Mesh(np.asarray(ordered), (MEMBER_AXIS,)), num_members, len(ordered) * per_device,
                   jax.process_index() if process_index is None else process_index, len(processes))

    # -- who holds what ----------------------------------------------------------------------
    @property
    def multi_process(self) -> bool:
        return self.process_count > 1

    @property
    def writes_files(self) -> bool:
        """Process 0 alone writes the run's files (flags, CSVs, JSON, loggers, report)."""
        return self.process_index == 0

    @property
    def per_process(self) -> int:
        return self.padded // self.process_count

    @property
    def local_members(self) -> np.ndarray:
        """Indices (global, inactive ones included) of the members this process holds."""
        start = self.process_index * self.per_process
        return np.arange(start, start + self.per_process)

    @property
    def active(self) -> np.ndarray:
        """[padded] bool: True for the run's real members, False for the inactive padding."""
        return np.arange(self.padded) < self.num_members

    @property
    def member_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(MEMBER_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def local_replicated(self) -> NamedSharding:
        """Replicated over this process's devices of the mesh (all of it with one process)."""
        return NamedSharding(self.mesh.local_mesh, PartitionSpec())

    def padded_list(self, values: list) -> list:
        """`values` (one per real member) with member 0's value for each inactive member."""
        return list(values) + [values[0]] * (self.padded - self.num_members)

    def describe(self) -> str:
        """One line: this process, its devices and the members it holds."""
        held = self.local_members[self.local_members < self.num_members]
        span = f'{held[0]}-{held[-1]}' if len(held) > 1 else (str(held[0]) if len(held) else 'none')
        devices = self.mesh.devices.size // self.process_count
        pads = self.padded - self.num_members
        padding = (f'; {pads} inactive member(s) pad the {self.num_members} so that every device holds '
                   f'{self.padded // self.mesh.devices.size}' if pads else '')
        return (f'Process {self.process_index} of {self.process_count}: {jax.local_device_count()} '
                f'{jax.default_backend()} device(s), {devices} used, members {span} of {self.num_members}{padding}.')

    # -- moving member-stacked data ------------------------------------------------------------
    def put(self, tree):
        """Member-stacked arrays [padded, ...] with the same values on every process onto the
        member mesh (each process places only its own members' rows)."""
        if not self.multi_process:
            return jax.device_put(tree, self.member_sharding)
        return jax.tree.map(lambda x: self.put_local(np.asarray(x)[self.local_members]), tree)

    def put_local(self, tree):
        """Arrays holding this process's members' rows [per_process, ...] as member-stacked
        arrays over the whole mesh."""
        if not self.multi_process:
            return jax.device_put(tree, self.member_sharding)
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self.member_sharding, np.asarray(x)),
                            tree)

    def put_own(self, tree):
        """Arrays whose values differ between processes (each process's own data: a stream of
        shards, flowrl.run.stream) as arrays replicated over the mesh, every device of a process
        holding that process's values; one process: `jax.device_put` replicated. A member's
        program reads its own device's copy, so nothing ever compares the processes' copies."""
        if not self.multi_process:
            return jax.device_put(tree, self.replicated)
        devices = [d for d in self.mesh.devices.flat if d.process_index == self.process_index]
        return jax.tree.map(lambda x: jax.make_array_from_single_device_arrays(
            np.shape(x), self.replicated, [jax.device_put(np.asarray(x), d) for d in devices]), tree)

    def local(self, tree):
        """This process's members' rows of member-stacked arrays, as arrays on its own devices
        (no copy): what the host-side work of a process (evaluation, validation) computes on."""
        if not self.multi_process:
            return tree
        from jax.experimental import multihost_utils

        return multihost_utils.global_array_to_host_local_array(tree, self.mesh, PartitionSpec(MEMBER_AXIS))

    def gather(self, tree):
        """Member-stacked arrays (global, or this process's rows as host arrays) as host arrays
        of every member [padded, ...], on every process. One small collective with several
        processes; `jax.device_get` with one."""
        if not self.multi_process:
            return jax.device_get(tree)
        from jax.experimental import multihost_utils

        def gather_leaf(x):
            if isinstance(x, jax.Array):
                return np.asarray(multihost_utils.process_allgather(x, tiled=True))
            # Host data travels as its bytes: JAX would narrow float64 (evaluation returns) to float32.
            x = np.ascontiguousarray(x)
            rows = np.asarray(multihost_utils.process_allgather(x.view(np.uint8).reshape(len(x), -1), tiled=True))
            return rows.view(x.dtype).reshape((-1,) + x.shape[1:])

        return _collective('gathering results', lambda: jax.tree.map(gather_leaf, tree))

    # -- agreeing across processes --------------------------------------------------------------
    def agreed(self, value: int) -> int:
        """Process 0's `value` on every process: for what each process would decide by itself but
        the global program needs the same on all (a chunk's length, timed by each process)."""
        if not self.multi_process:
            return value
        return int(self.gather(np.asarray([value], np.int64))[0])

    def barrier(self, name: str) -> None:
        """Waits until every process reaches the barrier `name` (no-op with one process)."""
        if self.multi_process:
            from jax.experimental import multihost_utils

            _collective(f'waiting for the others ({name})', lambda: multihost_utils.sync_global_devices(f'flowrl:{name}'))

    def from_writer(self, value: str) -> str:
        """Process 0's `value` (a short string, e.g. the run directory it made), on every process."""
        if not self.multi_process:
            return value
        from jax.experimental import multihost_utils

        encoded = value.encode() if self.writes_files else b''
        if len(encoded) > MAX_PATH_BYTES:
            raise UserError(f'{value!r} is longer than {MAX_PATH_BYTES} bytes; use a shorter --save_dir.')
        buffer = np.zeros(MAX_PATH_BYTES + 1, np.uint8)
        buffer[0:len(encoded)] = np.frombuffer(encoded, np.uint8)
        buffer[-1] = 1  # never all zeros
        received = np.asarray(_collective('receiving from process 0',
                                          lambda: multihost_utils.broadcast_one_to_all(buffer)))
        return bytes(received[:-1]).rstrip(b'\0').decode()

    def on_writer(self, compute):
        """`compute()` (JSON-able result) run on process 0 alone, its result, or the UserError it
        raised, on every process: for what one process must do for all (set damaged checkpoints
        aside) while the others wait for the outcome."""
        if not self.multi_process:
            return compute()
        outcome = {}
        if self.writes_files:
            try:
                outcome = dict(value=compute())
            except UserError as error:
                outcome = dict(error=str(error))
        received = json.loads(self.from_writer(json.dumps(outcome)))
        if 'error' in received:
            raise UserError(received['error'])
        return received['value']

    def require_same_data(self, dataset: dict, source: str) -> None:
        """Every process trains on the same data: the hashes of the training arrays each process
        loaded from its own disk must agree, else every process stops with the same sentence."""
        if not self.multi_process:
            return
        digests = self.gather(np.frombuffer(data_digest(dataset), np.uint8)[None])
        differ = [p for p in range(self.process_count) if not np.array_equal(digests[p], digests[0])]
        if differ:
            raise UserError(f'The training data differs between processes: process(es) '
                            f'{", ".join(map(str, differ))} loaded other data than process 0 ({source}; sha256 of '
                            f'the arrays {bytes(digests[0]).hex()[:12]}… on process 0, '
                            f'{bytes(digests[differ[0]]).hex()[:12]}… on process {differ[0]}); give every host the '
                            'same dataset file.')


def whole_array_sharding():
    """A sharding with which every process holds whole arrays (checkpointed agents read to the
    host): one local device with one process; replicated over every device with several (orbax
    reads together, and a replicated array can be read on each host)."""
    if jax.process_count() == 1:
        return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return NamedSharding(Mesh(np.asarray(jax.devices()), ('all',)), PartitionSpec())


def whole_value(array) -> np.ndarray:
    """The host value of an array read with `whole_array_sharding` (any local copy of it)."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        return np.asarray(array.addressable_data(0))
    return np.asarray(array)


def data_digest(dataset: dict) -> bytes:
    """sha256 over a dataset's arrays (names, dtypes, shapes and bytes, in name order): the same
    digest exactly when the arrays are the same, wherever they were read from."""
    digest = hashlib.sha256()
    for name in sorted(dataset):
        array = np.ascontiguousarray(np.asarray(dataset[name]))
        digest.update(f'{name}:{array.dtype.str}:{array.shape};'.encode())
        digest.update(memoryview(array).cast('B'))
    return digest.digest()


# -- joining the multi-controller runtime ------------------------------------------------------
def define_flags(flag_values: flags.FlagValues, module_name: str) -> None:
    """The start-up flags of main.py and flowrl.run.evaluate_run (not run settings: a resumed run may
    use other ones, within what its checkpoints allow), in the command's registry `flag_values`."""
    flags.DEFINE_enum('distributed', 'auto', ['auto', 'on', 'off'],
                      'Join JAX\'s multi-controller runtime (one process per host of a TPU pod slice or per task of '
                      'a Slurm/Open MPI job; every process runs the same command): on (jax.distributed.initialize '
                      'with JAX\'s cluster detection), off, or auto (on when --coordinator_address is given or the '
                      'environment names more than one Slurm task or Open MPI rank).',
                      flag_values=flag_values, module_name=module_name)
    flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for processes started by hand '
                        '(e.g. CPU processes on one machine); with --num_processes and --process_id.',
                        flag_values=flag_values, module_name=module_name)
    flags.DEFINE_integer('num_processes', None, 'Number of processes (with --coordinator_address).',
                         flag_values=flag_values, module_name=module_name)
    flags.DEFINE_integer('process_id', None, 'This process\'s index, 0 .. num_processes - 1 (with '
                         '--coordinator_address).', flag_values=flag_values, module_name=module_name)


def _environment_processes() -> int:
    """How many processes the job's environment says this one belongs to (1 when it says nothing):
    a Slurm step's tasks or an Open MPI job's ranks. Cloud TPU pod slices are named by metadata,
    not the environment: pass --distributed=on there."""
    for name in ('SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 1


def join(mode: str = 'auto', coordinator_address: str | None = None, num_processes: int | None = None,
         process_id: int | None = None) -> bool:
    """Joins the multi-controller runtime when asked (see `define_flags`); True if it did. Must run
    before JAX starts a backend. CPU processes exchange data through gloo."""
    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        raise UserError('--coordinator_address, --num_processes and --process_id go together: give all three '
                        '(or none, for JAX\'s cluster detection with --distributed=on).')
    if mode == 'off':
        if coordinator_address is not None:
            raise UserError('--distributed=off contradicts --coordinator_address; leave one out.')
        return False
    if coordinator_address is not None:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise UserError(f'--process_id must be in 0..{num_processes - 1} and --num_processes positive, got '
                            f'--process_id={process_id} --num_processes={num_processes}.')
    elif mode == 'auto' and _environment_processes() <= 1:
        return False
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    except (ValueError, RuntimeError) as error:
        raise UserError(f'Could not join the multi-controller runtime ({type(error).__name__}: '
                        f'{str(error).splitlines()[0][:300]}); pass --coordinator_address, --num_processes and '
                        '--process_id, or --distributed=off for one process.') from None
    return True
