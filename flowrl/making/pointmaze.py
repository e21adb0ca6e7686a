"""Collection loop for the pointmaze navigate and stitch datasets.

The oracle is the maze's own `get_oracle_subgoal` (a breadth-first search over maze cells):
the action is the unit vector toward the next subgoal plus Gaussian noise (std 0.5), clipped.
- navigate: start in a random free cell, aim at a random "vertex" cell (a free cell that is
  not a straight corridor), and pick a new vertex goal each time the goal is reached;
- stitch: aim at a cell exactly 4 BFS steps from the start, giving short trajectories that an
  agent must stitch together.

Goal noise and teleports draw from NumPy's global random state, seeded per episode by the
caller; every choice made here comes from the given `rng`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from flowrl.suites.data.protocol import POINTMAZE_ACTION_NOISE, POINTMAZE_STITCH_DISTANCE, DatasetSpec
from flowrl.making.records import EpisodeRecord
from flowrl.suites.ogbench_envs import gym_make

_NEIGHBOUR_OFFSETS = ((-1, 0), (0, -1), (1, 0), (0, 1))


def make_pointmaze_env(spec: DatasetSpec, steps_per_episode: int):
    return gym_make(spec.env_id, terminate_at_goal=False, max_episode_steps=steps_per_episode)


def free_cells(maze_map: np.ndarray) -> list[tuple[int, int]]:
    rows, cols = maze_map.shape
    return [(i, j) for i in range(rows) for j in range(cols) if maze_map[i, j] == 0]


def vertex_cells(maze_map: np.ndarray) -> list[tuple[int, int]]:
    """Free cells that are not the middle of a straight corridor (junctions, corners, dead ends)."""
    vertices = []
    for i, j in free_cells(maze_map):
        up, down = maze_map[i - 1, j] == 0, maze_map[i + 1, j] == 0
        left, right = maze_map[i, j - 1] == 0, maze_map[i, j + 1] == 0
        vertical_corridor = up and down and not left and not right
        horizontal_corridor = left and right and not up and not down
        if not (vertical_corridor or horizontal_corridor):
            vertices.append((i, j))
    return vertices


def cells_at_distance(maze_map: np.ndarray, start: tuple[int, int], distance: int) -> list[tuple[int, int]]:
    """Free cells exactly `distance` BFS steps from `start`, in row-major order."""
    steps = {start: 0}
    queue = deque([start])
    while queue:
        i, j = queue.popleft()
        for di, dj in _NEIGHBOUR_OFFSETS:
            neighbour = (i + di, j + dj)
            inside = 0 <= neighbour[0] < maze_map.shape[0] and 0 <= neighbour[1] < maze_map.shape[1]
            if inside and maze_map[neighbour] == 0 and neighbour not in steps:
                steps[neighbour] = steps[(i, j)] + 1
                queue.append(neighbour)
    return sorted(cell for cell, steps_away in steps.items() if steps_away == distance)


def _pick(cells: list, rng: np.random.Generator):
    return cells[int(rng.integers(len(cells)))]


def choose_start_and_goal(spec: DatasetSpec, maze_map: np.ndarray, rng: np.random.Generator):
    all_cells = free_cells(maze_map)
    if spec.dataset_type == "navigate":
        return _pick(all_cells, rng), _pick(vertex_cells(maze_map), rng)
    # stitch: redraw the start in the (unlikely) case no cell is exactly 4 steps away.
    while True:
        start = _pick(all_cells, rng)
        candidates = cells_at_distance(maze_map, start, POINTMAZE_STITCH_DISTANCE)
        if candidates:
            return start, _pick(candidates, rng)


def oracle_direction(maze_env, goal_xy) -> np.ndarray:
    """Unit vector from the agent toward the maze oracle's next subgoal."""
    xy = maze_env.get_xy()
    subgoal_xy, _ = maze_env.get_oracle_subgoal(xy, goal_xy)
    direction = np.asarray(subgoal_xy) - xy
    return direction / (np.linalg.norm(direction) + 1e-6)


def collect_pointmaze_episode(
    spec: DatasetSpec, env, rng: np.random.Generator, env_seed: int, steps: int
) -> dict[str, np.ndarray]:
    maze_env = env.unwrapped
    maze_map = maze_env.maze_map
    # The maze reset takes a few random stabilising steps with the action space's own RNG.
    env.action_space.seed(env_seed)
    start_ij, goal_ij = choose_start_and_goal(spec, maze_map, rng)
    ob, _ = env.reset(seed=env_seed, options=dict(task_info=dict(init_ij=start_ij, goal_ij=goal_ij)))
    vertices = vertex_cells(maze_map) if spec.dataset_type == "navigate" else None

    record = EpisodeRecord(has_button_states=False)
    for _ in range(steps):
        action = oracle_direction(maze_env, maze_env.cur_goal_xy)
        action = np.clip(action + rng.normal(0.0, POINTMAZE_ACTION_NOISE, size=action.shape), -1.0, 1.0)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        record.append(ob, action, done, info)
        if spec.dataset_type == "navigate" and info["success"]:
            maze_env.set_goal(_pick(vertices, rng))
        ob = next_ob
    return record.arrays()
