"""Episodes written as Minari datasets, whole or not at all.

A dataset is written under a hidden staging root beside the real one ($MINARI_DATASETS_PATH or
~/.minari/datasets, `.flowrl-staging/`, which Minari's listing skips), then its directory is
renamed into place; an interrupted write leaves nothing under the dataset's id. Minari 0.5.4 has
no free-form metadata argument, so what flowrl records about the data (the policy's return, the
SAC settings...) goes into `description` as JSON and into `flowrl_recipe.json` beside the
dataset's `data/` directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from flowrl import run_files

SIDECAR = 'flowrl_recipe.json'
STAGING = '.flowrl-staging'


def minari_root() -> Path:
    return Path(os.environ.get('MINARI_DATASETS_PATH') or '~/.minari/datasets').expanduser()


def dataset_dir(dataset_id: str) -> Path:
    return minari_root() / dataset_id


def exists(dataset_id: str) -> bool:
    return (dataset_dir(dataset_id) / 'data').is_dir()


def remove(dataset_id: str) -> None:
    shutil.rmtree(dataset_dir(dataset_id), ignore_errors=True)


@contextlib.contextmanager
def _minari_root_at(path: Path):
    """Minari reads MINARI_DATASETS_PATH at each call: point it at `path` for the block."""
    before = os.environ.get('MINARI_DATASETS_PATH')
    os.environ['MINARI_DATASETS_PATH'] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ['MINARI_DATASETS_PATH']
        else:
            os.environ['MINARI_DATASETS_PATH'] = before


def episode_buffers(episodes: list[dict]):
    """Minari EpisodeBuffers of episodes given as dicts of observations [T + 1], actions, rewards,
    terminations and truncations [T]."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    return [EpisodeBuffer(id=k, observations=np.asarray(e['observations'], np.float64),
                          actions=np.asarray(e['actions'], np.float32), rewards=np.asarray(e['rewards'], np.float64),
                          terminations=np.asarray(e['terminations'], bool),
                          truncations=np.asarray(e['truncations'], bool), infos={})
            for k, e in enumerate(episodes)]


def write(dataset_id: str, episodes: list[dict], env_spec, reference_returns: tuple, algorithm: str,
          record: dict) -> Path:
    """Writes `episodes` as the Minari dataset `dataset_id` (replacing one of that id), collected
    and evaluated in `env_spec`, scored against `reference_returns` (min, max), with `record` as
    its description (JSON) and sidecar file. Returns the dataset's directory."""
    import minari

    from flowrl.suites.d4rl_envs import SETTOTALMASS_WARNING, mujoco_warning_dropped

    root = minari_root()
    staging = root / STAGING
    shutil.rmtree(staging / dataset_id, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)
    # Minari makes the environment (and the evaluation one) to record their specs: HalfCheetah warns each time.
    with _minari_root_at(staging), warnings.catch_warnings(), mujoco_warning_dropped(SETTOTALMASS_WARNING):
        # Minari asks for a code permalink and an author e-mail, which a local dataset does not have.
        warnings.filterwarnings('ignore', message=r'`(code_permalink|author_email)` is set to None')
        minari.create_dataset_from_buffers(
            dataset_id, buffer=episode_buffers(episodes), env=env_spec, eval_env=env_spec, algorithm_name=algorithm,
            author='flowrl', ref_min_score=float(reference_returns[0]), ref_max_score=float(reference_returns[1]),
            description=json.dumps(record, sort_keys=True))
    run_files.write_json(str(staging / dataset_id / SIDECAR), record)
    _ensure_namespaces(dataset_id)
    final = dataset_dir(dataset_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging / dataset_id, final)
    return final


def _ensure_namespaces(dataset_id: str) -> None:
    """The dataset's namespaces (flowrl, flowrl/halfcheetah) in the real root, as Minari lists them."""
    from minari.namespace import create_namespace, list_local_namespaces

    namespace = dataset_id.rsplit('/', 1)[0]
    if '/' in dataset_id and namespace not in list_local_namespaces():
        create_namespace(namespace, description='Datasets made by flowrl (python -m flowrl.suites.data locomotion).')


def read_record(dataset_id: str) -> dict:
    """What `write` recorded about the dataset (its sidecar file)."""
    return run_files.read_json(str(dataset_dir(dataset_id) / SIDECAR))
