"""D4RL data as transitions: D4RL's own HDF5 files (read with h5py) and Minari datasets.

HDF5 (`hdf5_transitions`), exactly as the FQL code builds them (envs/d4rl_utils.py over
`d4rl.qlearning_dataset`):
- `qlearning_rows`: D4RL's `qlearning_dataset` without `d4rl`: every row but the file's last,
  next observation = the next row's observation, and the last row of each timeout episode
  dropped (its next observation belongs to another episode);
- episode ends (`terminals`): where the next row's observation is not this row's next
  observation (discontinuity), or, except for antmaze, where D4RL's `terminals` is set; the
  last transition always ends one;
- `masks` = 1 - D4RL's `terminals` (no bootstrapping from a goal or a fall);
- rewards as stored: the run applies the task's reward rule (antmaze - 1) once
  (flowrl.suites.with_run_rewards).
Minari (`minari_transitions`): each episode's T + 1 observations give T transitions;
masks = 1 - terminations (antmaze: also 0 at a goal step), episode ends = terminations |
truncations, the last step of every episode an end; dict observations flattened as the
environment's are (d4rl_envs).
Actions are clipped to +-(1 - 1e-5), as the FQL code does, in both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowrl.suites.data.files import display_path
from flowrl.errors import UserError

ACTION_CLIP = 1.0 - 1e-5  # the FQL code's action_clip_eps
DISCONTINUITY = 1e-6  # the FQL code's threshold on |obs[i+1] - next_obs[i]|
HDF5_REQUIRED = ('observations', 'actions', 'rewards', 'terminals')


def read_hdf5(path: Path) -> dict:
    """The arrays of a D4RL HDF5 file (observations, actions, rewards, terminals and timeouts if
    present), refused in one sentence naming the file and the field when unreadable, truncated,
    incomplete, of disagreeing lengths or non-finite."""
    import h5py

    shown = display_path(path)
    try:
        with h5py.File(path, 'r') as handle:
            missing = [k for k in HDF5_REQUIRED if k not in handle]
            if missing:
                raise UserError(f'{shown} is not a D4RL dataset: it lacks the field(s) {", ".join(missing)}; '
                                'download it again.')
            data = {k: np.asarray(handle[k][()]) for k in HDF5_REQUIRED + ('timeouts',) if k in handle}
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f'{shown} is unreadable or truncated ({type(error).__name__}: {error}); delete it and '
                        'download it again.') from None
    for key in ('rewards', 'terminals', 'timeouts'):
        if key in data and data[key].ndim == 2 and data[key].shape[1] == 1:
            data[key] = data[key][:, 0]  # some files store [N, 1] (D4RL's get_dataset squeezes them too)
    rows = len(data['observations'])
    for key, value in data.items():
        if len(value) != rows:
            raise UserError(f'{shown}: field {key!r} has {len(value)} rows but observations has {rows}; the file is '
                            'damaged, download it again.')
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise UserError(f'{shown}: field {key!r} holds non-finite values; the file is damaged, download it again.')
    if rows < 2:
        raise UserError(f'{shown} holds fewer than two rows, so no transition.')
    return data


def qlearning_rows(data: dict, max_episode_steps: int | None = None) -> np.ndarray:
    """The row indices D4RL's `qlearning_dataset` keeps (terminate_on_end=False): every row but
    the last, less the final row of each timeout episode. Files without `timeouts` mark an
    episode's end by its length (`max_episode_steps`), as D4RL does for old files."""
    count = len(data['rewards'])
    if 'timeouts' in data:
        timeouts = np.asarray(data['timeouts'][:count - 1], bool)
    elif max_episode_steps is not None:
        timeouts = _timeouts_by_length(np.asarray(data['terminals'], bool)[:count - 1], max_episode_steps)
    else:
        raise UserError('A D4RL file without timeouts needs the episode length to split episodes.')
    return np.nonzero(~timeouts)[0]


def _timeouts_by_length(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """D4RL's counter, quirks included: a row is a timeout when the counter reads
    `max_episode_steps - 1`; a timeout row is skipped and restarts the counter at 0, a terminal
    row restarts it at 0 and is then counted like any kept row (so the next episode starts at 1)."""
    timeouts = np.zeros(len(terminals), bool)
    step = 0
    for i, terminal in enumerate(terminals):
        if step == max_episode_steps - 1:
            timeouts[i], step = True, 0
            continue
        step = 1 if terminal else step + 1
    return timeouts


def hdf5_transitions(data: dict, antmaze: bool, max_episode_steps: int | None = None) -> dict:
    """Transitions of a D4RL file as the FQL code builds them (module docstring). Rewards are D4RL's;
    the task's reward function shapes them (antmaze - 1)."""
    rows = qlearning_rows(data, max_episode_steps)
    observations = np.asarray(data['observations'], np.float32)
    done = np.asarray(data['terminals'], np.float32)[rows]
    next_observations = observations[rows + 1]
    # Discontinuity with the next kept row: that row starts another episode.
    following = np.append(observations[rows[1:]], observations[rows[-1:]], axis=0)
    ends = np.linalg.norm(following - next_observations, axis=-1) > DISCONTINUITY
    if not antmaze:
        ends |= done == 1.0
    ends[-1] = True
    return dict(observations=observations[rows], actions=clip_actions(data['actions'][rows]),
                next_observations=next_observations, rewards=np.asarray(data['rewards'], np.float32)[rows],
                terminals=ends.astype(np.float32), masks=1.0 - done)


def minari_transitions(episodes, keys: tuple | None, goal_terminates: bool = False) -> dict:
    """Transitions of Minari episodes (objects with observations [T+1], actions, rewards,
    terminations and truncations [T]). `goal_terminates` (antmaze): a step with reward 1 reached
    the goal, a terminal state (mask 0) as in D4RL's antmaze data, although Minari's regeneration
    ran a continuing task whose terminations are all False. Like the FQL code's antmaze rule
    (masks from D4RL's terminals, episode ends from discontinuities only), the goal changes the
    mask alone: the episode goes on to its stored end."""
    from flowrl.suites.d4rl_envs import flatten_observation

    parts = {k: [] for k in ('observations', 'next_observations', 'actions', 'rewards', 'terminals', 'masks')}
    for episode in episodes:
        observations = np.asarray(flatten_observation(episode.observations, keys), np.float32)
        steps = len(episode.rewards)
        if len(observations) != steps + 1:
            raise UserError(f'Minari episode {episode.id} has {len(observations)} observations for {steps} steps '
                            '(expected one more: the reset observation).')
        rewards = np.asarray(episode.rewards, np.float32)
        stored_terminations = np.asarray(episode.terminations, bool)
        ends = stored_terminations | np.asarray(episode.truncations, bool)
        ends[-1] = True
        terminated = stored_terminations | (rewards == 1.0) if goal_terminates else stored_terminations
        parts['observations'].append(observations[:-1])
        parts['next_observations'].append(observations[1:])
        parts['actions'].append(clip_actions(episode.actions))
        parts['rewards'].append(rewards)
        parts['terminals'].append(ends.astype(np.float32))
        parts['masks'].append(1.0 - terminated.astype(np.float32))
    if not parts['actions']:
        raise UserError('The Minari dataset holds no episodes.')
    return {k: np.concatenate(v) for k, v in parts.items()}


def clip_actions(actions) -> np.ndarray:
    return np.clip(np.asarray(actions, np.float32), -ACTION_CLIP, ACTION_CLIP)
