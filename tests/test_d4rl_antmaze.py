"""D4RL's AntMaze evaluation environment: every fact the env takes from D4RL
(d4rl/locomotion/{__init__,ant,maze_env,goal_reaching_env,wrappers}.py, assets/ant.xml) against a
hand-written expectation."""

import os

import mujoco
import numpy as np
import pytest

from flowrl.errors import UserError
from flowrl.suites import d4rl_antmaze
from flowrl.suites.d4rl_antmaze import MAZE_NAMES, make_env, maze_of

r, g = 'r', 'g'
# maze_env.py U_MAZE_TEST, BIG_MAZE_TEST, HARDEST_MAZE_TEST, as D4RL prints them.
EXPECTED_MAPS = {
    'umaze': [[1, 1, 1, 1, 1],
              [1, r, 0, 0, 1],
              [1, 1, 1, 0, 1],
              [1, g, 0, 0, 1],
              [1, 1, 1, 1, 1]],
    'medium': [[1, 1, 1, 1, 1, 1, 1, 1],
               [1, r, 0, 1, 1, 0, 0, 1],
               [1, 0, 0, 1, 0, 0, 0, 1],
               [1, 1, 0, 0, 0, 1, 1, 1],
               [1, 0, 0, 1, 0, 0, 0, 1],
               [1, 0, 1, 0, 0, 1, 0, 1],
               [1, 0, 0, 0, 1, 0, g, 1],
               [1, 1, 1, 1, 1, 1, 1, 1]],
    'large': [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
              [1, r, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
              [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
              [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
              [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
              [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
              [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
              [1, 0, 0, 1, 0, 0, 0, 1, 0, g, 0, 1],
              [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
}
WALL_CELLS = {'umaze': 18, 'medium': 38, 'large': 62}  # the 1s above, counted by hand
# Goal cell centre in D4RL's frame (start cell centre = origin, x = col, y = row, 4 m per cell):
# umaze goal (3, 1) from start (1, 1); medium (6, 6); large (7, 9).
GOAL_CENTRES = {'umaze': (0.0, 8.0), 'medium': (20.0, 20.0), 'large': (32.0, 24.0)}
GOAL_NOISE = 1.5  # U(0, 1) + U(0, 0.5) per axis (maze_env.py goal_sampler)
# The model's qpos0: torso at (0, 0, 0.75), identity quaternion, the 8 joints at 0 (ant.xml).
INIT_QPOS = np.array([0, 0, 0.75, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], float)
DATASETS = ('umaze', 'umaze-diverse', 'medium-play', 'medium-diverse', 'large-play', 'large-diverse')


def _place_torso(env, xy, seed=0):
    """Reset with `seed`, then put the torso at `xy` at rest (the rest of the pose is the reset's)."""
    env.reset(seed=seed)
    sim = env.unwrapped
    sim.data.qpos[:2] = xy
    sim.data.qvel[:] = 0.0
    mujoco.mj_forward(sim.model, sim.data)


def _block_contacts(env):
    sim = env.unwrapped
    names = (mujoco.mj_id2name(sim.model, mujoco.mjtObj.mjOBJ_GEOM, geom)
             for contact in sim.data.contact[:sim.data.ncon] for geom in (contact.geom1, contact.geom2))
    return {name for name in names if name.startswith('block_')}


def test_each_dataset_is_evaluated_on_its_registered_maze():
    assert MAZE_NAMES == ('umaze', 'medium', 'large')
    assert [maze_of(d) for d in DATASETS] == ['umaze', 'umaze', 'medium', 'medium', 'large', 'large']
    with pytest.raises(UserError, match='medium-replay'):
        maze_of('medium-replay')


@pytest.mark.parametrize('maze', MAZE_NAMES)
def test_maze_maps_are_d4rls_test_maps(maze):
    assert [list(row) for row in d4rl_antmaze.MAZE_MAPS[maze]] == EXPECTED_MAPS[maze]


@pytest.mark.parametrize('dataset', ['umaze', 'medium-diverse', 'large-play'])
def test_one_wall_box_per_wall_cell_where_the_map_says(dataset):
    sim = make_env(dataset).unwrapped
    model = sim.model
    names = {k: mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, k) for k in range(model.ngeom)}
    blocks = {k: name for k, name in names.items() if name.startswith('block_')}
    assert len(blocks) == WALL_CELLS[sim.maze]
    for k, name in blocks.items():
        i, j = map(int, name.split('_')[1:])
        assert EXPECTED_MAPS[sim.maze][i][j] == 1
        # centred on the cell, start cell at the origin, 4 x 4 x 2 m resting on the floor
        np.testing.assert_allclose(model.geom_pos[k], [(j - 1) * 4.0, (i - 1) * 4.0, 1.0])
        np.testing.assert_allclose(model.geom_size[k], [2.0, 2.0, 1.0])
        assert model.geom_contype[k] == model.geom_conaffinity[k] == 1
        assert model.geom_bodyid[k] == 0


def test_walls_push_the_ant_and_free_cells_do_not():
    env = make_env('umaze')
    _place_torso(env, (0.0, 4.0))  # cell (2, 1): a wall
    assert _block_contacts(env) == {'block_2_1'}
    _place_torso(env, (4.0, 0.0))  # cell (1, 2): free, 2 m from any wall face
    assert _block_contacts(env) == set()
    # Torso 0.1 m from the face of the wall at row 0 (y <= -2): pushed away along +y.
    _place_torso(env, (0.0, -1.9))
    obs, *_ = env.step(np.zeros(8))
    assert obs[1] > -1.9 + 0.1
    # The same offset towards the free cell (1, 2) moves it by millimetres only.
    _place_torso(env, (1.9, 0.0))
    obs, *_ = env.step(np.zeros(8))
    assert np.linalg.norm(obs[:2] - (1.9, 0.0)) < 0.05


def test_ant_model_is_d4rls_ant():
    model = make_env('umaze').unwrapped.model
    assert (model.nq, model.nv, model.nu) == (15, 14, 8)
    assert model.opt.timestep == 0.02 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    joint = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[a, 0]) for a in range(8)]
    assert joint == ['hip_4', 'ankle_4', 'hip_1', 'ankle_1', 'hip_2', 'ankle_2', 'hip_3', 'ankle_3']
    np.testing.assert_array_equal(model.actuator_ctrlrange, [[-30.0, 30.0]] * 8)
    np.testing.assert_array_equal(model.actuator_gear[:, 0], np.ones(8))
    qpos_of = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, k): model.jnt_qposadr[k] for k in range(model.njnt)}
    assert qpos_of == {'root': 0, 'hip_1': 7, 'ankle_1': 8, 'hip_2': 9, 'ankle_2': 10,
                       'hip_3': 11, 'ankle_3': 12, 'hip_4': 13, 'ankle_4': 14}
    np.testing.assert_allclose(np.rad2deg(model.jnt_range[qpos_of['ankle_1'] - 6]), [30, 70])
    np.testing.assert_array_equal(model.dof_armature, [0] * 6 + [1] * 8)
    np.testing.assert_array_equal(model.dof_damping, [0] * 6 + [1] * 8)
    torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, 'torso_geom')
    assert model.geom_size[torso, 0] == 0.25 and model.geom_conaffinity[torso] == 0
    np.testing.assert_allclose(model.geom_friction[torso], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(model.geom_margin[torso], 0.01)
    # density 5: the torso body holds only its 0.25 m sphere
    np.testing.assert_allclose(model.body_mass[model.geom_bodyid[torso]], 5.0 * 4 / 3 * np.pi * 0.25 ** 3)


def test_actions_are_scaled_to_plus_minus_30_and_one_step_is_five_physics_steps():
    env = make_env('umaze')
    env.reset(seed=0)
    sim = env.unwrapped
    action = np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0, -3.0], np.float32)
    env.step(action)
    np.testing.assert_allclose(sim.data.ctrl, [-30, -15, 0, 7.5, 15, 30, 30, -30])
    assert sim.data.time == pytest.approx(5 * 0.02)
    assert env.action_space.shape == (8,) and (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    with pytest.raises(ValueError, match='shape'):
        env.step(np.zeros(7))


def test_observation_is_qpos15_then_qvel14():
    env = make_env('medium-play')
    env.reset(seed=3)
    obs, *_ = env.step(env.action_space.sample())
    sim = env.unwrapped
    assert env.observation_space.shape == obs.shape == (29,)
    np.testing.assert_array_equal(obs[:15], sim.data.qpos[:15])
    np.testing.assert_array_equal(obs[15:], sim.data.qvel[:14])
    assert env.observation_space.contains(obs)


def test_a_d4rl_dataset_observation_fits_the_observation_space():
    # D4RL's antmaze HDF5 stores float32 observations of qpos[:15] + qvel[:14]: one such row.
    row = np.concatenate([INIT_QPOS, np.zeros(14)]).astype(np.float32)
    observations = np.stack([row, row + 0.01])
    env = make_env('large-diverse')
    assert observations.shape[1:] == env.observation_space.shape
    assert all(env.observation_space.contains(o) for o in observations)


def test_reset_starts_at_the_origin_with_d4rls_noise():
    env = make_env('umaze')
    obs, info = env.reset(seed=5)
    assert np.abs(obs[:15] - INIT_QPOS).max() <= 0.1  # U(-0.1, 0.1) on every qpos coordinate
    assert np.abs(obs[:15] - INIT_QPOS).min() > 0.0
    assert 0.0 < np.abs(obs[15:]).max() < 0.1 * 6  # 0.1 * N(0, 1) on every qvel coordinate
    np.testing.assert_allclose(d4rl_antmaze.cell_xy('umaze', 1, 1), [0.0, 0.0])  # start cell = origin


@pytest.mark.parametrize('dataset', ['umaze-diverse', 'medium-diverse', 'large-play'])
def test_goal_is_the_goal_cell_plus_noise_and_redrawn_at_every_reset(dataset):
    env = make_env(dataset)
    centre = np.array(GOAL_CENTRES[maze_of(dataset)])
    goals = []
    for seed in range(4):
        _, info = env.reset(seed=seed)
        goals.append(info['goal'])
        assert (info['goal'] >= centre).all() and (info['goal'] < centre + GOAL_NOISE).all()
        np.testing.assert_array_equal(env.unwrapped.goal, info['goal'])
    _, info = env.reset()  # no seed: the next draw of the same RNG
    goals.append(info['goal'])
    assert len({tuple(goal) for goal in goals}) == len(goals)


def test_same_seed_same_start_and_goal_other_seed_other():
    env = make_env('large-play')
    first, info = env.reset(seed=7)
    again, info_again = make_env('large-play').reset(seed=7)
    other, info_other = env.reset(seed=8)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(info['goal'], info_again['goal'])
    assert not np.allclose(first, other) and not np.allclose(info['goal'], info_other['goal'])


def _step_to_distance(env, offset):
    """Places the torso so that after one zero-action step it lies `offset` from the goal: the
    step's drift is measured first (the floor is flat, so it does not depend on where the ant is)."""
    goal = env.unwrapped.goal.copy()
    _place_torso(env, goal)
    drift = env.step(np.zeros(8))[0][:2] - goal
    _place_torso(env, goal + offset - drift)
    obs, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert np.linalg.norm(obs[:2] - goal) == pytest.approx(np.linalg.norm(offset), abs=1e-9)
    return reward, terminated, truncated, info


@pytest.mark.parametrize('distance, reached', [(0.0, True), (0.49, True), (0.51, False)])
def test_success_reward_and_termination_within_half_a_metre(distance, reached):
    env = make_env('umaze')
    env.reset(seed=0)
    reward, terminated, truncated, info = _step_to_distance(env, np.array([distance, 0.0]))
    assert info['success'] is reached and terminated is reached and not truncated
    assert reward == (1.0 if reached else 0.0)
    np.testing.assert_array_equal(info['goal'], env.unwrapped.goal)


def test_without_eval_the_goal_direction_is_appended_and_success_does_not_end_the_episode():
    env = make_env('umaze', eval=False)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape == (31,)
    np.testing.assert_allclose(obs[29:], env.unwrapped.goal - obs[:2])
    reward, terminated, _, info = _step_to_distance(env, np.array([0.2, 0.0]))
    assert reward == 1.0 and info['success'] and not terminated


@pytest.mark.parametrize('dataset, limit', [('umaze', 700), ('umaze-diverse', 700), ('medium-play', 1000),
                                            ('large-diverse', 1000)])
def test_time_limit_is_d4rls(dataset, limit):
    env = make_env(dataset)
    env.reset(seed=0)
    env._elapsed_steps = limit - 2  # the TimeLimit wrapper's counter: skip to the episode's end
    assert not env.step(np.zeros(8))[3]
    assert env.step(np.zeros(8))[3]
    assert make_env(dataset, max_episode_steps=5)._max_episode_steps == 5


@pytest.mark.skipif(os.environ.get('MUJOCO_GL') == 'disable', reason='no rendering backend here')
def test_render_shows_the_maze():
    env = make_env('umaze', render_mode='rgb_array', width=64, height=64)
    env.reset(seed=0)
    image = env.render()
    env.close()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and image.std() > 0
