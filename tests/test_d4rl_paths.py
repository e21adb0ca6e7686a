"""What a D4RL run trains on and evaluates with, read through the run's own paths: the arrays
from flowrl.run.runner.load_dataset, the environment from runner.env_factory, online transitions
from flowrl.engine.online.MemberEnvs and scores from flowrl.engine.evaluation.run_episodes, on
files the tests write (D4RL's HDF5 layout, Minari datasets in a temporary MINARI_DATASETS_PATH).

Every D4RL fact is asserted with its source: Farama-Foundation/D4RL @89141a6 (the last commit),
file and function named beside the assertion."""

import warnings

import gymnasium
import h5py
import mujoco
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec

from flowrl import suites
from flowrl.engine.evaluation import EvalEnvs, episode_seed, run_episodes
from flowrl.engine.online import MemberEnvs
from flowrl.run import runner
from flowrl.run.settings import RunSettings, task_settings
from flowrl.suites import d4rl, d4rl_envs

QUIET = dict(log=lambda *_: None)
# D4RL d4rl/kitchen/kitchen_envs.py, OBS_ELEMENT_INDICES / OBS_ELEMENT_GOALS (qpos indices and goals).
KITCHEN_INDICES = {'bottom burner': [11, 12], 'light switch': [17, 18], 'slide cabinet': [19], 'microwave': [22],
                   'kettle': [23, 24, 25, 26, 27, 28, 29]}
KITCHEN_GOALS = {'bottom burner': [-0.88, -0.01], 'light switch': [-0.69, -0.05], 'slide cabinet': [0.37],
                 'microwave': [-0.75], 'kettle': [-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06]}
# D4RL d4rl/kitchen/kitchen_envs.py: KitchenMicrowaveKettleLightSliderV0.TASK_ELEMENTS (kitchen-complete-v0,
# kitchen-partial-v0) and KitchenMicrowaveKettleBottomBurnerLightV0.TASK_ELEMENTS (kitchen-mixed-v0), as
# d4rl/kitchen/__init__.py registers them.
D4RL_KITCHEN_TASKS = {'complete': ['microwave', 'kettle', 'light switch', 'slide cabinet'],
                      'partial': ['microwave', 'kettle', 'light switch', 'slide cabinet'],
                      'mixed': ['microwave', 'kettle', 'bottom burner', 'light switch']}


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """Empty D4RL and Minari roots, downloads off: only what a test writes is there."""
    monkeypatch.setenv('D4RL_DATASET_DIR', str(tmp_path / 'd4rl'))
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
    monkeypatch.setenv('FLOWRL_NO_DOWNLOAD', '1')
    return tmp_path


def write_d4rl_file(name: str, observations, actions, rewards, terminals, timeouts=None):
    """The D4RL file of `name` in D4RL's cache ($D4RL_DATASET_DIR), in D4RL's layout."""
    import os
    from pathlib import Path

    path = Path(os.environ['D4RL_DATASET_DIR']) / d4rl.ENTRIES[name].hdf5_file
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(observations=np.asarray(observations, np.float32), actions=np.asarray(actions, np.float32),
                  rewards=np.asarray(rewards, np.float32), terminals=np.asarray(terminals, bool))
    if timeouts is not None:
        arrays['timeouts'] = np.asarray(timeouts, bool)
    with h5py.File(path, 'w') as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
    return path


def write_minari(dataset_id: str, env_spec, observation_space, action_space, episodes):
    """A Minari dataset of `episodes` (dicts of observations [T + 1], actions, rewards, terminations,
    truncations [T]) recorded with `env_spec`, the way Minari's own tests make theirs."""
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = [EpisodeBuffer(id=k, observations=np.asarray(e['observations'], np.float64),
                             actions=np.asarray(e['actions'], np.float32), rewards=np.asarray(e['rewards'], np.float64),
                             terminations=np.asarray(e['terminations'], bool),
                             truncations=np.asarray(e['truncations'], bool), infos={})
               for k, e in enumerate(episodes)]
    with warnings.catch_warnings():  # Minari asks for a code permalink and an author e-mail
        warnings.simplefilter('ignore')
        minari.create_dataset_from_buffers(dataset_id, buffer=buffers, env=env_spec, algorithm_name='flowrl test',
                                           observation_space=observation_space, action_space=action_space)


def minari_kitchen_spec(dataset: str):
    """The env Minari's kitchen datasets record (minari-dataset-generation-scripts,
    scripts/D4RL/kitchen/): FrankaKitchen-v1 with D4RL's subtasks, but completed subtasks kept and
    paid on every step, no end when all are done, 450 steps."""
    d4rl_envs._robotics()
    return EnvSpec('FrankaKitchen-v1', entry_point=gymnasium.spec('FrankaKitchen-v1').entry_point,
                   max_episode_steps=450, kwargs=dict(tasks_to_complete=D4RL_KITCHEN_TASKS[dataset],
                                                      remove_task_when_completed=False,
                                                      terminate_on_tasks_completed=False))


def random_episodes(observation_dim, action_dim, lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [dict(observations=rng.normal(size=(t + 1, observation_dim)), actions=rng.uniform(-1, 1, (t, action_dim)),
                 rewards=rng.uniform(0, 1, t), terminations=np.zeros(t, bool),
                 truncations=np.r_[np.zeros(t - 1, bool), True]) for t in lengths]


def write_minari_adroit(dataset_id: str, env: str, lengths=(6, 5)):
    """A dataset under Minari's id of D4RL's adroit data, recorded in the gymnasium-robotics env
    Minari re-simulated it in (AdroitHand*-v1, its registered 200 steps)."""
    d4rl_envs._robotics()
    made = gymnasium.make(d4rl_envs.ADROIT_ENV_IDS[env])
    episodes = random_episodes(made.observation_space.shape[0], made.action_space.shape[0], lengths)
    write_minari(dataset_id, made.spec, made.observation_space, made.action_space, episodes)
    return episodes


def write_minari_kitchen(dataset: str, lengths=(6, 5), episodes=None):
    spec = minari_kitchen_spec(dataset)
    space = gymnasium.spaces.Box(-np.inf, np.inf, (59,), np.float64)
    episodes = episodes or random_episodes(59, 9, lengths)
    write_minari(f'D4RL/kitchen/{dataset}-v2', spec, space, gymnasium.spaces.Box(-1, 1, (9,), np.float32), episodes)
    return episodes


def load(name: str, **settings):
    """The data a run on `name` trains on, through the run's own loading path."""
    return runner.load_dataset(RunSettings(env_name=name, **settings), suites.resolve(name), **QUIET)


def evaluation_env(name: str, record: dict):
    return runner.env_factory(RunSettings(env_name=name), suites.resolve(name), record)()


# ---- 1. the reward rule, applied once ----

def test_antmaze_trains_on_rewards_minus_one_and_masks_zero_exactly_at_the_goal(data_dirs):
    # D4RL's antmaze v2 files: terminals == rewards == 1 where the ant is within 0.5 of the goal
    # (d4rl/locomotion/goal_reaching_env.py GoalReachingEnv.step, sparse reward). 12 rows, goal rows
    # 3, 4 and 9, a timeout at row 7; observation i is [i] * 29.
    stored = np.zeros(12)
    stored[[3, 4, 9]] = 1.0
    write_d4rl_file('antmaze-umaze-v2', np.repeat(np.arange(12.0)[:, None], 29, 1), np.zeros((12, 8)), stored,
                    stored == 1.0, timeouts=np.arange(12) == 7)
    data = load('antmaze-umaze-v2')
    # qlearning_dataset (d4rl/__init__.py) keeps rows 0-6, 8-10: the timeout row and the file's last row go.
    assert data.train['observations'][:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]
    # The FQL code (envs/d4rl_utils.py, after IQL): rewards - 1, once; masks = 1 - D4RL's terminals.
    assert data.train['rewards'].tolist() == [-1, -1, -1, 0, 0, -1, -1, -1, 0, -1]
    assert data.train['masks'].tolist() == [1, 1, 1, 0, 0, 1, 1, 1, 0, 1]
    # Episode ends from discontinuities only (row 6 is followed by row 8), and the last row.
    assert data.train['terminals'].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 1]
    assert data.rewards == 'run'
    # The suite itself returns the rewards as stored: it never applies the rule.
    stored_data = suites.resolve('antmaze-umaze-v2').load(suites.TaskSettings(), **QUIET)
    assert stored_data.train['rewards'].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1, 0]


def test_a_reward_rule_cannot_be_applied_twice():
    data = suites.LoadedData(dict(rewards=np.array([0.0, 1.0])), None, 'a file', {})
    once = suites.with_run_rewards(data, d4rl.antmaze_rewards)
    assert once.train['rewards'].tolist() == [-1.0, 0.0]
    with pytest.raises(ValueError, match='a task\'s reward rule is applied once'):
        suites.with_run_rewards(once, d4rl.antmaze_rewards)


def test_adroit_and_kitchen_train_on_their_rewards_as_stored_and_locomotion_on_qlearning_rows(data_dirs):
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=40)
    # locomotion: 40 rows, timeouts at rows 9 and 29: qlearning_dataset keeps 40 - 2 - 1 (the last) = 37.
    write_d4rl_file('hopper-medium-v2', np.cumsum(rng.normal(size=(40, 11)), 0), rng.uniform(-1, 1, (40, 3)),
                    rewards, np.zeros(40), timeouts=np.isin(np.arange(40), [9, 29]))
    hopper = load('hopper-medium-v2')
    assert len(hopper.train['rewards']) == 37
    assert np.array_equal(hopper.train['rewards'], np.delete(rewards, [9, 29, 39]).astype(np.float32))
    assert hopper.train['terminals'].sum() == 3 and hopper.train['masks'].tolist() == [1.0] * 37
    pen = write_minari_adroit('D4RL/pen/human-v2', 'pen')
    kitchen = write_minari_kitchen('mixed')
    for name, episodes in (('pen-human-v1', pen), ('D4RL/pen/human-v2', pen), ('kitchen-mixed-v0', kitchen)):
        data = load(name)
        assert np.array_equal(data.train['rewards'], np.concatenate([e['rewards'] for e in episodes]).astype(np.float32))


# ---- 3. files without timeouts ----

def test_a_file_without_timeouts_is_split_by_d4rls_step_counter(data_dirs):
    # pen-human-v1 (D4RL hand_manipulation_suite/__init__.py MAX_STEPS: pen 100), 250 rows, no
    # `timeouts`, a terminal at row 149. D4RL's qlearning_dataset (d4rl/__init__.py) counts steps:
    # row 99 is the 100th (timeout: skipped, counter 0); rows 100-149 count 0..49, the terminal
    # restarts the counter, which then counts row 149 itself (1); so the counter reads 99 at row
    # 248, not 249: rows 99 and 248 are timeouts, and the file's last row (249) goes too.
    rows = 250
    write_d4rl_file('pen-human-v1', np.repeat(np.arange(rows, dtype=float)[:, None], 45, 1), np.zeros((rows, 24)),
                    np.arange(rows, dtype=float), np.arange(rows) == 149)
    data = load('pen-human-v1')
    kept = [i for i in range(rows) if i not in (99, 248, 249)]
    assert data.train['rewards'].tolist() == kept
    assert data.train['next_observations'][:, 0].tolist() == [i + 1 for i in kept]
    # Episode ends (the FQL code, adroit): discontinuity (row 98: next kept row 100, next observation 99),
    # D4RL's terminal (row 149), the last kept row (247).
    assert [kept[i] for i in np.nonzero(data.train['terminals'])[0]] == [98, 149, 247]
    assert [kept[i] for i in np.nonzero(data.train['masks'] == 0)[0]] == [149]


# ---- 2. the evaluation environment is the task's ----

def test_adroit_from_minari_is_evaluated_in_d4rls_adroit_and_flags_json_says_so(data_dirs):
    write_minari_adroit('D4RL/pen/human-v2', 'pen')
    for name in ('pen-human-v1', 'D4RL/pen/human-v2'):
        data = load(name)
        assert data.record['source'] == 'minari'
        # D4RL hand_manipulation_suite/__init__.py: MAX_STEPS['pen'] = 100; D4RLAdroit: pen_v0.py's drop end.
        assert data.record['evaluation_env'] == dict(id='AdroitHandPen-v1', options=dict(reward_type='dense'), max_episode_steps=100,
                                                     wrappers=['D4RLAdroit'])
        env = evaluation_env(name, data.record)
        assert isinstance(env, d4rl_envs.D4RLAdroit) and env.spec.max_episode_steps == 100


def test_kitchen_is_evaluated_as_d4rls_task_whatever_minari_recorded(data_dirs):
    for dataset in ('complete', 'partial', 'mixed'):
        write_minari_kitchen(dataset)
        name = f'kitchen-{dataset}-v0'
        data = load(name)
        # d4rl/kitchen/__init__.py: max_episode_steps=280; kitchen_envs.py KitchenBase:
        # REMOVE_TASKS_WHEN_COMPLETE = TERMINATE_ON_TASK_COMPLETE = True; TASK_ELEMENTS per registration.
        assert data.record['evaluation_env'] == dict(
            id='FrankaKitchen-v1', max_episode_steps=280, wrappers=['FlatObservation'],
            options=dict(tasks_to_complete=D4RL_KITCHEN_TASKS[dataset], remove_task_when_completed=True,
                         terminate_on_tasks_completed=True))
        env = evaluation_env(name, data.record)
        assert sorted(env.unwrapped.goal) == sorted(D4RL_KITCHEN_TASKS[dataset])
        assert env.observation_space.shape == (59,)
    # Minari's id of D4RL's kitchen data is evaluated as the D4RL task it serves.
    assert load('D4RL/kitchen/mixed-v2').record['evaluation_env']['options']['tasks_to_complete'] == \
        D4RL_KITCHEN_TASKS['mixed']


def _put_kitchen_tasks_at_goal(env, tasks):
    kitchen = env.unwrapped
    for task in tasks:
        kitchen.data.qpos[KITCHEN_INDICES[task]] = KITCHEN_GOALS[task]
    mujoco.mj_forward(kitchen.model, kitchen.data)


def test_kitchen_pays_each_subtask_once_and_ends_when_all_four_are_done(data_dirs):
    write_minari_kitchen('mixed')
    data = load('kitchen-mixed-v0')
    env = evaluation_env('kitchen-mixed-v0', data.record)
    env.reset(seed=0)
    stay = np.zeros(9)
    _put_kitchen_tasks_at_goal(env, ['microwave'])
    # kitchen_envs.py KitchenBase._get_reward_n_score: reward = number of subtasks completed in this
    # step (distance < BONUS_THRESH 0.3), and REMOVE_TASKS_WHEN_COMPLETE removes them: paid once.
    assert env.step(stay)[1:4] == (1.0, False, False)
    assert env.step(stay)[1:4] == (0.0, False, False)
    _put_kitchen_tasks_at_goal(env, ['kettle', 'bottom burner', 'light switch'])
    # KitchenBase.step: TERMINATE_ON_TASK_COMPLETE, done when no subtask is left.
    assert env.step(stay)[1:4] == (3.0, True, False)


def test_kitchen_episode_lasts_d4rls_280_steps(data_dirs):
    write_minari_kitchen('partial')
    data = load('kitchen-partial-v0')
    env = evaluation_env('kitchen-partial-v0', data.record)
    env.reset(seed=0)
    for step in range(1, 281):  # d4rl/kitchen/__init__.py: max_episode_steps=280
        _, reward, terminated, truncated, _ = env.step(np.zeros(9))
        if terminated or truncated:
            break
    assert (step, truncated, terminated) == (280, True, False)


def test_minari_ids_outside_d4rl_keep_their_recorded_env(data_dirs):
    made = gymnasium.make('Hopper-v4', max_episode_steps=50)
    write_minari('mujoco/hopper/medium-v0', made.spec, made.observation_space, made.action_space,
                 random_episodes(11, 3, (6, 5)))
    data = load('mujoco/hopper/medium-v0')
    assert data.record['evaluation_env'] == dict(id='Hopper-v4', options={}, max_episode_steps=50, wrappers=[])


# ---- 4. one step online and the same step from a file ----

class LastStep(gymnasium.Wrapper):
    """Keeps the environment's own reward and termination of the last step (what a D4RL file stores)."""

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.last = (float(reward), bool(terminated))
        return observation, reward, terminated, truncated, info


def _at_antmaze_goal(env):
    sim = env.unwrapped
    sim.data.qpos[:2] = sim.goal
    sim.data.qvel[:] = 0.0
    mujoco.mj_forward(sim.model, sim.data)


def _fallen_hopper(env):
    hopper = env.unwrapped
    qpos = hopper.data.qpos.copy()
    qpos[1] = 0.5  # Hopper-v4 is unhealthy (terminates) below z = 0.7
    hopper.set_state(qpos, hopper.data.qvel.copy())


def _dropped_pen(env):
    pen = env.unwrapped
    qpos = pen.data.qpos.copy()
    for slide in range(3):  # the pen's slide joints: move it down, below D4RL's 0.075 m (pen_v0.py)
        for offset in (0.5, -0.5):
            moved = qpos.copy()
            moved[pen.model.jnt_qposadr[pen.model.body_jntadr[pen.obj_body_id] + slide]] += offset
            pen.set_state(moved, pen.data.qvel.copy())
            if pen.data.xpos[pen.obj_body_id][2] < 0.0:
                return
    raise AssertionError('no slide joint moves the pen down')


def _kitchen_all_done(env):
    _put_kitchen_tasks_at_goal(env, D4RL_KITCHEN_TASKS['mixed'])


def _as_is(env):
    pass


STEP_CASES = [  # (name, how the step is stored, the state the step starts from)
    ('antmaze-umaze-v2', 'hdf5', _at_antmaze_goal),
    ('antmaze-umaze-v2', 'hdf5', _as_is),
    ('hopper-medium-v2', 'hdf5', _fallen_hopper),
    ('door-human-v1', 'hdf5', _as_is),
    ('pen-human-v1', 'minari', _dropped_pen),
    ('kitchen-mixed-v0', 'minari', _kitchen_all_done),
]


@pytest.mark.parametrize('name, stored_as, script', STEP_CASES,
                         ids=[f'{name}-{script.__name__.strip("_")}' for name, _, script in STEP_CASES])
def test_one_step_online_and_the_same_step_from_a_file_get_the_same_reward_and_mask(data_dirs, monkeypatch, name,
                                                                                    stored_as, script):
    task, settings = suites.resolve(name), RunSettings(env_name=name)
    record = dict(source=stored_as, dataset_id=task.entry.minari_id) if stored_as == 'minari' else dict(source='hdf5')
    if stored_as == 'minari':  # a dataset of that id for the env to be made from, where it needs one
        write_minari_kitchen('mixed') if task.domain == 'kitchen' else write_minari_adroit(task.entry.minari_id,
                                                                                           task.entry.env)
    make_env = runner.env_factory(settings, task, record)
    envs = MemberEnvs(lambda: LastStep(make_env()), [0], reward_fn=task.reward_function(task_settings(settings)))
    envs.restart(0)
    env = envs.pool.local.envs[0]
    script(env)
    action = np.zeros(env.action_space.shape, np.float32)
    transition, _ = envs.step(action[None], 1)
    reward, terminated = env.last
    observations = np.stack([transition['observations'][0], transition['next_observations'][0]])
    # The step as D4RL's and Minari's files store it: the environment's reward and termination.
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(data_dirs / 'minari-step'))
    if stored_as == 'hdf5':
        write_d4rl_file(name, observations, np.stack([action, action]), [reward, 0.0], [terminated, False],
                        timeouts=[False, False])
    else:
        if task.domain == 'kitchen':
            write_minari_kitchen('mixed', episodes=[dict(observations=observations, actions=action[None],
                                                         rewards=[reward], terminations=[terminated],
                                                         truncations=[not terminated])])
        else:
            made = gymnasium.make(d4rl_envs.ADROIT_ENV_IDS[task.entry.env])
            write_minari(task.entry.minari_id, made.spec, made.observation_space, made.action_space,
                         [dict(observations=observations, actions=action[None], rewards=[reward],
                               terminations=[terminated], truncations=[not terminated])])
    data = load(name)
    assert len(data.train['rewards']) == 1
    assert data.train['rewards'][0] == transition['rewards'][0]
    assert data.train['masks'][0] == transition['masks'][0]
    assert terminated == (script in (_at_antmaze_goal, _fallen_hopper, _dropped_pen, _kitchen_all_done))
    envs.close()


# ---- end to end: a scripted episode scored by the run's evaluation ----

def _door_reward_as_d4rl(env) -> float:
    """D4RL hand_manipulation_suite/door_v0.py DoorEnvV0.step, from the simulator's state."""
    task = env.unwrapped
    palm, handle = task.data.site_xpos[task.grasp_site_id], task.data.site_xpos[task.handle_site_id]
    hinge = float(np.squeeze(task.data.qpos[task.door_hinge_addrs]))
    reward = -0.1 * np.linalg.norm(palm - handle) - 0.1 * (hinge - 1.57) ** 2 - 1e-5 * np.sum(task.data.qvel ** 2)
    return float(reward + 2 * (hinge > 0.2) + 8 * (hinge > 1.0) + 10 * (hinge > 1.35))


def test_a_scripted_door_episode_gets_d4rls_return_horizon_and_normalised_score(data_dirs):
    write_minari_adroit('D4RL/door/human-v2', 'door')
    task = suites.resolve('door-human-v1')
    data = load('door-human-v1')  # no D4RL file: Minari's re-simulation
    envs = EvalEnvs(runner.env_factory(RunSettings(env_name='door-human-v1'), task, data.record), 1, 1)

    def still(states, observations, keys, episodes, times):  # the scripted policy: no action, ever
        return np.zeros(observations.shape[:2] + (28,), np.float32)

    stats = run_episodes(still, None, envs, [7], step=0)
    envs.pool.close()
    # By hand: gymnasium-robotics' door with the same reset seed, D4RL's reward from the state after
    # every step, for D4RL's 200 steps (hand_manipulation_suite/__init__.py MAX_STEPS['door']).
    d4rl_envs._robotics()
    hand = gymnasium.make('AdroitHandDoor-v1', max_episode_steps=1000)
    hand.reset(seed=episode_seed(7, 0, 0))
    expected = 0.0
    for _ in range(200):
        hand.step(np.zeros(28))
        expected += _door_reward_as_d4rl(hand)
    low, high = -56.512833, 2880.5693087298737  # d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE['door-human-v1']
    assert stats['episode_length'][0] == 200
    assert np.isclose(stats['episode_return'][0], expected, rtol=0, atol=1e-6)
    score = task.episode_scores(stats['episode_return'], stats['success'])[0]
    assert np.isclose(score, (expected - low) / (high - low), rtol=0, atol=1e-9)
