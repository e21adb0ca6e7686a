"""Collection loop for the manipulation datasets (cube, scene, puzzle) with OGBench's oracles.

The scripted oracles come from the installed `ogbench` package; this module only wires them
to the environment the way the published protocol describes (docs/DATA.md):
play data follows noisy non-Markovian plans, noisy data follows closed-loop Markov oracles
with per-episode Gaussian action noise and occasional uniformly random actions.

The oracles draw from NumPy's global random state and the environment from its own
`np_random`; the caller seeds both per episode (see `generate.py`), and everything this
module draws itself comes from the `rng` it is given, so an episode depends only on its seeds.
"""

from __future__ import annotations

import numpy as np

from flowrl.suites.data.protocol import NOISY_STD_FACTORS, NOISY_XI_MAX, DatasetSpec, draw_stack_probability
from flowrl.making.records import EpisodeRecord
from flowrl.suites.ogbench_envs import gym_make

# Scene health check bounds (protocol): the cube must stay in view unless it is in the drawer.
_SCENE_CUBE_MAX_Y = 0.29
_SCENE_CUBE_MIN_Y = -0.3
_SCENE_DRAWER_Z_RANGE = (0.06, 0.08)
_CUBE_QPOS_XYZ = slice(14, 17)


class UnhealthyEpisode(Exception):
    """The scene cube left the view; the episode must be collected again."""


def make_manipulation_env(spec: DatasetSpec, steps_per_episode: int):
    return gym_make(
        spec.env_id,
        terminate_at_goal=False,
        mode="data_collection",
        max_episode_steps=steps_per_episode,
    )


def make_oracles(spec: DatasetSpec, env) -> dict:
    """Oracle per target task, keyed like `info['privileged/target_task']`."""
    if spec.dataset_type == "play":
        return _make_plan_oracles(spec, env)
    return _make_markov_oracles(spec, env)


def _make_plan_oracles(spec: DatasetSpec, env) -> dict:
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    noise = dict(noise=0.1, noise_smoothing=0.5)
    if spec.family == "cube":
        return {"cube": CubePlanOracle(env=env, **noise)}
    if spec.family == "scene":
        return {
            "cube": CubePlanOracle(env=env, **noise),
            "button": ButtonPlanOracle(env=env, **noise),
            "drawer": DrawerPlanOracle(env=env, **noise),
            "window": WindowPlanOracle(env=env, **noise),
        }
    return {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **noise)}


def _make_markov_oracles(spec: DatasetSpec, env) -> dict:
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle

    if spec.family == "cube":
        return {"cube": CubeMarkovOracle(env=env, min_norm=0.4)}
    if spec.family == "scene":
        # Note: ogbench 1.2.2's CubeMarkovOracle.reset() sets its step limit back to 200, so
        # max_step=100 only matters for the package's own behaviour; we pass what was published.
        return {
            "cube": CubeMarkovOracle(env=env, min_norm=0.4, max_step=100),
            "button": ButtonMarkovOracle(env=env, min_norm=0.4),
            "drawer": DrawerMarkovOracle(env=env, min_norm=0.4),
            "window": WindowMarkovOracle(env=env, min_norm=0.4),
        }
    return {"button": ButtonMarkovOracle(env=env, min_norm=0.4, gripper_always_closed=True)}


def collect_manipulation_episode(
    spec: DatasetSpec, env, oracles: dict, rng: np.random.Generator, env_seed: int, steps: int
) -> dict[str, np.ndarray]:
    """One episode of `steps` steps; raises UnhealthyEpisode when the scene check fails."""
    ob, info = env.reset(seed=env_seed)
    p_stack = draw_stack_probability(spec, rng)
    noisy = spec.dataset_type == "noisy"
    # Drawn for every dataset type so that play and noisy episodes use the rng alike.
    xi = rng.uniform(0.0, NOISY_XI_MAX)
    noise_std = xi * NOISY_STD_FACTORS

    oracle = oracles[info["privileged/target_task"]]
    oracle.reset(ob, info)

    record = EpisodeRecord(spec.has_button_states)
    for _ in range(steps):
        action = _choose_action(spec, env, oracle, ob, info, rng, noisy, noise_std)
        next_ob, _, terminated, truncated, step_info = env.step(action)
        done = bool(terminated or truncated)
        # prev_* in the step info describe the state the observation `ob` was taken in.
        record.append(ob, action, done, step_info)
        info = step_info
        if oracle.done:
            # The oracle finished its task: pick a new target and the oracle that solves it.
            ob_after_target, info = env.unwrapped.set_new_target(p_stack=p_stack)
            oracle = oracles[info["privileged/target_task"]]
            oracle.reset(ob_after_target, info)
        ob = next_ob

    episode = record.arrays()
    if spec.family == "scene" and not scene_episode_is_healthy(episode["qpos"]):
        raise UnhealthyEpisode()
    return episode


def _choose_action(spec, env, oracle, ob, info, rng, noisy, noise_std) -> np.ndarray:
    # Always draw the coin so the rng stream does not depend on the oracle's actions.
    take_random = rng.random() < spec.p_random_action
    if take_random:
        action = rng.uniform(-1.0, 1.0, size=env.action_space.shape)
    else:
        action = np.asarray(oracle.select_action(ob, info), dtype=np.float64)
        if noisy:
            action = action + rng.normal(0.0, noise_std, size=action.shape)
    return np.clip(action, -1.0, 1.0)


def scene_episode_is_healthy(qpos: np.ndarray) -> bool:
    """False if the cube ever went too far right, or too far left without being in the drawer."""
    cube_xyz = qpos[:, _CUBE_QPOS_XYZ]
    too_far_right = cube_xyz[:, 1] >= _SCENE_CUBE_MAX_Y
    low_z, high_z = _SCENE_DRAWER_Z_RANGE
    outside_drawer_height = (cube_xyz[:, 2] < low_z) | (cube_xyz[:, 2] > high_z)
    too_far_left = (cube_xyz[:, 1] <= _SCENE_CUBE_MIN_Y) & outside_drawer_height
    return not (too_far_right.any() or too_far_left.any())
