"""Evaluation (and online) environments of the D4RL tasks on the maintained stack.

- locomotion: Gymnasium's `HalfCheetah-v4`, `Hopper-v4`, `Walker2d-v4` (the `-v3` MuJoCo models
  D4RL's v2 data was collected in, on the `mujoco` bindings; 1000 steps);
- adroit: gymnasium-robotics' `AdroitHand{Pen,Door,Hammer,Relocate}-v1` with D4RL's horizons
  (pen 100, the others 200: D4RL `hand_manipulation_suite/__init__.py`, MAX_STEPS) and D4RL's
  rewards and episode ends (`D4RLAdroit`: gymnasium-robotics 1.4.2 differs in two places);
- antmaze from D4RL's HDF5 data: flowrl.suites.d4rl_antmaze (D4RL's own maze, ant and goal);
- anything served from a Minari dataset (antmaze and kitchen regenerations, any Minari id): the
  dataset's recovered evaluation environment (`recover_environment(eval_env=True)`), with
  overrides (antmaze: `continuing_task=False`, so an episode ends at success as D4RL's did).
Dict observations are flattened exactly as the data is (`flatten_observation`).

Every factory here is a module-level function, so `functools.partial` of it pickles into the
environment worker processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import sys
import warnings

import gymnasium
import numpy as np

LOCOMOTION_ENV_IDS = {'halfcheetah': 'HalfCheetah-v4', 'hopper': 'Hopper-v4', 'walker2d': 'Walker2d-v4'}
ADROIT_ENV_IDS = {'pen': 'AdroitHandPen-v1', 'door': 'AdroitHandDoor-v1', 'hammer': 'AdroitHandHammer-v1',
                  'relocate': 'AdroitHandRelocate-v1'}
ADROIT_HORIZONS = {'pen': 100, 'door': 200, 'hammer': 200, 'relocate': 200}


def flatten_observation(observation, keys: tuple | None) -> np.ndarray:
    """One flat vector from an observation: a Box observation as it is; a dict one as the
    concatenation of `keys` in that order (antmaze: achieved_goal then observation, D4RL's 29
    dimensions: torso xy, then the rest of qpos and qvel), or of every key in sorted order
    (gymnasium's Dict order) when `keys` is None. Each entry is a vector, or a batch of vectors
    ([T, k]: a Minari episode's observations), concatenated on the last axis."""
    if not isinstance(observation, dict):
        return np.asarray(observation)
    names = keys if keys is not None else sorted(observation)
    return np.concatenate([flatten_observation(observation[name], None) for name in names], axis=-1)


def flat_space(space: gymnasium.Space, keys: tuple | None) -> gymnasium.spaces.Box:
    if isinstance(space, gymnasium.spaces.Box):
        return space
    names = keys if keys is not None else sorted(space.spaces)
    boxes = [flat_space(space.spaces[name], None) for name in names]
    low = np.concatenate([b.low.reshape(-1) for b in boxes])
    high = np.concatenate([b.high.reshape(-1) for b in boxes])
    return gymnasium.spaces.Box(low, high, dtype=np.float64)


class FlatObservation(gymnasium.ObservationWrapper):
    """A dict-observation environment seen through `flatten_observation(., keys)`."""

    def __init__(self, env, keys: tuple | None):
        super().__init__(env)
        self.keys = keys
        self.observation_space = flat_space(env.observation_space, keys)

    def observation(self, observation):
        return flatten_observation(observation, self.keys)


def _robotics():
    """gymnasium-robotics' environments, registered (and made to work on mujoco >= 4, see below).

    Its import prints a notice that the v1 dense Adroit rewards changed in 1.2.1; D4RLAdroit
    gives D4RL's rewards whatever that version does, so the notice is kept off the run's output."""
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics

    gymnasium.register_envs(gymnasium_robotics)
    _compare_joint_types_as_ints()
    return gymnasium_robotics


def _compare_joint_types_as_ints():
    """mujoco 4's enums no longer equal numpy integers from the right (`np.int32(3) in
    (mjJNT_HINGE,)` is False), which trips an assertion in gymnasium-robotics 1.4.2's
    `mujoco_utils.get_joint_qpos/qvel` (FrankaKitchen fails at construction). Where that is the
    case, those two functions are replaced by ones that compare plain ints; values are unchanged."""
    import mujoco
    from gymnasium_robotics.utils import mujoco_utils

    hinge = mujoco.mjtJoint.mjJNT_HINGE
    if np.int32(int(hinge)) in (hinge,) or getattr(mujoco_utils, '_flowrl_int_joint_types', False):
        return
    widths = {int(mujoco.mjtJoint.mjJNT_FREE): (7, 6), int(mujoco.mjtJoint.mjJNT_BALL): (4, 3)}

    def joint_slice(model, name, position: bool):
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if joint == -1:
            raise ValueError(f"Joint with name '{name}' is not part of the model!")
        width = widths.get(int(model.jnt_type[joint]), (1, 1))[0 if position else 1]
        start = (model.jnt_qposadr if position else model.jnt_dofadr)[joint]
        return slice(start, start + width)

    mujoco_utils.get_joint_qpos = lambda model, data, name: data.qpos[joint_slice(model, name, True)].copy()
    mujoco_utils.get_joint_qvel = lambda model, data, name: data.qvel[joint_slice(model, name, False)].copy()
    mujoco_utils._flowrl_int_joint_types = True


# Gymnasium's half_cheetah.xml (the -v4 model: D4RL's, on purpose) sets the compiler attribute
# settotalmass, which recent MuJoCo deprecates (4.0.1 here): every compilation of the model warns (MuJoCo's
# mju_warning: a line on stderr and one in MUJOCO_LOG.TXT in the working directory, not Python's
# warnings), once per environment made, so several times per run. The masses are still scaled.
SETTOTALMASS_WARNING = "compiler attribute 'settotalmass' is deprecated"


@contextlib.contextmanager
def mujoco_warning_dropped(start: str):
    """MuJoCo's warnings that begin with `start` dropped while inside; any other goes to the
    handler that was installed (dm_control installs one) or, without one, to stderr as MuJoCo
    prints it. The handler is restored on leaving."""
    import mujoco

    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if message.startswith(start):
            return
        if previous is None:
            print(f'WARNING: {message}\n', file=sys.stderr, flush=True)
        else:  # a ctypes callback (dm_control's) takes bytes
            previous(message.encode() if isinstance(previous, ctypes._CFuncPtr) else message)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def make_locomotion_env(env: str, max_episode_steps: int | None = None) -> gymnasium.Env:
    """The env's `-v4` Gymnasium environment; `max_episode_steps` None keeps its 1000 steps."""
    with warnings.catch_warnings(), mujoco_warning_dropped(SETTOTALMASS_WARNING):
        # v4 on purpose: D4RL's models (v5 changed them), not an oversight
        warnings.filterwarnings('ignore', message=r'.*is out of date\. You should consider upgrading to version')
        return gymnasium.make(LOCOMOTION_ENV_IDS[env], max_episode_steps=max_episode_steps)


def make_adroit_env(env: str) -> gymnasium.Env:
    _robotics()
    return D4RLAdroit(gymnasium.make(ADROIT_ENV_IDS[env], max_episode_steps=ADROIT_HORIZONS[env]), env)


# The body or site whose distance to the palm D4RL's dense reward subtracts (x 0.1) and
# gymnasium-robotics 1.4.2 adds (its `reward = 0.1 * norm(palm - X)`; fixed upstream in the v2
# environments of gymnasium-robotics >= 1.4.3, not released when this was written): D4RL
# hand_manipulation_suite/{door,hammer,relocate}_v0.py, `reward = -0.1*np.linalg.norm(palm_pos - X)`.
_PALM_TARGETS = {'door': ('grasp_site_id', 'site', 'handle_site_id'),
                 'hammer': ('S_grasp_site_id', 'body', 'obj_body_id'),
                 'relocate': ('S_grasp_site_id', 'body', 'obj_body_id')}
PEN_DROP_HEIGHT = 0.075  # D4RL pen_v0.py: the episode ends (done) when the pen falls below it


class D4RLAdroit(gymnasium.Wrapper):
    """An AdroitHand-v1 environment with D4RL v1's rewards and episode ends, so that returns, and
    hence normalised scores, are D4RL's: door, hammer and relocate subtract 0.2 x the palm's
    distance to the handle / hammer / ball (turning gymnasium-robotics' +0.1 term into D4RL's -0.1),
    and pen terminates when the pen drops, as D4RL's pen did (gymnasium-robotics commented it out)."""

    def __init__(self, env, name: str):
        super().__init__(env)
        self.name = name

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        task = self.env.unwrapped
        if self.name in _PALM_TARGETS:
            palm, kind, target = _PALM_TARGETS[self.name]
            positions = task.data.site_xpos if kind == 'site' else task.data.xpos
            distance = np.linalg.norm(task.data.site_xpos[getattr(task, palm)] - positions[getattr(task, target)])
            reward -= 0.2 * float(distance)
        if self.name == 'pen' and task.data.xpos[task.obj_body_id][2] < PEN_DROP_HEIGHT:
            terminated = True
        return observation, reward, terminated, truncated, info


def make_antmaze_env(dataset: str) -> gymnasium.Env:
    from flowrl.suites import d4rl_antmaze

    return d4rl_antmaze.make_env(dataset)


def make_minari_env(dataset_id: str, keys: tuple | None, overrides: tuple = ()) -> gymnasium.Env:
    """The evaluation environment a Minari dataset records, with `overrides` ((key, value), ...)
    passed to gymnasium.make, its observations flattened as the dataset's are."""
    import minari

    _robotics()
    with mujoco_warning_dropped(SETTOTALMASS_WARNING):  # a locomotion dataset made here recovers HalfCheetah-v4
        env = minari.load_dataset(dataset_id).recover_environment(eval_env=True, **dict(overrides))
    return FlatObservation(env, keys) if isinstance(env.observation_space, gymnasium.spaces.Dict) else env


def factory(function, *args):
    """A picklable () -> environment."""
    return functools.partial(function, *args)
