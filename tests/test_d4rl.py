"""D4RL on the maintained stack (flowrl.suites.d4rl): names, conversion rules with hand-computed
expectations, refused files, the download path (a file served on 127.0.0.1), scores, presets,
the FQL README's D4RL commands, and main.py end to end on one dataset of each family, all on
data the tests write (h5py files in D4RL's layout, Minari datasets in a temporary
MINARI_DATASETS_PATH). Nothing is downloaded from outside this machine."""

import functools
import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from flowrl import suites
from flowrl.errors import UserError
from flowrl.run.settings import RunSettings, task_settings
from flowrl.suites import TaskSettings, d4rl, d4rl_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--agent.actor_hidden_dims=16,16', '--agent.batch_size=8']


# ---- conversions: D4RL's qlearning_dataset and the FQL code's terminals and masks ----

def _d4rl_rows():
    """7 rows: episode A (rows 0-2, a timeout at 2), B (3-4, terminal at 4), C (5-6, data ends).
    Observation i is [i, 0]."""
    return dict(observations=np.array([[i, 0.0] for i in range(7)]), actions=np.linspace(-2, 2, 14).reshape(7, 2),
                rewards=np.arange(7, dtype=np.float64), terminals=np.array([0, 0, 0, 0, 1, 0, 0], bool),
                timeouts=np.array([0, 0, 1, 0, 0, 0, 0], bool))


def test_qlearning_rows_drop_timeouts_and_the_last_row():
    assert d4rl_data.qlearning_rows(_d4rl_rows()).tolist() == [0, 1, 3, 4, 5]


def test_timeouts_by_length_follow_d4rls_counter():
    # max 3 steps: row 2 is a timeout (counter 2), row 3 restarts at 0; a terminal at row 4 restarts
    # the counter at 1 (D4RL increments after the reset), so the next timeout is row 6, not row 7.
    terminals = np.array([0, 0, 0, 0, 1, 0, 0, 0], bool)
    assert np.nonzero(d4rl_data._timeouts_by_length(terminals, 3))[0].tolist() == [2, 6]


def test_hdf5_transitions_as_the_fql_code_builds_them():
    adroit = d4rl_data.hdf5_transitions(_d4rl_rows(), antmaze=False)
    # Kept rows 0, 1, 3, 4, 5; next observations are rows 1, 2, 4, 5, 6.
    assert adroit['observations'][:, 0].tolist() == [0, 1, 3, 4, 5]
    assert adroit['next_observations'][:, 0].tolist() == [1, 2, 4, 5, 6]
    assert adroit['rewards'].tolist() == [0, 1, 3, 4, 5]
    # Ends: row 1 (next kept row 3 != next obs 2), row 4 (terminal; also continuous: 5 == 5), the last.
    assert adroit['terminals'].tolist() == [0, 1, 0, 1, 1]
    assert adroit['masks'].tolist() == [1, 1, 1, 0, 1]
    antmaze = d4rl_data.hdf5_transitions(_d4rl_rows(), antmaze=True)
    # antmaze: ends only from discontinuity (a goal is not an episode end), masks from terminals.
    assert antmaze['terminals'].tolist() == [0, 1, 0, 0, 1]
    assert antmaze['masks'].tolist() == [1, 1, 1, 0, 1]
    limit = 1 - 1e-5
    assert np.allclose(adroit['actions'][0], [-limit, -limit]) and adroit['actions'].dtype == np.float32


def test_minari_episodes_to_transitions_with_dict_observations():
    observation = lambda t: dict(achieved_goal=np.stack([t, t + 0.5], -1), observation=np.stack([-t] * 3, -1),
                                 desired_goal=np.full((len(t), 2), 9.0))
    episodes = [SimpleNamespace(id=0, observations=observation(np.arange(4.0)), actions=np.zeros((3, 8)),
                                rewards=np.array([0.0, 1.0, 0.0]), terminations=np.zeros(3, bool),
                                truncations=np.array([0, 0, 1], bool)),
                SimpleNamespace(id=1, observations=observation(np.arange(10.0, 13.0)), actions=np.ones((2, 8)) * 3,
                                rewards=np.array([0.0, 0.0]), terminations=np.array([0, 1], bool),
                                truncations=np.zeros(2, bool))]
    data = d4rl_data.minari_transitions(episodes, d4rl.ANTMAZE_KEYS, goal_terminates=True)
    # achieved_goal then observation: D4RL's order; desired_goal left out.
    assert data['observations'][0].tolist() == [0, 0.5, 0, 0, 0]
    assert data['next_observations'][:, 0].tolist() == [1, 2, 3, 11, 12]
    # Reward 1 at step 1 of episode 0 is a goal: terminal state (mask 0), as in D4RL's antmaze data; the
    # episode goes on (the FQL code's antmaze rule, envs/d4rl_utils.py: ends from discontinuities only).
    assert data['masks'].tolist() == [1, 0, 1, 1, 0]
    assert data['terminals'].tolist() == [0, 0, 1, 0, 1]
    assert np.allclose(data['actions'][3:], 1 - 1e-5)
    plain = d4rl_data.minari_transitions(episodes, d4rl.ANTMAZE_KEYS)
    assert plain['masks'].tolist() == [1, 1, 1, 1, 0] and plain['terminals'].tolist() == [0, 0, 1, 0, 1]


def test_scores_are_d4rls_normalised_return_and_antmaze_success():
    cheetah = suites.resolve('halfcheetah-medium-v2')
    assert np.allclose(cheetah.episode_scores([12135.0, -280.178953, 5927.4105235], [np.nan] * 3), [1, 0, 0.5])
    pen = suites.resolve('pen-human-v1')
    low, high = 96.262799, 3076.8331017826877
    assert np.isclose(pen.episode_scores([low + 0.25 * (high - low)], [1.0])[0], 0.25)
    antmaze = suites.resolve('antmaze-large-play-v2')
    assert antmaze.episode_scores([1.0, 0.0], [1.0, 0.0]).tolist() == [1.0, 0.0] and antmaze.metric == 'success'
    # Online and offline rewards of antmaze are D4RL's minus 1 (the FQL code, after IQL).
    assert antmaze.reward_function(TaskSettings())(np.array([0.0, 1.0])).tolist() == [-1.0, 0.0]
    assert pen.reward_function(TaskSettings())(np.array([2.5])).tolist() == [2.5]


# ---- names ----

def test_names_resolve_to_their_suite_and_typos_get_the_nearest():
    for name in ('antmaze-large-play-v2', 'pen-human-v1', 'halfcheetah-medium-expert-v2', 'kitchen-mixed-v0',
                 'D4RL/pen/human-v2', 'mujoco/hopper/medium-v0'):
        assert suites.resolve(name).suite == 'd4rl'
    assert suites.resolve('cube-double-play').suite == 'ogbench'
    with pytest.raises(UserError, match='did you mean antmaze-large-play-v2'):
        suites.resolve('antmaze-large-play-v3')
    with pytest.raises(UserError, match='did you mean halfcheetah-medium-v2'):
        suites.resolve('halfchetah-medium-v2')
    with pytest.raises(UserError, match='did you mean cube-double-play'):
        suites.resolve('cube-doble-play')


def test_ogbench_only_options_are_refused_on_d4rl():
    """From OGBench's declaration of its options (flowrl.suites.ogbench.OPTIONS), one sentence each."""
    task = suites.resolve('hopper-medium-v2')
    with pytest.raises(UserError, match='^--sparse applies to OGBench environments, not to the D4RL task '
                                        'hopper-medium-v2; leave it out.$'):
        suites.check_settings(task, TaskSettings(sparse=True), [])
    with pytest.raises(UserError, match='--dataset_episodes applies to OGBench'):
        suites.check_settings(task, TaskSettings(dataset_episodes=3), [])
    with pytest.raises(UserError, match=r'--frame_stack applies to pixel observations \(visual-\* environments\), '
                                        'not to the D4RL task hopper-medium-v2'):
        suites.check_settings(task, TaskSettings(frame_stack=1), [])
    for name in ('success_timing', 'dataset_workers', 'p_aug'):
        with pytest.raises(UserError, match=f'--{name} applies to'):
            suites.check_settings(task, TaskSettings(**{name: dict(success_timing='pre').get(name, 2)}), [])
    suites.check_settings(task, TaskSettings(dataset_dir='d', dataset_path='f.hdf5', online_steps=5), [])


def test_suite_options_are_declared_once_and_read_as_typed_settings():
    """Each declared option is a TaskSettings field; TaskSettings is the run settings' fields of the
    same names, types and defaults, and the run's task_settings copies their values."""
    import dataclasses

    from flowrl.suites import ogbench

    task_fields = {field.name: field for field in dataclasses.fields(TaskSettings)}
    run_fields = {field.name: field for field in dataclasses.fields(RunSettings)}
    assert {option.name for option in suites.declared_options()} == {
        'sparse', 'success_timing', 'dataset_episodes', 'dataset_workers', 'frame_stack', 'p_aug'}
    assert set(task_fields) <= set(run_fields)
    for name, field in task_fields.items():
        assert (field.type, field.default) == (run_fields[name].type, run_fields[name].default), name
    given = RunSettings(sparse=True, success_timing='post', dataset_episodes=3, dataset_workers=2, frame_stack=3,
                        p_aug=0.5, dataset_dir='d', dataset_path='p', online_steps=7)
    assert task_settings(given) == TaskSettings(**{name: getattr(given, name) for name in task_fields})
    state, pixels = suites.resolve('cube-single-play'), suites.resolve('visual-cube-single-play')
    assert set(state.accepted_options) == {'sparse', 'success_timing', 'dataset_episodes', 'dataset_workers'}
    assert pixels.accepted_options == tuple(option.name for option in ogbench.OPTIONS)
    suites.check_settings(state, TaskSettings(sparse=True, success_timing='pre', dataset_episodes=2), [])
    with pytest.raises(UserError, match='^--p_aug applies to pixel observations'):
        suites.check_settings(state, TaskSettings(p_aug=0.0), [])  # given, even at 0: only pixel tasks crop


# The FQL README's D4RL commands, as written (18 offline, 10 offline-to-online).
FQL_README_D4RL = [
    *[f'--env_name=antmaze-{m}-v2 --offline_steps=500000 --agent.alpha={a}'
      for m, a in (('umaze', 10), ('umaze-diverse', 10), ('medium-play', 10), ('medium-diverse', 10),
                   ('large-play', 3), ('large-diverse', 3))],
    *[f'--env_name={task}-v1 --offline_steps=500000 --agent.q_agg=min --agent.alpha={a}'
      for task, a in (('pen-human', 10000), ('pen-cloned', 10000), ('pen-expert', 3000), ('door-human', 30000),
                      ('door-cloned', 30000), ('door-expert', 30000), ('hammer-human', 30000),
                      ('hammer-cloned', 10000), ('hammer-expert', 30000), ('relocate-human', 10000),
                      ('relocate-cloned', 30000), ('relocate-expert', 30000))],
    *[f'--env_name=antmaze-{m}-v2 --online_steps=1000000 --agent.alpha={a}'
      for m, a in (('umaze', 10), ('umaze-diverse', 10), ('medium-play', 10), ('medium-diverse', 10),
                   ('large-play', 3), ('large-diverse', 3))],
    *[f'--env_name={task}-cloned-v1 --online_steps=1000000 --agent.q_agg=min --agent.alpha={a}'
      for task, a in (('pen', 1000), ('door', 1000), ('hammer', 1000), ('relocate', 10000))],
]


def _settings_from_command(command: str) -> RunSettings:
    from absl import flags

    from flowrl.run.config_overrides import split_agent_flags
    from flowrl.run.settings import define_flags, settings_from_values

    values = flags.FlagValues()  # main.py's settings flags, in a registry of the test's own
    names = define_flags(values, 'fql_readme')
    rest, overrides = split_agent_flags(['main.py'] + shlex.split(command))
    values(rest)
    return settings_from_values({name: values[name].value for name in names}, overrides)


@pytest.mark.parametrize('command', FQL_README_D4RL)
def test_fql_readme_d4rl_commands_are_accepted_and_presets_give_their_values(command):
    from flowrl.registry.agent_loading import load_agent
    from flowrl.run.settings import check_settings, resolve_members

    settings = _settings_from_command(command)
    check_settings(settings)
    task = suites.resolve(settings.env_name)
    agent = load_agent(settings.agent)
    configs = resolve_members(settings, agent, task, log=lambda *_: None).configs
    suites.check_settings(task, task_settings(settings), configs)
    # Without its --agent flags the command gets the same config from the presets.
    bare = resolve_members(RunSettings(env_name=settings.env_name, online_steps=settings.online_steps), agent, task,
                           log=lambda *_: None).configs
    assert bare[0].to_dict() == configs[0].to_dict()
    assert len(FQL_README_D4RL) == 28


# ---- files: refused in one sentence, found in D4RL's cache, downloaded from a local server ----

def write_hdf5(path, observation_dim, action_dim, episodes=((30, 'timeout'), (20, 'terminal'), (25, 'end')),
               seed=0, **replace):
    """A small file in D4RL's layout: episodes of the given lengths and endings, a continuous walk
    of observations inside each episode."""
    rng = np.random.default_rng(seed)
    observations, terminals, timeouts = [], [], []
    for length, ending in episodes:
        start = rng.normal(size=observation_dim)
        observations.append(start + 0.01 * np.cumsum(rng.normal(size=(length, observation_dim)), 0))
        terminals.append(np.r_[np.zeros(length - 1), float(ending == 'terminal')])
        timeouts.append(np.r_[np.zeros(length - 1), float(ending == 'timeout')])
    rows = sum(length for length, _ in episodes)
    arrays = dict(observations=np.concatenate(observations).astype(np.float32),
                  actions=rng.uniform(-1, 1, (rows, action_dim)).astype(np.float32),
                  rewards=rng.normal(size=rows).astype(np.float32), terminals=np.concatenate(terminals).astype(bool),
                  timeouts=np.concatenate(timeouts).astype(bool))
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, 'w') as handle:
        for key, value in arrays.items():
            if value is not None:
                handle.create_dataset(key, data=value)
    return path


@pytest.mark.parametrize('damage, message', [
    (dict(rewards=None), "lacks the field\\(s\\) rewards"),
    (dict(terminals=np.zeros(10, bool)), "field 'terminals' has 10 rows but observations has 75"),
    (dict(actions=np.full((75, 6), np.nan, np.float32)), "field 'actions' holds non-finite values"),
])
def test_damaged_files_are_refused_naming_the_file_and_field(tmp_path, damage, message):
    path = write_hdf5(tmp_path / 'halfcheetah_medium-v2.hdf5', 17, 6, **damage)
    with pytest.raises(UserError, match=f'halfcheetah_medium-v2.hdf5.*{message}'):
        d4rl_data.read_hdf5(path)


def test_a_truncated_file_is_refused(tmp_path):
    path = write_hdf5(tmp_path / 'x.hdf5', 17, 6)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(UserError, match='x.hdf5 is unreadable or truncated'):
        d4rl_data.read_hdf5(path)


def test_observations_of_the_wrong_size_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv('D4RL_DATASET_DIR', str(tmp_path))
    from flowrl.run.runner import load_dataset

    write_hdf5(tmp_path / 'hopper_medium-v2.hdf5', 17, 3)  # hopper observes 11 dimensions
    with pytest.raises(UserError, match=r'observations have shape \(17,\) per row but the environment gives \(11,\)'):
        load_dataset(RunSettings(env_name='hopper-medium-v2'), suites.resolve('hopper-medium-v2'), log=lambda *_: None)


def test_missing_data_says_what_to_download_and_where(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv('D4RL_DATASET_DIR', str(tmp_path / 'd4rl'))
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
    with pytest.raises(UserError) as error:
        suites.resolve('pen-human-v1').load(TaskSettings(), log=lambda *_: None)
    text = str(error.value)
    assert 'hand_dapg_v1/pen-human-v1.hdf5' in text and 'minari download D4RL/pen/human-v2' in text
    assert str(tmp_path / 'd4rl') in text


def test_a_file_is_downloaded_to_a_temporary_name_checked_and_renamed(tmp_path, monkeypatch):
    served = tmp_path / 'server' / 'gym_mujoco_v2'
    write_hdf5(served / 'walker2d_medium-v2.hdf5', 17, 6)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / 'server'))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv('FLOWRL_D4RL_URL', f'http://127.0.0.1:{server.server_address[1]}')
        monkeypatch.setenv('FLOWRL_NO_DOWNLOAD', '0')
        monkeypatch.setenv('D4RL_DATASET_DIR', str(tmp_path / 'cache'))
        lines = []
        data = suites.resolve('walker2d-medium-v2').load(TaskSettings(), log=lines.append)
    finally:
        server.shutdown()
    cached = tmp_path / 'cache' / 'walker2d_medium-v2.hdf5'
    assert cached.read_bytes() == (served / 'walker2d_medium-v2.hdf5').read_bytes()
    assert sorted(os.listdir(tmp_path / 'cache')) == ['walker2d_medium-v2.hdf5']  # no temporary left
    assert any('Downloading' in line for line in lines)
    assert data.record['source'] == 'hdf5' and len(data.record['sha256']) == 64
    assert len(data.train['actions']) == 75 - 2  # the timeout row and the file's last row are dropped


# ---- main.py end to end, one dataset of each family ----

def write_minari(root, dataset_id, env_id, observation_space, action_space, episodes, seed=0):
    """A Minari dataset of `episodes` (lengths) of random steps, made the way Minari's own tests
    make theirs (create_dataset_from_buffers in a temporary MINARI_DATASETS_PATH)."""
    script = f'''
import numpy as np, minari, gymnasium
from minari.data_collector.episode_buffer import EpisodeBuffer
from flowrl.suites import d4rl_envs
d4rl_envs._robotics()
env = gymnasium.make({env_id!r})
rng = np.random.default_rng({seed})
buffers = []
for k, steps in enumerate({list(episodes)!r}):
    env.reset(seed=k)
    observations = [env.observation_space.sample() for _ in range(steps + 1)]
    if isinstance(observations[0], dict):
        observations = {{key: np.stack([o[key] for o in observations]) for key in ('observation',)}}
        observations = observations['observation']
    buffers.append(EpisodeBuffer(id=k, observations=np.asarray(observations, np.float64),
                                 actions=rng.uniform(-1, 1, (steps, env.action_space.shape[0])).astype(np.float32),
                                 rewards=rng.uniform(0, 1, steps), terminations=np.zeros(steps, bool),
                                 truncations=np.r_[np.zeros(steps - 1, bool), True], infos={{}}))
space = env.observation_space['observation'] if isinstance(env.observation_space, gymnasium.spaces.Dict) else env.observation_space
minari.create_dataset_from_buffers({dataset_id!r}, buffer=buffers, env={env_id!r}, algorithm_name='flowrl test',
                                   observation_space=space, action_space=env.action_space)
'''
    result = subprocess.run([sys.executable, '-c', script], env=dict(os.environ, MINARI_DATASETS_PATH=str(root)),
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def run_main(args, env, cwd=REPO):
    """main.py with `env` over a newcomer's environment (none of D4RL's or Minari's variables)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(('D4RL_', 'MINARI_'))}
    return subprocess.run([sys.executable, os.path.join(REPO, 'main.py'), '--agent=agents/flow_bc.py',
                           '--log_interval=2', '--eval_interval=4', '--eval_episodes=1', *TINY, *args],
                          cwd=cwd, env=dict(base, JAX_PLATFORMS='cpu', FLOWRL_NO_DOWNLOAD='1', **env),
                          capture_output=True, text=True, timeout=900)


def _results(save_dir):
    [run_dir] = [os.path.join(save_dir, 'Debug', d) for d in os.listdir(os.path.join(save_dir, 'Debug'))]
    with open(os.path.join(run_dir, 'results.json')) as handle:
        return run_dir, json.load(handle)


@pytest.mark.parametrize('name, make_data, metric', [
    pytest.param('halfcheetah-medium-replay-v2', 'locomotion', 'normalized_return', marks=pytest.mark.slow),
    ('antmaze-umaze-v2', 'antmaze', 'success'),  # the default run keeps one family; -m slow the others
    pytest.param('pen-human-v1', 'adroit', 'normalized_return', marks=pytest.mark.slow),
    pytest.param('kitchen-mixed-v0', 'kitchen', 'normalized_return', marks=pytest.mark.slow),
])
def test_main_trains_and_evaluates_on_each_d4rl_family(tmp_path, name, make_data, metric):
    """As a newcomer runs it: D4RL's files in D4RL's default cache (~/.d4rl/datasets) and Minari's
    in Minari's (~/.minari/datasets) of a fresh HOME, the run in exp/ of the working directory, and
    every flag the test does not need to shrink at its default."""
    home, work = tmp_path / 'home', tmp_path / 'work'
    work.mkdir()
    d4rl_cache, minari_root = home / '.d4rl' / 'datasets', home / '.minari' / 'datasets'
    if make_data == 'locomotion':
        write_hdf5(d4rl_cache / 'halfcheetah_medium_replay-v2.hdf5', 17, 6)
    elif make_data == 'antmaze':
        # D4RL's antmaze files: terminals == rewards == 1 at the goal (here rows 40 and 41).
        goal = np.isin(np.arange(75), [40, 41])
        write_hdf5(d4rl_cache / 'Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5',
                   29, 8, terminals=goal, rewards=goal.astype(np.float32))
    elif make_data == 'adroit':
        write_minari(minari_root, 'D4RL/pen/human-v2', 'AdroitHandPen-v1', None, None, (6, 5))
    else:
        write_minari(minari_root, 'D4RL/kitchen/mixed-v2', 'FrankaKitchen-v1', None, None, (6, 5))
    online = ['--online_steps=4'] if make_data in ('antmaze', 'adroit') else []
    result = run_main([f'--env_name={name}', '--offline_steps=4', *online], dict(HOME=str(home)), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    if make_data in ('adroit', 'kitchen'):
        assert 'the data is the Minari dataset' in result.stdout  # says which data stands in for D4RL's
    run_dir, results = _results(work / 'exp')
    assert os.path.exists(os.path.join(run_dir, 'report', 'report.md'))
    assert results['metric'] == metric and results['suite'] == 'd4rl'
    with open(os.path.join(run_dir, 'eval.csv')) as handle:
        header = handle.readline().strip().split(',')
        rows = [dict(zip(header, map(float, line.strip().split(',')))) for line in handle if line.strip()]
    with open(os.path.join(run_dir, 'flags.json')) as handle:
        record = json.load(handle)['data']
    assert record['source'] == ('hdf5' if make_data in ('locomotion', 'antmaze') else 'minari')
    assert len(record['sha256']) == 64
    # The training data: 75 rows less the timeout row and the file's last (D4RL's qlearning_dataset);
    # episodes end at discontinuities (and, but for antmaze, at D4RL's terminals): 3 (antmaze: 2,
    # its terminal-free episode boundary between rows 49 and 50 being continuous).
    if make_data in ('locomotion', 'antmaze'):
        assert record['transitions'] == 73 and record['episodes'] == (2 if make_data == 'antmaze' else 3)
    else:
        assert (record['transitions'], record['episodes']) == (11, 2)  # two Minari episodes of 6 and 5 steps
    # Evaluated in D4RL's environment, with D4RL's horizon: a step limit reached unless the episode ended
    # (antmaze: at success; adroit pen: the pen dropped; kitchen: all four subtasks done).
    horizon = dict(locomotion=1000, antmaze=700, adroit=100, kitchen=280)[make_data]
    assert record['evaluation_env']['max_episode_steps'] == horizon
    assert record['evaluation_env']['wrappers'] == dict(locomotion=[], antmaze=[], adroit=['D4RLAdroit'],
                                                        kitchen=['FlatObservation'])[make_data]
    low, high = d4rl.REF_SCORES[name.split('-')[0]]
    assert rows
    for row in rows:
        assert row['episode_length'] <= horizon
        if make_data == 'antmaze':  # D4RL's antmaze evaluation: return 1 at success (the episode ends), else 0
            assert row['score'] == row['success'] == row['episode_return']
            assert row['episode_length'] == horizon or row['success'] == 1.0
        else:
            assert np.isclose(row['score'], (row['episode_return'] - low) / (high - low), rtol=0, atol=1e-6)
        if make_data in ('locomotion', 'kitchen'):  # halfcheetah never ends; kitchen's random policy does nothing
            assert row['episode_length'] == horizon
    assert results['members'][0]['final_score'] == pytest.approx(np.mean([r['score'] for r in rows][-3:]))


# ---- adroit: D4RL's rewards and episode ends on gymnasium-robotics ----

def test_adroit_door_reward_is_d4rls():
    from flowrl.suites import d4rl_envs

    env = d4rl_envs.make_adroit_env('door')
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, reward, terminated, _, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        task = env.unwrapped
        palm, handle = task.data.site_xpos[task.grasp_site_id], task.data.site_xpos[task.handle_site_id]
        hinge = task.data.qpos[task.door_hinge_addrs]
        # D4RL hand_manipulation_suite/door_v0.py, step():
        expected = -0.1 * np.linalg.norm(palm - handle) - 0.1 * (hinge - 1.57) ** 2 - 1e-5 * np.sum(task.data.qvel ** 2)
        expected += 2 * (hinge > 0.2) + 8 * (hinge > 1.0) + 10 * (hinge > 1.35)
        assert np.isclose(reward, float(np.squeeze(expected)), rtol=0, atol=1e-9)
        assert not terminated


def test_adroit_pen_ends_when_the_pen_drops():
    from flowrl.suites import d4rl_envs

    env = d4rl_envs.make_adroit_env('pen')
    env.reset(seed=0)
    assert env.spec.max_episode_steps == 100
    task = env.unwrapped
    _, _, terminated, _, _ = env.step(np.zeros(env.action_space.shape))
    assert not terminated and task.data.xpos[task.obj_body_id][2] > 0.075  # in the hand
    start, velocity = task.data.qpos.copy(), task.data.qvel.copy()
    for slide in range(3):  # the pen's three slide joints; one of them moves it down in the world
        qpos = start.copy()
        qpos[task.model.jnt_qposadr[task.model.body_jntadr[task.obj_body_id] + slide]] += 0.5
        task.set_state(qpos, velocity)
        if task.data.xpos[task.obj_body_id][2] < 0.0:
            break
    else:
        qpos[task.model.jnt_qposadr[task.model.body_jntadr[task.obj_body_id] + 2]] -= 1.0
        task.set_state(qpos, velocity)
    assert task.data.xpos[task.obj_body_id][2] < 0.075
    _, _, terminated, _, _ = env.step(np.zeros(env.action_space.shape))
    assert terminated


def test_resume_refuses_data_whose_hash_changed(tmp_path):
    from flowrl import run_files
    from flowrl.run.saved import require_same_data

    run_files.write_json(str(tmp_path / run_files.FLAGS_FILE), dict(data=dict(source='hdf5', sha256='a' * 64)))
    require_same_data(str(tmp_path), dict(source='hdf5', file='x.hdf5', sha256='a' * 64))  # the same data
    with pytest.raises(UserError, match='put the original data back to resume'):
        require_same_data(str(tmp_path), dict(source='hdf5', file='x.hdf5', sha256='b' * 64))


def test_published_d4rl_antmaze_numbers_are_the_qfql_papers_table_1():
    from flowrl.results.published import published_score

    fql = published_score('antmaze-large-diverse', None, 'fql')
    assert (fql.mean, fql.std) == (83, 4) and 'Table 1' in fql.source
    assert published_score('antmaze-umaze-diverse', None, 'qfql').mean == 94
    assert published_score(suites.resolve('antmaze-medium-diverse-v2').family, None, 'ifql').mean == 60


def test_antmaze_from_minari_flattens_d4rls_order_and_ends_episodes_at_the_goal(tmp_path, monkeypatch):
    """A D4RL antmaze name without D4RL's file reads Minari's regeneration (dict observations:
    achieved_goal then observation = 29 dimensions), says so, and evaluates on gymnasium-robotics'
    AntMaze with continuing_task=False."""
    script = '''
import numpy as np, minari, gymnasium
from minari.data_collector.episode_buffer import EpisodeBuffer
from flowrl.suites import d4rl_envs
d4rl_envs._robotics()
env = gymnasium.make('AntMaze_UMaze-v4')
rng = np.random.default_rng(0)
buffers = []
for k, steps in enumerate((6, 5)):
    observations = [env.observation_space.sample() for _ in range(steps + 1)]
    stacked = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    buffers.append(EpisodeBuffer(id=k, observations=stacked, actions=rng.uniform(-1, 1, (steps, 8)).astype(np.float32),
                                 rewards=np.r_[np.zeros(steps - 1), 1.0], terminations=np.zeros(steps, bool),
                                 truncations=np.r_[np.zeros(steps - 1, bool), True], infos={}))
minari.create_dataset_from_buffers('D4RL/antmaze/umaze-v1', buffer=buffers, env='AntMaze_UMaze-v4',
                                   algorithm_name='flowrl test', observation_space=env.observation_space,
                                   action_space=env.action_space)
'''
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / 'minari'), D4RL_DATASET_DIR=str(tmp_path / 'd4rl'))
    made = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
    monkeypatch.setenv('D4RL_DATASET_DIR', str(tmp_path / 'd4rl'))
    task, lines = suites.resolve('antmaze-umaze-v2'), []
    data = task.load(TaskSettings(), log=lines.append)
    made_env = task.env_factory(TaskSettings(), data.record)()
    assert any('not comparable with the papers' in line for line in lines)
    assert data.train['observations'].shape == (11, 29) and data.record['source'] == 'minari'
    # Reward 1 at each episode's last step reached the goal: a terminal state, as in D4RL's data.
    assert data.train['masks'].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0]
    assert made_env.unwrapped.continuing_task is False and made_env.observation_space.shape == (29,)
    observation, _ = made_env.reset(seed=0)
    assert observation.shape == (29,)
