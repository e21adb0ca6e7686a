"""Checkpoints of the whole training carry with orbax-checkpoint, verified by checksums.

What is saved is the full pytree the training loop carries (agent states with params,
optimizer states, targets and dynamic hyperparameters; the per-member RNG keys; the step).
Orbax writes each step into a temporary directory and renames it when complete, so an
interrupted save never leaves a checkpoint that is later trusted. After the save, a manifest
with the sha256 of every file of the step directory is written into it (temporary file +
rename); a restore first checks the files against it, so a flipped bit, garbled bytes or a
truncated file are caught before they can change results. A step without a manifest (saved
by an older flowrl, or interrupted between the save and the manifest) is unverified: it is
used only when no verified step exists, and saying so.

A save holds stop signals back until it is complete (flowrl.stopping.held_back). A save that
fails (a full disk) removes what it wrote and raises; orbax's temporary directory left by a
process killed while saving (`<step>.orbax-checkpoint-tmp`) is removed when the run resumes
(`remove_unfinished`). Files beside orbax's in a step directory (`attachments`, e.g. the metric
sums of a run stopped between two log rows) are covered by the manifest like orbax's own.
"""

import contextlib
import glob
import hashlib
import logging
import os
import shutil
import sys
import time

import jax
import orbax.checkpoint as ocp

from flowrl import run_files, stopping
from flowrl.disk import is_no_space, naming_no_space
from flowrl.errors import UserError

MANIFEST = 'flowrl_checksums.json'
MAX_TO_KEEP = 2  # the newest, and the previous one to fall back to if the newest is damaged
NO_MANIFEST = 'has no checksum manifest'


def _manager(directory, max_to_keep=MAX_TO_KEEP, this_process_only: bool = False):
    """Orbax's manager of `directory`. With several processes (JAX's multi-controller runtime)
    orbax synchronises them when a manager starts, saves or restores: every process must make
    the same calls. `this_process_only`: a manager that looks at the directory without waiting
    for the others (listing steps)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not this_process_only)
    if this_process_only and jax.process_count() > 1:
        me = jax.process_index()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=False,
                                               multiprocessing_options=ocp.options.MultiprocessingOptions(
                                                   primary_host=me, active_processes={me}))
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def step_dir(directory, step: int) -> str:
    return os.path.join(os.path.abspath(directory), str(int(step)))


UNFINISHED = '.orbax-checkpoint-tmp'  # orbax writes step N under N.orbax-checkpoint-tmp[-<time>], then renames it


def save(directory, step: int, tree, attachments: dict | None = None, writes_manifest: bool = True) -> None:
    """Saves `tree` as checkpoint `step` under `directory`, waits until it is on disk, adds the
    `attachments` ({file name: bytes}) beside it, then writes its checksum manifest. On failure
    nothing of this step is left (a lack of space raises flowrl.disk.NoSpace); signals wait.
    With several processes every process calls it (orbax: each writes its own shards of the
    arrays) and one, `writes_manifest`, adds the attachments and the manifest once the
    checkpoint is complete, and cleans up after a failure."""
    path = step_dir(directory, step)
    existed = os.path.exists(path)
    with (stopping.held_back(), naming_no_space(f'checkpoint {int(step)} in {os.path.abspath(directory)}'),
          _orbax_reports_left_to_the_caller()):
        try:
            with _manager(directory) as manager:
                manager.save(int(step), args=ocp.args.StandardSave(tree), force=True)
                manager.wait_until_finished()
            if writes_manifest:
                for name, data in (attachments or {}).items():
                    run_files.write_atomic(os.path.join(path, name), data)
                write_manifest(path)
        except BaseException:
            if writes_manifest:
                _remove_step(directory, step, keep_complete=existed)
            raise


def _remove_step(directory, step: int, keep_complete: bool) -> None:
    """Removes orbax's temporary directory of `step` and, unless `keep_complete`, the step itself."""
    leftovers = glob.glob(glob.escape(step_dir(directory, step)) + UNFINISHED + '*')
    for path in leftovers + ([] if keep_complete else [step_dir(directory, step)]):
        shutil.rmtree(path, ignore_errors=True)


def remove_unfinished(directory) -> list[str]:
    """Removes the temporary directories of saves that never completed (a process killed while
    saving); returns their names."""
    found = sorted(glob.glob(os.path.join(glob.escape(os.path.abspath(directory)), '*' + UNFINISHED + '*')))
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return [os.path.basename(path) for path in found]


# What TensorStore's writes still in flight report when they complete after orbax closed the
# event loop of a failed save (or while the interpreter exits), through sys.unraisablehook.
LATE_WRITE_ERRORS = ('Event loop is closed', 'sys.meta_path is None')


def _unless_a_late_write(hook):
    """`hook` (a sys.unraisablehook) for everything but the reports of LATE_WRITE_ERRORS."""
    def filtered(unraisable):
        if not any(text in str(unraisable.exc_value) for text in LATE_WRITE_ERRORS):
            hook(unraisable)
    return filtered


class _DropOrbaxErrors(logging.Filter):
    def filter(self, record):
        return not (record.levelno >= logging.ERROR and f'{os.sep}orbax{os.sep}' in record.pathname)


class _DropFullDiskReports(logging.Filter):
    def filter(self, record):
        return not (record.exc_info and record.exc_info[1] is not None and is_no_space(record.exc_info[1]))


@contextlib.contextmanager
def _orbax_reports_left_to_the_caller():
    """Orbax logs a failure of its writing threads (with a traceback, once per thread) and then
    raises it from the save; TensorStore reports each of its writes that completes after the
    failure closed orbax's event loop, and asyncio, when they are collected, each of orbax's tasks
    whose exception (that same failure) nobody read. The exception says it all: those reports are
    dropped during the save and, after a full disk (whose writes go on failing), from then on."""
    logger, drop, hook = logging.getLogger('absl'), _DropOrbaxErrors(), sys.unraisablehook
    logger.addFilter(drop)
    sys.unraisablehook = _unless_a_late_write(hook)
    try:
        yield
    except BaseException as error:
        if is_no_space(error):
            hook = None  # keep dropping them
            logging.getLogger('asyncio').addFilter(_DropFullDiskReports())
        raise
    finally:
        logger.removeFilter(drop)
        if hook is not None:
            sys.unraisablehook = hook


def attachment(directory, step: int, name: str) -> bytes | None:
    """The file `name` saved beside checkpoint `step` (`save(attachments=...)`), or None."""
    path = os.path.join(step_dir(directory, step), name)
    if not os.path.isfile(path):
        return None
    with open(path, 'rb') as f:
        return f.read()


def steps(directory) -> list[int]:
    """The complete checkpoint steps in `directory`, oldest first (verified or not)."""
    if not os.path.isdir(directory):
        return []
    with _manager(directory, this_process_only=True) as manager:
        return sorted(manager.all_steps())


def latest_step(directory) -> int | None:
    """The newest complete checkpoint step in `directory` (not verified), or None."""
    found = steps(directory)
    return found[-1] if found else None


def newest_good_step(directory) -> int | None:
    """The newest checkpoint step that passes its checksums (or, without any, the newest
    unverified one), as a resume would pick it; None when there is none."""
    try:
        return pick_step(directory, log=lambda *_: None)
    except UserError:
        return None


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _files(path: str) -> list[str]:
    """Every file under `path` but the manifest (and its temporary files), relative, sorted."""
    found = []
    for root, _, names in os.walk(path):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), path)
            if not relative.lstrip('.').startswith(MANIFEST):
                found.append(relative)
    return sorted(found)


def write_manifest(path: str) -> None:
    files = {relative: _sha256(os.path.join(path, relative)) for relative in _files(path)}
    run_files.write_json(os.path.join(path, MANIFEST), dict(algorithm='sha256', files=files))


def damage(directory, step: int) -> str | None:
    """None when every file of checkpoint `step` matches its manifest; else what is wrong."""
    path = step_dir(directory, step)
    if not os.path.isfile(os.path.join(path, MANIFEST)):
        return NO_MANIFEST
    try:
        files = run_files.read_json(os.path.join(path, MANIFEST))['files']
    except (OSError, ValueError, KeyError, TypeError):
        return 'has an unreadable checksum manifest'
    for relative, digest in files.items():
        if not os.path.isfile(os.path.join(path, relative)):
            return f'lacks its file {relative}'
        if _sha256(os.path.join(path, relative)) != digest:
            return f'has a file that does not match its checksum ({relative})'
    return None


def pick_step(directory, step: int | None = None, log=print, set_aside: bool = False) -> int:
    """Checkpoint `step` after checking it (UserError if it is missing or damaged); or, with
    no step, the newest one that passes the check, saying in one line which newer ones were
    skipped and why (and, with `set_aside`, moving them out of orbax's view so that training
    can save those steps again). UserError when none passes."""
    found = steps(directory)
    if step is not None:
        if step not in found:
            raise UserError(f'{directory} has no checkpoint {step}; available: '
                            f'{", ".join(map(str, found)) or "none"}.')
        problems = {step: damage(directory, step)}
        if problems[step] not in (None, NO_MANIFEST):
            raise UserError(f'Checkpoint {step} in {directory} {problems[step]}: it is damaged and cannot be used.')
        chosen = step
    else:
        problems = {s: damage(directory, s) for s in reversed(found)}
        good = [s for s, problem in problems.items() if problem is None]
        unverified = [s for s, problem in problems.items() if problem == NO_MANIFEST]
        chosen = good[0] if good else (unverified[0] if unverified else None)
        if chosen is None:
            details = '; '.join(f'{s} {problem}' for s, problem in problems.items())
            raise UserError(f'No usable checkpoint in {directory}' + (f': {details}.' if details else '.'))
        skipped = [s for s in found if s > chosen]
        if skipped:
            moved = [_set_aside(directory, s) for s in skipped] if set_aside else []
            log('Checkpoint ' + '; checkpoint '.join(f'{s} {problems[s]}' for s in reversed(skipped))
                + f': using checkpoint {chosen} instead'
                + (f' (set aside as {", ".join(moved)}).' if moved else '.'))
    if problems[chosen] == NO_MANIFEST:
        log(f'Checkpoint {chosen} {NO_MANIFEST} (saved by an older flowrl or interrupted before it was '
            'written): restoring it unverified.')
    return chosen


def _set_aside(directory, step: int) -> str:
    """Renames checkpoint `step` to `rejected-<step>` (kept for inspection; orbax ignores it)."""
    name, suffix = f'rejected-{step}', 0
    while os.path.exists(os.path.join(directory, name if not suffix else f'{name}.{suffix}')):
        suffix += 1
    name = name if not suffix else f'{name}.{suffix}'
    os.rename(step_dir(directory, step), os.path.join(directory, name))
    return name


def read(directory, like, step: int):
    """Reads checkpoint `step` (unchecked: pick it with `pick_step`) with the structure, dtypes
    and shardings of `like` (a pytree of arrays or jax.ShapeDtypeStruct)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with _manager(directory) as manager:
        return manager.restore(int(step), args=ocp.args.StandardRestore(abstract))


def read_part(directory, like, step: int):
    """Like `read`, for a checkpoint that holds more than `like` (e.g. only the agent states of a
    checkpoint that also holds keys and buffers): what `like` names is read, the rest left on disk."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    # Read onto `like`'s shardings, not the saved ones (another process count saved them).
    placed = ocp.checkpoint_utils.construct_restore_args(abstract)
    with _manager(directory) as manager:
        return manager.restore(int(step), args=ocp.args.PyTreeRestore(abstract, restore_args=placed,
                                                                       partial_restore=True))


RETRIES = 3  # reads of a run that is still training, which may delete the checkpoint being read


def read_agents(directory, like_states, step: int | None = None, log=print):
    """(agent states shaped like `like_states`, step) of checkpoint `step` (default: the newest
    good one), leaving the rest of the checkpoint (keys, replay buffers) on disk: what
    `flowrl.run.evaluate_run` and `--restore_path` read. The trainer of a run still going deletes old
    checkpoints as it saves new ones: when the checkpoints change while one is being checked or
    read, it starts again (a few times) with the new list."""
    for attempt in range(RETRIES):
        before = steps(directory)
        try:
            chosen = pick_step(directory, step, log)
            return read_part(directory, dict(states=like_states), chosen)['states'], chosen
        except Exception:
            time.sleep(1.0)  # let a deletion that is under way finish before comparing
            if steps(directory) == before or attempt == RETRIES - 1:
                raise
            log('The run saved and deleted checkpoints while one was being read (it is still training); '
                'reading again.')


def restore(directory, like, step: int | None = None, log=print):
    """Checkpoint `step` (default: the newest good one, see `pick_step`), checked, then read."""
    return read(directory, like, pick_step(directory, step, log))
