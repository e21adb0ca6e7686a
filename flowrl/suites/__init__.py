"""Benchmark suites: the one seam between a run and the benchmark it trains on.

Each suite is a module (`ogbench`, `d4rl`) with `parse(name) -> Task | None` (None: not one of
its names) and `known_names() -> tuple[str, ...]` (for did-you-mean). A `Task` owns everything
the rest of flowrl needs to know about an environment name:

- names: `name` (canonical, recorded in flags.json), `short_name` (run directories, report
  groups), `family` and `task_number` (published scores), `canonical()` (one name per task);
- presets: `preset_tables(online)` (the tables of configs/<agent>.py it reads, in order, e.g.
  ('PRESETS', 'ONLINE_PRESETS') or ('D4RL_PRESETS',)) and `preset_keys` (a family key, then a
  task key that refines it), so that two suites' names never share a table;
- settings: `check_settings(settings, configs)` refuses the options that do not apply to it
  (`--sparse`, `--success_timing`, pixel options, `--dataset_episodes`...);
- data: `load(settings, log) -> LoadedData` (training split, validation split or None, one
  source line, a record of what was read: file hash, data source);
- rewards: `reward_function(settings)` maps the environment's rewards to the run's, for the
  dataset (applied by the suite) and for online transitions (applied by flowrl.engine.online) alike;
- evaluation: `env_factory(settings)` (a picklable `() -> gymnasium.Env`), `metric` (what the
  score measures) and `episode_scores(returns, successes)` (one score per episode, a fraction:
  100 x it is the percentage or the normalised score the papers print);
- `description(settings)`: what the run records about the benchmark (flags.json, results.json).

No code outside this package asks which suite a task belongs to.
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

import numpy as np

from flowrl.errors import UserError


class LoadedData(NamedTuple):
    train: dict
    val: dict | None
    source: str  # one line for the log
    record: dict  # recorded with the run (flags.json 'data')


TRANSITION_FIELDS = ('actions', 'rewards', 'masks', 'terminals')  # and observations, except pixel data (frames)


def check_transitions(data: dict, where: str, observation_shape=None, action_dim=None) -> None:
    """The transition format every agent relies on, checked once where data enters: the fields
    present with one row per transition, finite values, terminals (episode ends) and masks
    (1 - terminated) in {0, 1}, the last transition an episode end, and the observation and action
    sizes of the environment. Pixel datasets (observations as frame indices) skip the shape check."""
    missing = [k for k in TRANSITION_FIELDS if k not in data]
    if missing:
        raise UserError(f'{where} lacks the field(s) {", ".join(missing)}.')
    rows = len(data['actions'])
    if rows == 0:
        raise UserError(f'{where} holds no transitions.')
    for key, value in data.items():
        if hasattr(value, 'shape') and key in TRANSITION_FIELDS + ('observations', 'next_observations') \
                and len(value) != rows:
            raise UserError(f'{where}: field {key!r} has {len(value)} rows but actions has {rows}.')
    for key in ('actions', 'rewards', 'masks', 'terminals'):
        if not np.all(np.isfinite(data[key])):
            raise UserError(f'{where}: field {key!r} holds non-finite values.')
    for key in ('masks', 'terminals'):
        if not np.all((data[key] == 0) | (data[key] == 1)):
            raise UserError(f'{where}: field {key!r} must hold only 0 and 1.')
    if data['terminals'][-1] != 1:
        raise UserError(f'{where}: the last transition must end an episode (terminals[-1] = 1).')
    if action_dim is not None and data['actions'].shape[1:] != (action_dim,):
        raise UserError(f'{where}: actions have shape {data["actions"].shape[1:]} per row but the environment '
                        f'takes {action_dim} dimensions.')
    observations = data.get('observations')
    if observation_shape is not None and observations is not None and np.issubdtype(observations.dtype, np.floating):
        if data['observations'].shape[1:] != tuple(observation_shape):
            raise UserError(f'{where}: observations have shape {data["observations"].shape[1:]} per row but the '
                            f'environment gives {tuple(observation_shape)}.')
        if not np.all(np.isfinite(data['observations'])):
            raise UserError(f'{where}: field \'observations\' holds non-finite values.')


def as_float32(rewards):
    """Rewards as given, as float32 (a suite's reward function when it changes nothing)."""
    return np.asarray(rewards, np.float32)


def _suites():
    from flowrl.suites import d4rl, ogbench

    return (ogbench, d4rl)


def resolve(name: str):
    """The task `name` stands for in the first suite that knows it; a UserError with the nearest
    names of every suite otherwise (a suite's own error for a name it recognises but refuses)."""
    for suite in _suites():
        task = suite.parse(name)
        if task is not None:
            return task
    known = [n for suite in _suites() for n in suite.known_names()]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f'; did you mean {" or ".join(close)}?' if close else (
        ': pass an OGBench singletask name (cube-double-play, cube-double-play-task3), a D4RL name '
        '(antmaze-large-play-v2, pen-human-v1, halfcheetah-medium-v2, kitchen-mixed-v0) or a Minari dataset id '
        '(D4RL/pen/human-v2).')
    raise UserError(f'Unknown environment {name!r}{hint}')
