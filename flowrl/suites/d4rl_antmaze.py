"""D4RL's AntMaze evaluation environment (`antmaze-*-v2`) on the maintained `mujoco` bindings.

`make_env('large-play')` behaves as D4RL's `gym.make('antmaze-large-play-v2')`: the same maze map,
coordinates (the start cell's centre is the origin, y grows with the map's row), ant model, start
and goal, sparse reward within 0.5 of the goal, episode end at success, 700/1000-step time limit
and 29-dim observation qpos[:15] + qvel[:14]. gymnasium-robotics' AntMaze is not that environment
(centred and y-flipped coordinates, Gymnasium's ant with gear 150, a 0.45 radius, dict
observations), so D4RL's datasets cannot be evaluated on it.

Sources: Farama-Foundation/D4RL @89141a6 (the last commit), files under `d4rl/locomotion/`:
`__init__.py` (registrations), `ant.py` (AntEnv, AntMazeEnv), `maze_env.py` (maps, walls, goal
sampler), `goal_reaching_env.py` (reward, termination), `wrappers.py` (NormalizedBoxEnv),
`assets/ant.xml` (the ant); and gym 0.23.1 `gym/envs/mujoco/mujoco_env.py` (D4RL requires
gym<0.24), the base class that holds the simulation.

The one change: D4RL draws the evaluation goal from numpy's global RNG (`np.random`, in
`MazeEnv.set_target_goal`/`goal_sampler`), so `reset` is not reproducible from the env's seed;
here the goal is drawn from the env's `np_random`, in D4RL's order (goal, then the ant's reset
noise), so `reset(seed=s)` is deterministic. Distributions are unchanged.

mujoco-py → mujoco: D4RL reads `sim.data.qpos/qvel` (here `data.qpos/qvel`), resets with
`sim.reset()` = mj_resetData then `set_state` = write qpos/qvel and mj_forward, and steps with
`sim.step()` = mj_step, 5 times per env step; `get_xy()` is `qpos[:2]` (not a body position), so
success needs no derived quantity. The physics engine version differs (MuJoCo 2.1 under mujoco-py,
here mujoco 4.x); trajectories could not be compared with D4RL's here.
"""

import xml.etree.ElementTree as ET

import gymnasium
import mujoco
import numpy as np

from flowrl.errors import UserError

R, G = 'r', 'g'  # the start (D4RL's RESET) and goal cells of a map (maze_env.py)

# The maps D4RL registers for the v2 ids (d4rl/locomotion/__init__.py: antmaze-umaze(-diverse)-v2
# use maze_env.U_MAZE_TEST, medium-* BIG_MAZE_TEST, large-* HARDEST_MAZE_TEST; the *_EVAL_TEST maps
# belong to the separate antmaze-eval-*-v0 ids). 1 = wall, 0 = free; R and G cells are free.
MAZE_MAPS = {
    'umaze': (
        (1, 1, 1, 1, 1),
        (1, R, 0, 0, 1),
        (1, 1, 1, 0, 1),
        (1, G, 0, 0, 1),
        (1, 1, 1, 1, 1)),
    'medium': (
        (1, 1, 1, 1, 1, 1, 1, 1),
        (1, R, 0, 1, 1, 0, 0, 1),
        (1, 0, 0, 1, 0, 0, 0, 1),
        (1, 1, 0, 0, 0, 1, 1, 1),
        (1, 0, 0, 1, 0, 0, 0, 1),
        (1, 0, 1, 0, 0, 1, 0, 1),
        (1, 0, 0, 0, 1, 0, G, 1),
        (1, 1, 1, 1, 1, 1, 1, 1)),
    'large': (
        (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
        (1, R, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1),
        (1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1),
        (1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1),
        (1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1),
        (1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
        (1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1),
        (1, 0, 0, 1, 0, 0, 0, 1, 0, G, 0, 1),
        (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
}
MAZE_NAMES = ('umaze', 'medium', 'large')

# The six v2 datasets and their registered maps (d4rl/locomotion/__init__.py). Every v2 id is
# registered with eval=True, reward_type='sparse', non_zero_reset=False, maze_size_scaling=4.0,
# v2_resets=True (a new goal at every reset).
DATASET_MAZES = {
    'umaze': 'umaze', 'umaze-diverse': 'umaze',
    'medium-play': 'medium', 'medium-diverse': 'medium',
    'large-play': 'large', 'large-diverse': 'large',
}
# max_episode_steps of the registrations (d4rl/locomotion/__init__.py).
MAX_EPISODE_STEPS = {'umaze': 700, 'medium': 1000, 'large': 1000}

MAZE_SIZE_SCALING = 4.0  # registrations' maze_size_scaling: metres per map cell
MAZE_HEIGHT = 0.5  # MazeEnv default maze_height; a wall is maze_height * scaling = 2 m tall
SUCCESS_RADIUS = 0.5  # GoalReachingEnv.step: sparse reward and eval done at ||xy - goal|| <= 0.5
FRAME_SKIP = 5  # AntEnv: MujocoEnv.__init__(self, file_path, 5); with timestep 0.02, dt = 0.1 s
RESET_QPOS_NOISE = 0.1  # AntEnv.reset_model: qpos = init_qpos + U(-0.1, 0.1) on every coordinate
RESET_QVEL_NOISE = 0.1  # AntEnv.reset_model: qvel = init_qvel + 0.1 * N(0, 1)
# MazeEnv.goal_sampler: the goal is the goal cell's centre plus U(0, 0.25 * scaling) per axis
# (_rowcol_to_xy(add_random_noise=True)) plus U(0, 0.5) * 0.25 * scaling per axis, then max(., 0).
GOAL_CELL_NOISE = 0.25 * MAZE_SIZE_SCALING
GOAL_EXTRA_NOISE = 0.5 * 0.25 * MAZE_SIZE_SCALING
GOAL_NOISE_BOUND = GOAL_CELL_NOISE + GOAL_EXTRA_NOISE  # the goal lies in [centre, centre + 1.5)
ANT_QPOS, ANT_QVEL = 15, 14  # AntEnv._get_obs(expose_all_qpos=True): qpos.flat[:15], qvel.flat[:14]


def maze_of(dataset: str) -> str:
    """The maze ('umaze' | 'medium' | 'large') that D4RL evaluates `antmaze-<dataset>-v2` on."""
    if dataset not in DATASET_MAZES:
        raise UserError(f'Unknown D4RL antmaze dataset {dataset!r}; expected one of {", ".join(DATASET_MAZES)}.')
    return DATASET_MAZES[dataset]


def _maze_map(maze: str):
    if maze not in MAZE_MAPS:
        raise UserError(f'Unknown D4RL antmaze maze {maze!r}; expected one of {", ".join(MAZE_NAMES)}.')
    return MAZE_MAPS[maze]


def cells_marked(maze: str, marker) -> list[tuple[int, int]]:
    """(row, col) of every cell of the maze's map that holds `marker` (1, R or G), row by row."""
    return [(i, j) for i, row in enumerate(_maze_map(maze)) for j, cell in enumerate(row) if cell == marker]


def cell_xy(maze: str, row: int, col: int) -> np.ndarray:
    """World (x, y) of a cell's centre: MazeEnv._rowcol_to_xy, x = col * scaling - start x,
    y = row * scaling - start y, so the start cell's centre is (0, 0) and y grows with the row."""
    (start_row, start_col), = cells_marked(maze, R)
    return np.array([(col - start_col) * MAZE_SIZE_SCALING, (row - start_row) * MAZE_SIZE_SCALING])


def goal_cell_xy(maze: str) -> np.ndarray:
    """Centre of the maze's single goal cell: the low corner of the evaluation goal's square."""
    (row, col), = cells_marked(maze, G)
    return cell_xy(maze, row, col)


# The ant of d4rl/locomotion/assets/ant.xml, written out here: gym's MujocoEnv reads the model
# with mujoco-py, whose defaults are those of MuJoCo's MJCF. No code reads the <custom> init_qpos
# numeric (init_qpos is the model's qpos0, gym 0.23.1 mujoco_env.py); it is kept so that the compiled
# model equals the file's in every array.
_ANT_MJCF = """
<mujoco model="ant">
  <compiler inertiafromgeom="true" angle="degree" coordinate="local"/>
  <option timestep="0.02" integrator="RK4"/>
  <custom>
    <numeric name="init_qpos" data="0.0 0.0 0.55 1.0 0.0 0.0 0.0 0.0 1.0 0.0 -1.0 0.0 -1.0 0.0 1.0"/>
  </custom>
  <default>
    <joint limited="true" armature="1" damping="1"/>
    <geom condim="3" conaffinity="0" margin="0.01" friction="1 0.5 0.5" solref=".02 1"
          solimp=".8 .8 .01" rgba="0.8 0.6 0.4 1" density="5.0"/>
  </default>
  <asset>
    <texture type="skybox" builtin="gradient" width="100" height="100" rgb1="1 1 1" rgb2="0 0 0"/>
    <texture name="texgeom" type="cube" builtin="flat" mark="cross" width="127" height="1278"
             rgb1="0.8 0.6 0.4" rgb2="0.8 0.6 0.4" markrgb="1 1 1" random="0.01"/>
    <texture name="texplane" type="2d" builtin="checker" rgb1="0.2 0.3 0.4" rgb2="0.1 0.2 0.3"
             width="100" height="100"/>
    <material name="MatPlane" texture="texplane" shininess="1" texrepeat="60 60" specular="1"
              reflectance="0.0"/>
    <material name="geom" texture="texgeom" texuniform="true"/>
  </asset>
  <worldbody>
    <light directional="true" cutoff="100" exponent="1" diffuse="1 1 1" specular=".1 .1 .1"
           pos="0 0 1.3" dir="-0 0 -1.3"/>
    <geom name="floor" pos="0 0 0" size="40 40 40" type="plane" conaffinity="1"
          rgba="0.8 0.9 0.8 1" condim="3" material="MatPlane"/>
    <body name="torso" pos="0 0 0.75">
      <geom name="torso_geom" type="sphere" size="0.25" pos="0 0 0" rgba="0.3 0.9 0.5 1"/>
      <joint name="root" type="free" limited="false" pos="0 0 0" axis="0 0 1" margin="0.01"
             armature="0" damping="0"/>
    </body>
  </worldbody>
  <actuator/>
</mujoco>
"""

# The four legs in ant.xml's order (which fixes qpos[7:15] = hip_1, ankle_1, ..., hip_4, ankle_4):
# body name, the (x, y) direction of the leg, hip-body name, thigh geom, ankle axis, ankle range
# (degrees), foot geom. Upper segment and thigh run 0.2 * direction, the foot 0.4 * direction.
_LEGS = (
    ('front_left_leg', (1, 1), 'aux_1', 'left_leg_geom', '-1 1 0', '30 70', 'left_ankle_geom'),
    ('front_right_leg', (-1, 1), 'aux_2', 'right_leg_geom', '1 1 0', '-70 -30', 'right_ankle_geom'),
    ('back_leg', (-1, -1), 'aux_3', 'back_leg_geom', '-1 1 0', '-70 -30', 'third_ankle_geom'),
    ('right_back_leg', (1, -1), 'aux_4', 'rightback_leg_geom', '1 1 0', '30 70', 'fourth_ankle_geom'),
)
# ant.xml's <actuator>: motors in this order (so action[0] drives hip_4), ctrlrange +-30, gear 1.
ACTUATED_JOINTS = ('hip_4', 'ankle_4', 'hip_1', 'ankle_1', 'hip_2', 'ankle_2', 'hip_3', 'ankle_3')
CTRL_LIMIT = 30.0
_LEG_RADIUS = '0.08'


def _segment(dx: int, dy: int, length: float) -> str:
    return f'0.0 0.0 0.0 {dx * length} {dy * length} 0.0'


def _add_leg(torso: ET.Element, number: int, leg) -> None:
    name, (dx, dy), hip_body, thigh, ankle_axis, ankle_range, foot = leg
    leg_body = ET.SubElement(torso, 'body', name=name, pos='0 0 0')
    ET.SubElement(leg_body, 'geom', name=f'aux_{number}_geom', type='capsule', size=_LEG_RADIUS,
                  fromto=_segment(dx, dy, 0.2))
    hip = ET.SubElement(leg_body, 'body', name=hip_body, pos=f'{dx * 0.2} {dy * 0.2} 0')
    ET.SubElement(hip, 'joint', name=f'hip_{number}', type='hinge', pos='0.0 0.0 0.0', axis='0 0 1',
                  range='-30 30')
    ET.SubElement(hip, 'geom', name=thigh, type='capsule', size=_LEG_RADIUS, fromto=_segment(dx, dy, 0.2))
    ankle = ET.SubElement(hip, 'body', pos=f'{dx * 0.2} {dy * 0.2} 0')
    ET.SubElement(ankle, 'joint', name=f'ankle_{number}', type='hinge', pos='0.0 0.0 0.0', axis=ankle_axis,
                  range=ankle_range)
    ET.SubElement(ankle, 'geom', name=foot, type='capsule', size=_LEG_RADIUS, fromto=_segment(dx, dy, 0.4))


def _add_walls(worldbody: ET.Element, maze: str) -> None:
    """MazeEnv.__init__: one box geom per wall cell, appended to the worldbody, centred on the
    cell (start cell at the origin), half-sizes (scaling/2, scaling/2, height*scaling/2) and
    resting on the floor; contype = conaffinity = 1, so the ant (conaffinity 0) collides with it."""
    half_height = MAZE_HEIGHT / 2 * MAZE_SIZE_SCALING
    for i, j in cells_marked(maze, 1):
        x, y = cell_xy(maze, i, j)
        ET.SubElement(worldbody, 'geom', name=f'block_{i}_{j}', pos=f'{x:f} {y:f} {half_height:f}',
                      size=f'{0.5 * MAZE_SIZE_SCALING:f} {0.5 * MAZE_SIZE_SCALING:f} {half_height:f}',
                      type='box', material='', contype='1', conaffinity='1', rgba='0.7 0.5 0.3 1.0')


def ant_maze_mjcf(maze: str) -> str:
    """The MJCF that D4RL's MazeEnv writes to a temporary file for `maze`: ant.xml plus the walls."""
    root = ET.fromstring(_ANT_MJCF)
    torso = root.find(".//body[@name='torso']")
    for number, leg in enumerate(_LEGS, start=1):
        _add_leg(torso, number, leg)
    actuator = root.find('actuator')
    for joint in ACTUATED_JOINTS:
        ET.SubElement(actuator, 'motor', joint=joint, ctrlrange=f'{-CTRL_LIMIT} {CTRL_LIMIT}', ctrllimited='true')
    _add_walls(root.find('worldbody'), maze)
    return ET.tostring(root, encoding='unicode')


class D4RLAntMazeEnv(gymnasium.Env):
    """AntMazeEnv(maze_map, maze_size_scaling=4, reward_type='sparse', eval=...) wrapped in
    NormalizedBoxEnv, as D4RL's make_ant_maze_env builds it; without the time limit (make_env
    adds it).

    Actions in [-1, 1]^8 are scaled to the motors' +-30 (NormalizedBoxEnv). With eval=True (every
    v2 registration) the observation is qpos[:15] + qvel[:14] and an episode ends at success; with
    eval=False D4RL appends goal - xy (31 dims) and never ends it (GoalReachingEnv).
    info: 'goal' (the episode's goal, reset and step), 'success' (step: within SUCCESS_RADIUS).
    """

    metadata = {'render_modes': ['human', 'rgb_array', 'depth_array'], 'render_fps': 10}

    def __init__(self, maze: str = 'umaze', eval: bool = True, render_mode: str | None = None,
                 width: int = 480, height: int = 480):
        self.maze = maze
        self.eval = eval
        self.model = mujoco.MjModel.from_xml_string(ant_maze_mjcf(maze))
        self.data = mujoco.MjData(self.model)
        # gym's MujocoEnv: init_qpos/qvel are the freshly built data's, i.e. the model's qpos0
        # (torso at (0, 0, 0.75), identity orientation, joints at 0) and zero velocity.
        self.init_qpos = self.data.qpos.ravel().copy()
        self.init_qvel = self.data.qvel.ravel().copy()
        # NormalizedBoxEnv maps [-1, 1] onto the wrapped env's float32 ctrlrange Box.
        self._ctrl_low, self._ctrl_high = self.model.actuator_ctrlrange.astype(np.float32).T
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        # gym 0.23.1 convert_observation_to_space: unbounded, with the observation's dtype (float64).
        obs_dim = ANT_QPOS + ANT_QVEL + (0 if eval else 2)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.goal = goal_cell_xy(maze)  # replaced at every reset
        self.render_mode = render_mode
        self._render_size = (width, height)
        self._renderer = None

    @property
    def dt(self) -> float:
        return self.model.opt.timestep * FRAME_SKIP

    def _sample_goal(self) -> np.ndarray:
        """MazeEnv.goal_sampler with D4RL's draws in D4RL's order (cell choice, cell noise x then y,
        extra noise x then y), taken from the env's np_random instead of the global np.random."""
        rng = self.np_random
        goal_cells = cells_marked(self.maze, G)
        row, col = goal_cells[rng.integers(len(goal_cells))]
        xy = cell_xy(self.maze, row, col) + rng.uniform(0.0, GOAL_CELL_NOISE, size=2)
        xy = xy + rng.uniform(0.0, 0.5, size=2) * 0.25 * MAZE_SIZE_SCALING
        return np.maximum(xy, 0.0)

    def _observation(self) -> np.ndarray:
        obs = np.concatenate([self.data.qpos.flat[:ANT_QPOS], self.data.qvel.flat[:ANT_QVEL]])
        if not self.eval:
            obs = np.concatenate([obs, self.goal - self.data.qpos[:2]])
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # AntMazeEnv.reset with v2_resets: a new target goal first, then MujocoEnv.reset:
        # sim.reset() (mj_resetData) and AntEnv.reset_model (non_zero_reset=False: the ant starts
        # at the origin, plus noise on every qpos coordinate, quaternion included).
        self.goal = self._sample_goal()
        mujoco.mj_resetData(self.model, self.data)
        qpos = self.init_qpos + self.np_random.uniform(-RESET_QPOS_NOISE, RESET_QPOS_NOISE, self.model.nq)
        qvel = self.init_qvel + self.np_random.standard_normal(self.model.nv) * RESET_QVEL_NOISE
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)
        if self.render_mode == 'human':
            self.render()
        return self._observation(), {'goal': self.goal.copy()}

    def _ctrl(self, action) -> np.ndarray:
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f'Action shape {action.shape} is not {self.action_space.shape}.')
        low, high = self._ctrl_low, self._ctrl_high
        return np.clip(low + (action + 1.0) * 0.5 * (high - low), low, high)

    def step(self, action):
        self.data.ctrl[:] = self._ctrl(action)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        success = bool(np.linalg.norm(self.data.qpos[:2] - self.goal) <= SUCCESS_RADIUS)
        reward = 1.0 if success else 0.0
        terminated = self.eval and success
        if self.render_mode == 'human':
            self.render()
        return self._observation(), reward, terminated, False, {'success': success, 'goal': self.goal.copy()}

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn('render() was called without a render_mode; pass render_mode to make_env.')
            return None
        if self._renderer is None:
            from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

            width, height = self._render_size
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, width)
            self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, height)
            self._renderer = MujocoRenderer(self.model, self.data, self._top_view(), width, height)
        return self._renderer.render(self.render_mode)

    def _top_view(self) -> dict:
        """A camera above the maze's centre that sees the whole maze, x to the right and y up (so
        the image is the map upside down: a camera above cannot show y growing downwards)."""
        rows, cols = len(MAZE_MAPS[self.maze]), len(MAZE_MAPS[self.maze][0])
        centre = (cell_xy(self.maze, 0, 0) + cell_xy(self.maze, rows - 1, cols - 1)) / 2
        return {'lookat': np.array([*centre, 0.0]), 'distance': 1.2 * MAZE_SIZE_SCALING * max(rows, cols),
                'elevation': -90.0, 'azimuth': 90.0}

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def make_env(dataset: str, max_episode_steps: int | None = None, **kwargs) -> gymnasium.Env:
    """The environment of D4RL's `antmaze-<dataset>-v2` (dataset: 'umaze', 'umaze-diverse',
    'medium-play', 'medium-diverse', 'large-play', 'large-diverse'), in its registered time limit
    unless `max_episode_steps` is given; kwargs go to D4RLAntMazeEnv (eval, render_mode, ...)."""
    maze = maze_of(dataset)
    env = D4RLAntMazeEnv(maze, **kwargs)
    steps = MAX_EPISODE_STEPS[maze] if max_episode_steps is None else max_episode_steps
    return gymnasium.wrappers.TimeLimit(env, max_episode_steps=steps)
