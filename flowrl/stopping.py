"""Stops that lose nothing: SIGINT (Ctrl-C), SIGTERM and SIGUSR1 turned into a request that the
run acts on at its next safe point, and worker processes that leave with their parent.

A command (main.py, `python -m flowrl.suites.data`) runs inside `stop_signals_raise()`: a stop signal
raises `Stopped` at once, so that every `finally` runs (temporary files are removed) and the
command ends with one line and exit status 128 + the signal's number (130 for SIGINT, 143 for
SIGTERM, 138 for SIGUSR1, as a shell reports a process the signal killed).

The training loop runs inside `at_safe_points()`: there the handler only records the request
(no race with the code it interrupts: it sets a flag), and the loop looks at `requested()`
between chunks, saves a checkpoint and raises `Stopped` with the line to print (the run's lines,
with the command that continues it: flowrl.run.resume_lines). Work that is
redone anyway (an evaluation) is abandoned through `raise_if_requested()`. A second Ctrl-C
raises at once. Steps that must not be split (a checkpoint's save, the renames that publish a
dataset) run inside `held_back()`, which delivers the signals that arrive during them afterwards.

Worker processes (environments, dataset generation), started within `starting_workers()`, call
`become_worker()`: they ignore stop signals, which a terminal or a batch system also sends them,
leave them to the parent (which ends its workers when it stops), and die with a parent that is
killed outright.
"""

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
NAMES = {signal.SIGINT: 'Ctrl-C (SIGINT)', signal.SIGTERM: 'SIGTERM', signal.SIGUSR1: 'SIGUSR1'}


def signal_name(signum: int) -> str:
    return NAMES.get(signum, signal.Signals(signum).name)


def exit_code(signum: int) -> int:
    """The status a shell reports for a process ended by `signum` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class Stopped(KeyboardInterrupt):
    """A stop that a signal asked for. A KeyboardInterrupt, so that code which cleans up after
    Ctrl-C does so for SIGTERM too. `message`: the one line to print (None: the command words
    it); `at_once`: raised where the signal arrived, not at a safe point."""

    def __init__(self, signum: int, message: str | None = None, at_once: bool = False):
        super().__init__(message or signal_name(signum))
        self.signum, self.message, self.at_once = int(signum), message, at_once

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class _State:
    graceful = False  # inside at_safe_points(): record requests instead of raising
    requested = None  # the first stop signal recorded there, or None


_state = _State()


def _on_stop_signal(signum, frame):
    if not _state.graceful:
        raise Stopped(signum, at_once=True)
    if _state.requested is None:
        _state.requested = signum
        again = '; Ctrl-C again stops at once' if signum == signal.SIGINT else ''
        _say(f'{signal_name(signum)}: stopping at the next safe point (within seconds), with a checkpoint{again}.')
        return
    if signum == signal.SIGINT:
        raise Stopped(signum, at_once=True)
    # Another SIGTERM or SIGUSR1 (a batch system may repeat them): the stop is already under way.


def _say(line: str) -> None:
    """A line on stderr from a signal handler: os.write, since the handler may run while the main
    thread is inside print() on the same stream (a reentrant call there raises)."""
    with contextlib.suppress(OSError):
        os.write(2, f'\n{line}\n'.encode())


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(handler) -> dict:
    """Sets `handler` for every stop signal; returns the previous handlers."""
    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}


def _restore(previous: dict) -> None:
    for signum, handler in previous.items():
        # None: a handler installed outside Python, which cannot be put back; the default is closest.
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def stop_signals_raise():
    """For a whole command: SIGINT, SIGTERM and SIGUSR1 raise `Stopped` (outside `at_safe_points`)."""
    if not _in_main_thread():  # signal handlers can only be set from the main thread
        yield
        return
    previous = _install(_on_stop_signal)
    try:
        yield
    finally:
        _restore(previous)


@contextlib.contextmanager
def at_safe_points(describe=None):
    """Within the block, a stop signal is recorded for the code to act on (`requested()`), a
    second Ctrl-C raises `Stopped(at_once=True)`. `describe(stop)`, if given, words the line of
    a `Stopped` that leaves the block without one."""
    if not _in_main_thread():
        yield
        return
    previous = _install(_on_stop_signal)
    outer = _state.graceful, _state.requested
    _state.graceful, _state.requested = True, None
    try:
        yield
    except Stopped as stop:
        if stop.message is None and describe is not None:
            stop.message = describe(stop)
        raise
    finally:
        _state.graceful, _state.requested = outer
        _restore(previous)


def requested() -> int | None:
    """The stop signal received inside `at_safe_points`, or None."""
    return _state.requested


def raise_if_requested() -> None:
    """For work that a stop may abandon (it is redone after resuming): raises `Stopped` if asked."""
    if _state.requested is not None:
        raise Stopped(_state.requested)


@contextlib.contextmanager
def held_back():
    """Runs the block with stop signals recorded, then hands them to the handlers that were in
    place before it (in order of arrival): for steps that must not be split, such as a
    checkpoint's save or the renames that publish a dataset. A signal whose handler runs only
    after the block (Python runs handlers between bytecodes of the main thread) finds those
    handlers back in place, so it is acted on after the block either way."""
    if not _in_main_thread():
        yield
        return
    received = []
    previous = _install(lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        _restore(previous)
        for signum, frame in received:
            _deliver(previous[signum], signum, frame)


def _deliver(handler, signum: int, frame) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler in (signal.SIG_DFL, None):
        signal.raise_signal(signum)  # what the signal would have done during the block
    # SIG_IGN: ignored, as it would have been


# ----------------------------------------------------------------------------- workers

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PARENT_POLL_S = 1.0


@contextlib.contextmanager
def starting_workers():
    """Around the start of worker processes: stop signals are blocked, a mask that the workers
    inherit (through fork and exec) until `become_worker` ignores them, so that a Ctrl-C or a
    batch system's SIGTERM to every process cannot kill a worker that is still starting. This
    process receives the signals that came meanwhile when the block ends."""
    if not hasattr(signal, 'pthread_sigmask'):
        yield
        return
    # multiprocessing starts its resource tracker at the first spawn, blocking SIGINT and SIGTERM
    # meanwhile and unblocking them after: started first, it cannot undo this block.
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def become_worker(parent_pid: int) -> None:
    """Called first in a worker process (started within `starting_workers`): stop signals are
    ignored (the parent decides when its workers end, and finishes the work in flight first),
    and the worker dies with its parent."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, 'pthread_sigmask'):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    die_with_parent(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """End this worker as soon as the process that started it is gone.

    A parent killed with SIGKILL runs no cleanup, and pipes or queues may never report it (a
    worker can hold both ends of its task pipe): the worker would wait forever, holding hundreds
    of MB. On Linux the kernel kills the worker when its parent dies (prctl PR_SET_PDEATHSIG: it
    fires when the thread that started the worker ends, so workers are started from a thread
    that lives as long as they do); elsewhere a daemon thread polls the parent's pid. Either way
    a parent that died before this ran is caught by comparing os.getppid() with `parent_pid`.
    """
    if not _set_parent_death_signal():
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)
