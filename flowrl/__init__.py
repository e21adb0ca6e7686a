"""flowrl: offline RL with flow-matching policies in JAX/Flax.

Layers (docs/DESIGN.md, "Layers"; tests/test_layers.py keeps them), each importing only those
below it:

    run       settings, overrides, the command, loggers, progress, the runner and its parts,
              the run's files, space and end lines, evaluate_run
    results   final scores, report, statistics, published numbers
    registry  agents loaded from their files, the presets of configs/ (imports both by name)
    engine    compiled training, online and evaluation programs, replay, env pools, checkpoints,
              placement                     | suites  OGBench and D4RL tasks, their options, data, envs
    kit       what agents are made of: state, networks, encoders, flow, losses, pixel batches, contract
    base      this package's top modules: errors, headless, stopping, disk, run_files, time_limits, host_memory

The engine and the suites stand side by side: neither imports the other. agents/ import the
kit and base; configs/ also the suites (OGBench's family names); the registry stands above
both. flowrl.testing (test helpers) may import anything.

The agents and their presets are the subpackages `flowrl.agents` and `flowrl.configs`, kept in
the repository's top-level folders agents/ and configs/ (the FQL repository's layout). An
installed copy holds them as flowrl/agents and flowrl/configs (pyproject.toml's package-dir maps
the folders), so nothing but `flowrl` is installed at the top level. A checkout, run without an
install or installed in editable mode, finds them beside this folder (`_CheckoutFolders`).
"""

import importlib.abc
import importlib.machinery
import os
import sys

from flowrl import headless

__version__ = "0.1.0"

# The folders of the checkout that are subpackages of flowrl (the same as pyproject.toml's package-dir).
CHECKOUT_SUBPACKAGES = ('agents', 'configs')


class _CheckoutFolders(importlib.abc.MetaPathFinder):
    """Finds `flowrl.agents` and `flowrl.configs` in the checkout's agents/ and configs/ (their
    modules then follow from the package's __path__). It answers for these two names only, and
    before any other finder: the checkout's other entries (main.py, tests/) stay outside flowrl,
    and another checkout's editable install cannot lend this one its agents."""

    def __init__(self, root: str):
        self.names = {f'{__name__}.{folder}' for folder in CHECKOUT_SUBPACKAGES}
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.root])  # the spec keeps `fullname`


def _find_checkout_subpackages() -> None:
    """In a checkout (this folder has no agents/ but its parent has agents/ and configs/ packages),
    makes `import flowrl.agents` and `import flowrl.configs` import those folders."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if any(os.path.isdir(os.path.join(here, folder)) for folder in CHECKOUT_SUBPACKAGES):
        return  # an installed copy: the subpackages are folders of this package
    if all(os.path.isfile(os.path.join(root, folder, '__init__.py')) for folder in CHECKOUT_SUBPACKAGES):
        sys.meta_path.insert(0, _CheckoutFolders(root))


_find_checkout_subpackages()
# Before anything imports dm_control or mujoco, in every process (worker processes import flowrl too).
headless.choose_mujoco_backend()
