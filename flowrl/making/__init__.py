"""Dataset making: the data flowrl makes on this machine, outside the suite seam.

- OGBench datasets (`ogbench.py`): state datasets generated with OGBench's scripted oracles
  following the published collection protocol (`generate.py`, `manipulation.py`, `pointmaze.py`,
  `records.py`), visual ones rendered from them with OGBench's pixel camera (`render.py`);
  `ogbench.loaded_with_making` makes a dataset the suites' loading reports as missing
  (`flowrl.suites.data.loading.MissingDataset`) and loads again; sharded datasets in OGBench's
  100M/1B layout, generated and split at episode ends (`shards.py`).
- D4RL's locomotion recipe (`locomotion.py`): SAC trained online through the engine's online
  path (flowrl.engine.online, replay, checkpoints: the program `main.py --online_steps` runs), its
  data written as Minari datasets (`minari_writer.py`).
- The command (`command.py`), run as `python -m flowrl.suites.data`.

Layer: above the engine and the suites, whose pieces it drives (the suites say what a dataset
holds and how it is read; the engine trains); below the run, whose loading calls it. It may
import the base modules, flowrl.kit, flowrl.engine and flowrl.suites; never results or run.
"""
