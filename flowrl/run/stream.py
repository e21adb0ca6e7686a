"""A sharded dataset streamed through a run within a memory bound (OGBench's 100M/1B datasets).

The compiled chunk program takes the dataset as an argument; with shards that argument is a
*window*: K shards of R transitions concatenated into one dict of arrays of fixed shape [K*R, ...],
so that swapping a shard never compiles the program again. Every `--dataset_replace_interval`
offline updates (at a chunk start: the schedule puts chunk boundaries at its multiples) the
oldest shard of the window leaves and the next shard of the order takes its slot, written in
place on the device; the next shard is read by a background thread while the chunks run, and the
swap waits for it when it is not done. A batch draws rows of the window uniformly (the engine's
sampler, unchanged); each shard holds whole episodes, so a transition never mixes two shards.

The order: this process's shards in a permutation per pass drawn from the run's seed (pass p:
`np.random.default_rng([seed, p])`), skipping a shard already in the window. Where the stream
is (`StreamState`: swaps made, the next position in the order, the shard of each slot) is part
of the run's Position and of every checkpoint, so a resume rebuilds the same window and goes on
with the same order. Online fine-tuning after a streamed offline phase uses the window of the
last offline chunk as its dataset (the Q-chunking code goes on with its current shard).

Across processes each process streams its own shards (process i: shards i, i+P, ...; the
remainder of an uneven split is left out), with the same K, R, interval and order of indices:
the window is a replicated argument whose rows differ between processes, and the members of
process p train on process p's shards.
"""

import concurrent.futures
import dataclasses
import functools

import jax
import numpy as np

from flowrl import suites
from flowrl.engine.training import free_bytes
from flowrl.errors import UserError

HEADROOM = 0.5  # the default window takes at most this part of the free memory (states, programs: the rest)


@dataclasses.dataclass(frozen=True)
class StreamState:
    """Where a stream is: `swaps` made, `next` position in the order to look at, the shard
    (index into this process's shards) in each window slot."""
    swaps: int
    next: int
    slots: tuple

    def as_row(self) -> np.ndarray:
        return np.asarray([self.swaps, self.next, *self.slots], np.int32)

    @classmethod
    def from_row(cls, row) -> 'StreamState':
        row = [int(x) for x in np.asarray(row)]
        return cls(row[0], row[1], tuple(row[2:]))


@functools.lru_cache(maxsize=64)
def pass_order(seed: int, count: int, pass_index: int) -> tuple:
    """The order of `count` shards in pass `pass_index`: a permutation drawn from the seed alone."""
    return tuple(int(i) for i in np.random.default_rng([seed, pass_index]).permutation(count))


def nth_shard(seed: int, count: int, n: int) -> int:
    return pass_order(seed, count, n // count)[n % count]


def first_state(seed: int, count: int, window: int) -> StreamState:
    """The first window: the first `window` shards of pass 0 (distinct: window <= count)."""
    return StreamState(0, window, tuple(nth_shard(seed, count, n) for n in range(window)))


def after_swap(state: StreamState, seed: int, count: int) -> StreamState:
    """The state one swap later: slot `swaps % K` (the oldest shard) takes the next shard of the
    order that is not in the window (there is one: K < count)."""
    n = state.next
    while nth_shard(seed, count, n) in state.slots:
        n += 1
    slot = state.swaps % len(state.slots)
    slots = state.slots[:slot] + (nth_shard(seed, count, n),) + state.slots[slot + 1:]
    return StreamState(state.swaps + 1, n + 1, slots)


def process_shards(files: list, process_index: int, process_count: int) -> list:
    """This process's shards: i, i+P, ..., as many as every process gets (the rest is left out)."""
    each = len(files) // process_count
    if each == 0:
        raise UserError(f'{len(files)} shard(s) cannot be split among {process_count} processes, each of which streams '
                        f'its own shards; give at least {process_count} shards or run fewer processes.')
    return list(files[process_index::process_count][:each])


def choose_window(requested: int, count: int, shard_bytes: int, free: int | None) -> int:
    """K: `requested` (0: the most shards that fit in HEADROOM of `free`, at least 1, at most
    `count`), refused in one sentence when it exceeds the shards or the memory."""
    if requested > count:
        raise UserError(f'--shard_window={requested} is more than the {count} shard(s) this process streams; pass at '
                        f'most {count}.')
    window = requested or (count if free is None else min(count, max(1, int(free * HEADROOM // shard_bytes) - 1)))
    need = peak_bytes(window, count, shard_bytes)
    if free is not None and need > free:
        raise UserError(f'A window of {window} shard(s) needs {readable(need)} (the window plus one loading shard, '
                        f'{readable(shard_bytes)} each) and {readable(free)} is free; pass a smaller --shard_window'
                        + (' or use a machine with more memory.' if window == 1 else '.'))
    return window


def peak_bytes(window: int, count: int, shard_bytes: int) -> int:
    """The window plus the shard loading beside it (none when every shard is in the window)."""
    return (window + (window < count)) * shard_bytes


def readable(count: int) -> str:
    """A byte count in GiB, or MiB / KiB below one GiB (tiny shards: tests, local shards)."""
    for unit, scale in (('GiB', 2**30), ('MiB', 2**20)):
        if count >= scale:
            return f'{count / scale:.2f} {unit}'
    return f'{count / 2**10:.1f} KiB'


def size_of(transitions: dict) -> int:
    return sum(np.asarray(a).nbytes for a in transitions.values())


def swaps_before(step: int, interval: int, offline_steps: int) -> int:
    """Swaps made before the chunk that starts at update `step`: one per `interval` offline
    updates; online steps keep the window of the last offline chunk."""
    if not interval or offline_steps == 0:
        return 0
    return min(step, offline_steps - 1) // interval


def replace_rows(window: dict, shard: dict, start):
    return {k: jax.lax.dynamic_update_slice_in_dim(window[k], shard[k], start, 0) for k in window}


class ShardStream:
    """The window on the devices and the background loading of the next shard."""

    def __init__(self, files: list, read, seed: int, window: int, interval: int, offline_steps: int, rows: int,
                 place):
        """`files`: this process's shards; `read(path)`: their transitions as the run trains on them;
        `rows`: transitions per shard; `place(host dict)`: onto the devices, replicated."""
        self.files, self.read, self.seed, self.window, self.rows, self.place = files, read, seed, window, rows, place
        self.interval = interval if window < len(files) else 0  # every shard in the window: nothing to swap
        self.offline_steps = offline_steps
        self.state, self.device = None, None  # the window on the devices and which state it holds
        self.ready = {}  # shard -> transitions read ahead of need (the shard measured at set-up)
        self.loading = None  # (shard, future) of the background read
        self.listeners = []  # called with the new window whenever it changes (online fine-tuning's dataset)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='flowrl-shards')
        self._replace = jax.jit(replace_rows, donate_argnums=0)

    # -- where the stream is ----------------------------------------------------------------------
    def first(self) -> StreamState:
        return first_state(self.seed, len(self.files), self.window)

    def state_at(self, state: StreamState, step: int) -> StreamState:
        """`state` advanced by the swaps due before the chunk that starts at update `step`."""
        while state.swaps < swaps_before(step, self.interval, self.offline_steps):
            state = after_swap(state, self.seed, len(self.files))
        return state

    # -- the window on the devices --------------------------------------------------------------
    def window_for(self, state: StreamState):
        """The window of `state` on the devices: one shard written into its slot when `state` is
        one swap past the window held, else (the first window, a resume) every slot read."""
        if state == self.state:
            return self.device
        if self.state is not None and state == after_swap(self.state, self.seed, len(self.files)):
            slot = self.state.swaps % self.window
            self.device = self._replace(self.device, self._take_placed(state.slots[slot]), slot * self.rows)
        else:
            self.device = None  # the old window goes before the new one is built
            shards = [self._take(shard) for shard in state.slots]
            self.device = self.place({k: np.concatenate([s[k] for s in shards]) for k in shards[0]})
        self.state = state
        if state.swaps < swaps_before(self.offline_steps, self.interval, self.offline_steps):  # another swap comes
            following = after_swap(state, self.seed, len(self.files))
            self._read_ahead(following.slots[state.swaps % self.window])
        for listener in self.listeners:
            listener(self.device)
        return self.device

    def _take(self, shard: int) -> dict:
        """The transitions of `shard` on the host: read ahead, or read now."""
        if shard in self.ready:
            return self.ready.pop(shard)
        if self.loading is not None and self.loading[0] == shard:  # this process's copy of what was placed
            return jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data), self._take_placed(shard))
        return self.checked(shard, self.read(self.files[shard]))

    def _take_placed(self, shard: int) -> dict:
        """The transitions of `shard` on the devices: those read and placed in the background
        (waited for when not done), or read and placed now."""
        if self.loading is not None and self.loading[0] == shard:
            future, self.loading = self.loading[1], None
            return future.result()
        return self.place(self._take(shard))

    def _read_ahead(self, shard: int) -> None:
        """Reads `shard` and copies it to the devices in the background thread, while chunks run."""
        if self.loading is None or self.loading[0] != shard:
            self.loading = (shard, self.executor.submit(
                lambda: self.place(self.checked(shard, self.read(self.files[shard])))))

    def checked(self, shard: int, transitions: dict) -> dict:
        got = len(transitions['actions'])
        if got != self.rows:
            raise UserError(f'Shard {self.files[shard]} holds {got:,} transitions where the window\'s slots hold '
                            f'{self.rows:,}; a streamed dataset needs shards of equal size (OGBench\'s are).')
        return transitions

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def shard_reader(shards, reward_rule, prepare, observation_shape=None, action_dim=None):
    """path -> a shard's transitions as the run trains on them: the task's reward rule applied
    once (suites.with_run_rewards), checked (suites.check_transitions), the agent's prepare_dataset."""
    def read(path: str) -> dict:
        data = suites.with_run_rewards(suites.LoadedData(shards.read(path), None, path, {}), reward_rule)
        suites.check_transitions(data.train, f'The shard {path}', observation_shape, action_dim)
        return prepare(data.train)

    return read


def open_stream(shards, read, placement, seed: int, requested_window: int, interval: int, offline_steps: int,
                log=print) -> ShardStream:
    """The stream of this process's shards with its first window on the devices: the shards
    split among processes, their sizes checked (equal), K chosen or checked against free
    memory (process 0's on every process), and the first screen's lines."""
    from flowrl.suites.data.shards import require_equal_rows

    names = '\n'.join(path.rsplit('/', 1)[-1] for path in shards.files)
    placement.require_same_data(dict(shard_names=np.frombuffer(names.encode(), np.uint8)), shards.source)
    files = process_shards(list(shards.files), placement.process_index, placement.process_count)
    require_equal_rows(files)
    first_shard = nth_shard(seed, len(files), 0)
    first = read(files[first_shard])
    rows, shard_bytes = len(first['actions']), size_of(first)
    sizes = np.asarray(placement.gather(np.asarray([rows], np.int64))).ravel()
    if len(set(sizes.tolist())) > 1:
        raise UserError(f'The processes\' shards differ in size ({", ".join(f"{int(r):,}" for r in sizes)} '
                        'transitions); a streamed dataset needs shards of equal size.')
    window = placement.agreed(choose_window(requested_window, len(files), shard_bytes,
                                            free_bytes(jax.local_devices()[0])))
    stream = ShardStream(files, read, seed, window, interval, offline_steps, rows, place=placement.put_own)
    stream.ready[first_shard] = stream.checked(first_shard, first)
    stream.example = {k: np.asarray(v[:2]) for k, v in first.items()}  # what the agents are initialised with
    stream.first_episodes = int(np.sum(first['terminals']))
    spread = (f'; process {placement.process_index} of {placement.process_count} streams {len(files)} of them'
              if placement.multi_process else '')
    swaps = (f'the oldest replaced every {stream.interval:,} offline updates (--dataset_replace_interval), the next '
             'read in the background' if stream.interval else 'never swapped')
    log(f'Shards: {len(shards.files)} ({shards.source}){spread}; a window of {window} (--shard_window) of '
        f'{rows:,} transitions each, {swaps}; peak memory {readable(peak_bytes(window, len(files), shard_bytes))} '
        f'(the window plus one loading shard, {readable(shard_bytes)} each).')
    return stream
