"""Checkpoints of the whole training carry with orbax-checkpoint.

What is saved is the full pytree the training loop carries (agent states with params,
optimizer states, targets and dynamic hyperparameters; the per-member RNG keys; the step).
Orbax writes each step into a temporary directory and renames it when complete, so an
interrupted save never leaves a checkpoint that is later trusted.
"""

import os

import jax
import orbax.checkpoint as ocp

from flowrl.errors import UserError


def _manager(directory, max_to_keep=2):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(directory, step: int, tree) -> None:
    """Saves `tree` as checkpoint `step` under `directory` and waits until it is on disk."""
    with _manager(directory) as manager:
        manager.save(int(step), args=ocp.args.StandardSave(tree), force=True)
        manager.wait_until_finished()


def latest_step(directory) -> int | None:
    """The newest complete checkpoint step in `directory`, or None when there is none."""
    if not os.path.isdir(directory):
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def restore(directory, like, step: int | None = None):
    """Restores the checkpoint `step` (default: latest) with the structure, dtypes and
    shardings of `like` (a pytree of arrays or jax.ShapeDtypeStruct)."""
    step = latest_step(directory) if step is None else step
    if step is None:
        raise UserError(f'No complete checkpoint in {directory}: nothing to resume from.')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with _manager(directory) as manager:
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
