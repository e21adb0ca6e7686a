"""A batch of environments stepped together, in this process or split over worker processes.

Evaluation steps many MuJoCo environments on the host; with `workers > 1` each worker process
owns a contiguous slice of them, so a many-core machine steps them in parallel while the
accelerator computes the next batch of actions. Results do not depend on the worker count:
every environment is reset with its own seed.

An OGBench environment holds ~160 MB (measured: 157-161 MB each for cube-double, puzzle-4x4
and scene, mostly MuJoCo's rendering buffers), so the pool size is bounded by
`default_env_count` rather than by how many episodes an evaluation runs: by what the worker
processes can step (ENVS_PER_WORKER each; more only add memory, docs/PERFORMANCE.md "Evaluation
memory") and by the memory available.

Workers ignore stop signals (Ctrl-C reaches every process of the terminal's group, a batch
system signals every process of a job): the parent finishes the work in flight and then closes
its pools (flowrl.stopping). A worker whose parent is gone exits quietly; one that is still there
when the parent exits is killed.
"""

import atexit
import contextlib
import functools
import multiprocessing as mp
import os
import weakref

import numpy as np

from flowrl import host_memory, stopping
from flowrl.time_limits import time_limit

ENV_MEMORY_BYTES = 160 * 2**20  # one OGBench environment (measured, see above)
MEMORY_FRACTION = 0.5  # of the memory available when the pool is built
# Environments per worker process beyond which evaluation got no faster on the 2-core dev machine
# (benchmarks/eval_pool_size.py; the curve is in docs/PERFORMANCE.md, "Evaluation memory").
ENVS_PER_WORKER = 8
CLOSE_TIMEOUT_S = 10.0  # a worker asked to close has this long to finish its step


def default_env_count(needed: int, workers: int, memory_bytes: int | None = None) -> int:
    """How many environments to keep alive for `needed` episodes stepped by `workers` processes:
    ENVS_PER_WORKER per worker, no more than MEMORY_FRACTION of the available memory holds at
    ENV_MEMORY_BYTES each, at least one. The total number of environment steps does not depend on
    the pool size; a larger pool only saves lock-step rounds (a policy call and a round trip to the
    workers each), which stop mattering once every worker has a few dozen steps per round."""
    memory_bytes = host_memory.available_bytes() if memory_bytes is None else memory_bytes
    by_memory = needed if memory_bytes is None else int(memory_bytes * MEMORY_FRACTION // ENV_MEMORY_BYTES)
    return max(1, min(needed, ENVS_PER_WORKER * max(1, workers), by_memory))


class _Slice:
    """The environments of one worker (or of the whole pool when stepping in-process)."""

    def __init__(self, make_env, count):
        self.envs = [make_env() for _ in range(count)]

    def _observations(self):
        """Zero observations of every env, in the observation space's dtype: images stay uint8
        (a quarter of float32's bytes through the pipes and to the device)."""
        space = self.envs[0].observation_space
        return np.zeros((len(self.envs),) + space.shape, space.dtype)

    def spaces(self):
        """(observation space, action space, time limit or None) of the first environment."""
        env = self.envs[0]
        return env.observation_space, env.action_space, time_limit(env)

    def reset(self, seeds, selected):
        """Resets the selected envs with their seeds; returns every env's obs (zeros if not reset)."""
        obs = self._observations()
        for i in np.nonzero(selected)[0]:
            obs[i] = self.envs[i].reset(seed=int(seeds[i]))[0]
        return obs

    def step(self, actions, active):
        """Steps the active envs; returns (obs, reward, terminated, truncated, success) for every
        env (zeros if inactive)."""
        count = len(self.envs)
        obs = self._observations()
        reward, success = np.zeros(count), np.zeros(count)
        terminated, truncated = np.zeros(count, bool), np.zeros(count, bool)
        for i in np.nonzero(active)[0]:
            obs[i], reward[i], terminated[i], truncated[i], info = self.envs[i].step(actions[i])
            success[i] = float(info.get('success', np.nan))  # NaN: the environment has no notion of success
        return obs, reward, terminated, truncated, success


def _worker(connection, make_env, count, parent_pid):
    stopping.become_worker(parent_pid)
    envs = _Slice(make_env, count)
    # EOF or a broken pipe: the parent is gone (stopped at once, or killed), nobody to answer.
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        while True:
            command, args = connection.recv()
            if command == 'close':
                break
            connection.send(getattr(envs, command)(*args))
    connection.close()


def _close_if_alive(pool_reference) -> None:
    pool = pool_reference()
    if pool is not None:
        pool.close()


class EnvPool:
    """`count` environments from `make_env` (a picklable callable), over `workers` processes."""

    def __init__(self, make_env, count: int, workers: int = 1):
        self.count, self.closed = count, False
        workers = max(1, min(workers, count))
        self.bounds = np.linspace(0, count, workers + 1).astype(int)
        if workers == 1:
            self.local, self.connections, self.processes = _Slice(make_env, count), [], []
            self._answers_due = False
            return
        self.local, self._answers_due = None, False
        context = mp.get_context('spawn')  # fork is unsafe once JAX has started its threads
        self.connections, self.processes = [], []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, make_env, hi - lo, os.getpid()), daemon=True)
            with stopping.starting_workers():
                process.start()
            self.connections.append(parent)
            self.processes.append(process)
        # Run before multiprocessing's own exit hook (registered earlier, so run later), which would
        # send the workers a SIGTERM they ignore and then wait for them forever. A weak reference:
        # a pool nobody holds is still collected (and closed by __del__).
        self._close_at_exit = functools.partial(_close_if_alive, weakref.ref(self))
        atexit.register(self._close_at_exit)

    def _call(self, command, *arrays):
        if self.local is not None:
            return getattr(self.local, command)(*arrays)
        self._answers_due = True
        for connection, lo, hi in zip(self.connections, self.bounds[:-1], self.bounds[1:]):
            connection.send((command, tuple(a[lo:hi] for a in arrays)))
        parts = [connection.recv() for connection in self.connections]
        self._answers_due = False
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(p) for p in zip(*parts))
        return np.concatenate(parts)

    def spaces(self):
        """(observation space, action space, time limit: gymnasium's max_episode_steps or None) of
        the environments (all made by one `make_env`)."""
        if self.local is not None:
            return self.local.spaces()
        self.connections[0].send(('spaces', ()))
        return self.connections[0].recv()

    def reset(self, seeds, selected=None):
        """Resets the envs where `selected` (default: all) with the given seeds."""
        selected = np.ones(self.count, bool) if selected is None else np.asarray(selected)
        return self._call('reset', np.asarray(seeds), selected)

    def step(self, actions, active):
        return self._call('step', np.asarray(actions), np.asarray(active))

    def close(self):
        """Ends the workers: asked to, then (after CLOSE_TIMEOUT_S) killed; killed at once when a
        call was cut short (a stop at once): they may be blocked on answers nobody reads."""
        for connection in self.connections:
            with contextlib.suppress(OSError):  # a worker that is already gone
                connection.send(('close', ()))
        for process in self.processes:
            process.join(timeout=0 if self._answers_due else CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self.connections:
            connection.close()
        if self.processes:
            atexit.unregister(self._close_at_exit)
        self.connections, self.processes = [], []
        self.closed = True

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the daemons die with us
            pass
