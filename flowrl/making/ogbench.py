"""OGBench datasets made on this machine: a state dataset generated with OGBench's oracles
(`generate.py`), a visual one rendered from its state dataset (`render.py`).

The suites only read data: a dataset that is missing but that flowrl can make reaches the caller
as `flowrl.suites.data.loading.MissingDataset`, with the order to make it. `loaded_with_making`
is that caller's side of the seam (flowrl.run.runner.load_dataset runs every task's loading
through it): it makes what was ordered and loads again, so a run still finds, downloads or makes
the data it names.
"""

from __future__ import annotations

from pathlib import Path

from flowrl.making.generate import build_dataset, default_workers
from flowrl.making.render import render_dataset
from flowrl.suites.data.loading import DatasetOrder, MissingDataset, resolve_dataset_files
from flowrl.suites.data.plans import plan_generation, plan_rendering
from flowrl.suites.ogbench_envs import is_visual


def loaded_with_making(load, log=print):
    """`load()`; when it reports a dataset that flowrl makes as missing, that dataset made, then
    `load()` again (which now finds it)."""
    try:
        return load()
    except MissingDataset as missing:
        make(missing.order, log)
        return load()


def make(order: DatasetOrder, log=print) -> Path:
    """The dataset `order` names, made (see `produce_dataset`); returns its training file."""
    return produce_dataset(order.dataset_name, dataset_dir=order.dataset_dir, dataset_episodes=order.dataset_episodes,
                           workers=order.workers, seed=order.seed, log=log, download=order.download)


def produce_dataset(
    dataset_name: str,
    *,
    dataset_dir: str,
    dataset_episodes: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    log=print,
    download: bool = True,
) -> Path:
    """Build `dataset_name` (full, or reduced to `dataset_episodes`) in `dataset_dir`, replacing files
    of that name; returns the training file. A state dataset is generated with OGBench's oracles; a
    visual one is rendered from its state dataset, resolved as loading the state name would (files
    in `dataset_dir`, a download when `download`, or generation with `seed`)."""
    workers = workers or default_workers()
    if not is_visual(dataset_name):
        return build_dataset(plan_generation(dataset_name, dataset_episodes), dataset_dir, workers, seed, log)
    plan = plan_rendering(dataset_name, dataset_episodes)
    state_file, source = loaded_with_making(lambda: resolve_dataset_files(
        plan.state.spec.name, dataset_path=None, dataset_dir=dataset_dir, dataset_episodes=dataset_episodes,
        generate=True, workers=workers, seed=seed, log=log, download=download), log)
    log(f"Rendering the state dataset: {source}.")
    return render_dataset(plan, state_file, dataset_dir, workers, log)
