"""What every suite hands to a run: the loaded data (`LoadedData`, rewards as stored), the one
place a task's reward rule meets the dataset (`with_run_rewards`), the transition format every
agent relies on (`check_transitions`), the reward rule that changes nothing (`as_float32`) and
what each task's score measures (`METRICS`, keyed by a task's `metric`).
Re-exported by flowrl.suites; the suite modules import them from here, so that the package's
registry (`flowrl.suites.resolve`, which imports the suites when asked) and the suites do not
import each other."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from flowrl.errors import UserError


STORED_REWARDS = 'stored'  # as the data source holds them: what a suite's `load` returns
RUN_REWARDS = 'run'  # the task's reward rule applied (`with_run_rewards`): what a run trains on


class LoadedData(NamedTuple):
    train: dict
    val: dict | None
    source: str  # one line for the log
    record: dict  # recorded with the run (flags.json 'data')
    # (observation shape, action dimensions) of the task's environment, when the suite knows them:
    # check_transitions compares the data with them where the data enters the run.
    env_shapes: tuple | None = None
    rewards: str = STORED_REWARDS  # which rewards the splits hold: STORED_REWARDS or RUN_REWARDS


def with_run_rewards(data: LoadedData, reward_rule) -> LoadedData:
    """Both splits with the task's reward rule applied to their stored rewards: the one place the
    rule meets the dataset (online transitions get the same `reward_rule`, flowrl.engine.online).
    Data whose rewards are already the run's is refused, so no path can apply a rule twice."""
    if data.rewards != STORED_REWARDS:
        raise ValueError(f'{data.source}: the rewards already are the run\'s ({data.rewards!r}); a task\'s reward '
                         'rule is applied once, to the rewards as stored.')
    splits = [None if split is None else dict(split, rewards=reward_rule(split['rewards'])) for split in data[:2]]
    return data._replace(train=splits[0], val=splits[1], rewards=RUN_REWARDS)


@dataclasses.dataclass(frozen=True)
class Metric:
    """What a score measures, for tables, logs and plot axes of 100 x the score (a fraction)."""
    label: str  # an axis label: 'success (%)'
    unit: str  # after a printed value: '%', or '' for a score that is not a rate
    limits: tuple | None  # the range 100 x the score can take; None: unbounded


# A task's `metric` names its entry: OGBench's success, D4RL's normalised return (antmaze: success).
METRICS = {'success': Metric('success (%)', '%', (0.0, 100.0)),
           'normalized_return': Metric('normalised score', '', None)}


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
