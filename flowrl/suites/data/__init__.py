"""flowrl's dataset layer: OGBench datasets that work offline and can be trusted.

Public API:
- `load_singletask_data(env_name, ...) -> Datasets`: resolve (explicit path, dataset dir,
  OGBench download, local generation), verify, relabel for the single task, clip actions.
- `generate_dataset(dataset_name, ...) -> str`: build '<dataset>.npz' + '-val.npz' (+ metadata
  JSON) with OGBench's own scripted oracles, following the published collection protocol.
- `Datasets`: (train, val, source).
- Visual datasets ('visual-cube-single-play-v0'): official files when present, otherwise the
  state dataset rendered with OGBench's pixel camera (`render.py`; `loading.produce_dataset`).

CLI: `python -m flowrl.suites.data generate cube-double-play-v0 [--episodes N] [--workers W] ...`.
Set FLOWRL_NO_DOWNLOAD=1 to skip the network entirely (tests do).
"""

from flowrl.suites.data.generate import generate_dataset
from flowrl.suites.data.loading import Datasets, load_singletask_data

__all__ = ["Datasets", "generate_dataset", "load_singletask_data"]
