"""flowrl's dataset layer of the suites: OGBench datasets that work offline and can be trusted.
It reads and describes data; making it (generation, rendering, the locomotion recipe) is
flowrl.making's, a layer above.

Public API:
- `load_singletask_data(env_name, ...) -> Datasets`: resolve (explicit path, dataset dir,
  OGBench download), verify, relabel for the single task, clip actions; a dataset flowrl makes
  that is missing raises `MissingDataset` with the order to make it
  (`flowrl.making.ogbench.loaded_with_making` makes it and loads again).
- `Datasets`: (train, val, source).
- what a dataset of a name holds (`plans.py`), the published collection protocol (`protocol.py`),
  file checks (`files.py`).

CLI (flowrl.making.command): `python -m flowrl.suites.data generate cube-double-play-v0 [--episodes N] ...`.
Set FLOWRL_NO_DOWNLOAD=1 to skip the network entirely (tests do).
"""

from flowrl.suites.data.loading import Datasets, DatasetOrder, MissingDataset, load_singletask_data

__all__ = ["DatasetOrder", "Datasets", "MissingDataset", "load_singletask_data"]
