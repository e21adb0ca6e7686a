"""D4RL's locomotion recipe made here (flowrl.making.locomotion): SAC on HalfCheetah-v4 at a tiny size,
trained through the engine's online path, writes Minari datasets that Minari reads back and main.py
trains on; an interrupted run continues to the same data; flowrl/<env>/<dataset> ids score with
D4RL's reference returns."""

import dataclasses
import json
import os

import numpy as np
import pytest

from flowrl.making import locomotion, minari_writer
from flowrl.suites.data.__main__ import main as data_main
from flowrl.engine.online import reset_seed
from flowrl.errors import UserError
from flowrl.suites import d4rl

# 400 SAC steps of tiny nets on 50-step episodes; the medium point is the first
# evaluation (any return reaches it), at step 100 (random steps end there too).
TINY = dict(env='halfcheetah', sac_steps=400, random_steps=100, medium_return=-1e9, rollout_episodes=2,
            eval_interval=100, eval_episodes=1, checkpoint_interval=200, max_episode_steps=50, hidden_dims=(16, 16),
            batch_size=16)
TINY_ARGS = ['--sac_steps=400', '--random_steps=100', '--medium_return=-1e9', '--rollout_episodes=2',
             '--eval_interval=100', '--eval_episodes=1', '--checkpoint_interval=200', '--max_episode_steps=50',
             '--hidden_dims=16,16', '--batch_size=16']
IDS = {name: f'flowrl/halfcheetah/{name}-v0' for name in locomotion.DATASETS}

# One xdist worker runs the recipe once (`made`, a module fixture) for every test that reads it;
# spread over both workers, each built it (84 s of the loaded 2-core machine each).
pytestmark = pytest.mark.xdist_group('test_locomotion_recipe')


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    """The command run once, uninterrupted, as a newcomer runs it: in a fresh HOME, with Minari's
    and the recipe's default directories (~/.minari/datasets, ~/.flowrl/locomotion/halfcheetah);
    (minari root, work dir, exit status)."""
    home = tmp_path_factory.mktemp('recipe')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('HOME', str(home))
        patch.delenv('MINARI_DATASETS_PATH', raising=False)
        status = data_main(['locomotion', 'halfcheetah', *TINY_ARGS])
    return home / '.minari' / 'datasets', home / '.flowrl' / 'locomotion' / 'halfcheetah', status


def _load(root, dataset_id, monkeypatch):
    import minari

    monkeypatch.setenv('MINARI_DATASETS_PATH', str(root))
    return minari.load_dataset(dataset_id)


def _episodes(dataset):
    return [dict(observations=e.observations, actions=e.actions, rewards=e.rewards, terminations=e.terminations,
                 truncations=e.truncations) for e in dataset.iterate_episodes()]


def test_the_command_writes_four_minari_datasets_with_the_policy_return(made, monkeypatch):
    root, _, status = made
    assert status == 0
    medium = _load(root, IDS['medium'], monkeypatch)
    record = json.loads(medium.storage.metadata['description'])
    assert record == minari_writer.read_record(IDS['medium'])  # description and sidecar hold the same
    episodes = _episodes(medium)
    assert len(episodes) == 2 and all(len(e['rewards']) == 50 for e in episodes)
    policy = record['policies']['medium']
    assert policy['env_step'] == 100
    assert policy['rollout_return_mean'] == pytest.approx(np.mean([e['rewards'].sum() for e in episodes]), rel=1e-6)
    assert record['average_return'] == pytest.approx(policy['rollout_return_mean'], rel=1e-6)
    assert record['sac']['config']['backup_entropy'] is True and record['settings']['sac_steps'] == 400
    # HalfCheetah never terminates: every episode is truncated at its last step only.
    for e in episodes:
        assert not e['terminations'].any() and e['truncations'][-1] and not e['truncations'][:-1].any()
        assert len(e['observations']) == len(e['actions']) + 1
    metadata = medium.storage.metadata
    assert (metadata['ref_min_score'], metadata['ref_max_score']) == d4rl.REF_SCORES['halfcheetah']
    assert medium.recover_environment(eval_env=True).spec.max_episode_steps == 50


def test_medium_replay_is_the_buffer_up_to_the_medium_point_and_medium_expert_both_rollouts(made, monkeypatch):
    root, _, _ = made
    replay = _episodes(_load(root, IDS['medium-replay'], monkeypatch))
    assert [len(e['rewards']) for e in replay] == [50, 50]  # the 100 steps SAC took before its medium evaluation
    settings = locomotion.RecipeSettings(**TINY)
    env = locomotion.make_env(settings)
    first, _ = env.reset(seed=reset_seed(0, 0))  # the engine's online episodes: the member's seed, the step
    np.testing.assert_allclose(replay[0]['observations'][0], first, rtol=1e-6)  # float32 in the buffer
    env.reset(seed=reset_seed(0, 0))
    for t in range(3):  # the buffer's next observations are the env's
        observation = env.step(replay[0]['actions'][t])[0]
        np.testing.assert_allclose(replay[0]['observations'][t + 1], observation, rtol=1e-5, atol=1e-6)
    # The 100 random steps are numpy's uniform stream of the seed, stored without an update.
    actions = np.concatenate([e['actions'] for e in replay])
    np.testing.assert_array_equal(actions, np.random.default_rng(0).uniform(-1, 1, (100, 6)).astype(np.float32))
    assert replay[1]['observations'][0] == pytest.approx(env.reset(seed=reset_seed(0, 50))[0], rel=1e-6)
    medium = _episodes(_load(root, IDS['medium'], monkeypatch))
    expert = _episodes(_load(root, IDS['expert'], monkeypatch))
    both = _episodes(_load(root, IDS['medium-expert'], monkeypatch))
    assert len(both) == len(medium) + len(expert)
    for mine, theirs in zip(both, medium + expert):
        np.testing.assert_array_equal(mine['actions'], theirs['actions'])
    record = minari_writer.read_record(IDS['expert'])
    assert record['policies']['expert']['env_step'] == 400
    assert set(minari_writer.read_record(IDS['medium-expert'])['policies']) == {'medium', 'expert'}


def test_sac_curve_is_written_beside_the_datasets(made):
    root, _, _ = made
    with open(root / 'flowrl' / 'halfcheetah' / locomotion.CURVE_FILE) as handle:
        rows = [line.strip().split(',') for line in handle]
    assert tuple(rows[0]) == locomotion.CURVE_COLUMNS
    assert [int(r[0]) for r in rows[1:]] == list(range(100, 401, 100))
    assert all(int(r[4]) == 2 for r in rows[1:])  # two 50-step training episodes end in each 100 steps


def test_main_trains_on_a_dataset_made_here_and_scores_it_with_d4rls_returns(made, tmp_path):
    """main.py in the HOME the recipe wrote to, with Minari's default directory and save_dir."""
    from test_d4rl import _results, run_main

    root, work, _ = made
    home = root.parent.parent
    assert work.is_dir() and root == home / '.minari' / 'datasets'
    result = run_main([f'--env_name={IDS["medium-replay"]}', '--offline_steps=4'], dict(HOME=str(home)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, results = _results(tmp_path / 'exp')
    assert results['metric'] == 'normalized_return'
    assert results['members'][0]['final_score'] is not None


def test_an_interrupted_run_continues_to_the_same_data(made, tmp_path, monkeypatch):
    """Checkpoints every 130 steps (the reference's every 200): the run stopped at step 250 continues
    from step 130, in the middle of a 50-step episode, which the resumed run replays (as a resumed
    main.py --online_steps does); the data does not depend on where checkpoints fall."""
    reference_root, _, _ = made
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
    settings = locomotion.RecipeSettings(**{**TINY, 'checkpoint_interval': 130}, work_dir=str(tmp_path / 'work'))

    def interrupt(step):
        if step == 250:  # after the checkpoints of steps 100 (medium) and 130, before the one of 260
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        locomotion.make_datasets(settings, log=lambda line: None, on_step=interrupt)
    assert minari_writer.exists(IDS['medium']) and not minari_writer.exists(IDS['expert'])
    lines = []
    progress = locomotion.make_datasets(settings, log=lines.append)
    assert 'Continuing from the checkpoint of step 130' in lines[0]
    assert progress.step == 400 and progress.expert is not None
    for name in ('medium-replay', 'expert', 'medium-expert'):
        ours = _episodes(_load(tmp_path / 'minari', IDS[name], monkeypatch))
        theirs = _episodes(_load(reference_root, IDS[name], monkeypatch))
        assert len(ours) == len(theirs)
        for mine, reference in zip(ours, theirs):
            for key in mine:
                np.testing.assert_array_equal(mine[key], reference[key], err_msg=f'{name} {key}')
    # A third run finds everything made and trains no more.
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
    lines = []
    locomotion.make_datasets(settings, log=lines.append)
    assert lines == ['The datasets of this run are made already (step 400); --force makes them again.']


def test_a_policy_that_never_reaches_the_medium_return_is_said_and_its_run_can_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path / 'minari'))
    settings = locomotion.RecipeSettings(**{**TINY, 'medium_return': 1e9, 'sac_steps': 200},
                                         work_dir=str(tmp_path / 'work'))
    for attempt in range(2):  # the rerun says the same, without training again
        with pytest.raises(UserError, match='never reached the medium return 1000000000.0 in 200 steps'):
            locomotion.make_datasets(settings, log=lambda line: None)
    assert not any(minari_writer.exists(i) for i in IDS.values())
    longer = dataclasses.replace(settings, sac_steps=300, medium_return=1e9)
    with pytest.raises(UserError, match='in 300 steps'):
        locomotion.make_datasets(longer, log=lambda line: None)
    progress = locomotion.read_progress(longer)
    assert progress.step == 300 and [row['env_step'] for row in progress.curve] == [100, 200, 300]


def test_ctrl_c_says_the_checkpoint_is_kept(monkeypatch, capsys):
    def interrupted(settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(locomotion, 'make_datasets', interrupted)
    assert data_main(['locomotion', 'halfcheetah', '--work_dir=/tmp/somewhere']) == 130
    assert 'the last checkpoint in /tmp/somewhere is kept: run the same command again' in capsys.readouterr().err


def test_a_checkpoint_of_other_settings_or_datasets_without_one_are_refused(made, tmp_path, monkeypatch):
    root, work, _ = made
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(root))
    other = locomotion.RecipeSettings(**{**TINY, 'batch_size': 32}, work_dir=str(work))
    with pytest.raises(UserError, match=r'made with other settings \(--batch_size=16\)'):
        locomotion.make_datasets(other, log=lambda line: None)
    elsewhere = locomotion.RecipeSettings(**TINY, work_dir=str(tmp_path / 'fresh'))
    with pytest.raises(UserError, match='already exist .* pass --force'):
        locomotion.make_datasets(elsewhere, log=lambda line: None)


def test_buffer_episodes_split_at_ends_and_cut_the_running_one():
    """The engine's transitions (episode ends in `terminals`, masks 0 where terminated) as Minari's
    episodes: terminations and truncations apart, the running episode cut at the end (truncated)."""
    t = np.arange(7, dtype=np.float32)
    terminals, masks = np.zeros(7, np.float32), np.ones(7, np.float32)
    terminals[[2, 4]], masks[2] = 1, 0  # step 2 terminated, step 4 truncated (an end with mask 1)
    transitions = dict(observations=t[:, None], actions=0.1 * t[:, None], rewards=t, terminals=terminals, masks=masks,
                       next_observations=t[:, None] + 1)
    episodes = locomotion.buffer_episodes(transitions, 6)  # rows [0, 6): step 5 runs on
    assert [e['rewards'].tolist() for e in episodes] == [[0, 1, 2], [3, 4], [5]]
    assert episodes[0]['observations'][:, 0].tolist() == [0, 1, 2, 3]  # the last next observation appended
    assert episodes[0]['terminations'].tolist() == [False, False, True]
    assert not episodes[0]['truncations'].any() and not episodes[1]['terminations'].any()
    assert episodes[1]['truncations'].tolist() == [False, True] and episodes[2]['truncations'].tolist() == [True]


def test_a_checkpoint_of_the_recipes_own_loop_is_refused_in_one_sentence(tmp_path):
    settings = locomotion.RecipeSettings(**TINY, work_dir=str(tmp_path))
    (tmp_path / locomotion.OLD_CHECKPOINT).write_bytes(b'')
    with pytest.raises(UserError, match=r'written by an older flowrl, .* pass --force to start again\.$'):
        locomotion.make_datasets(settings, log=lambda line: None)


def test_medium_target_is_a_third_of_d4rls_expert_return_unless_given():
    settings = locomotion.RecipeSettings(env='halfcheetah')
    assert locomotion.medium_target(settings) == pytest.approx(12135.0 / 3)
    assert locomotion.medium_target(locomotion.RecipeSettings(env='hopper', medium_return_fraction=0.5)) == 3234.3 / 2
    assert locomotion.medium_target(locomotion.RecipeSettings(env='hopper', medium_return=100)) == 100.0


@pytest.mark.parametrize('change, message', [
    (dict(env='ant'), 'Unknown locomotion env'),
    (dict(random_steps=8, batch_size=16), 'must be at least --batch_size'),
    (dict(sac_steps=100, random_steps=100), 'below --sac_steps'),
    (dict(eval_interval=0), '--eval_interval must be at least 1'),
])
def test_bad_settings_are_refused_in_one_sentence(change, message):
    with pytest.raises(UserError, match=message):
        locomotion.check_settings(locomotion.RecipeSettings(**{'env': 'halfcheetah', **change}))


def test_ids_made_here_score_with_d4rls_returns_and_say_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path))
    task = d4rl.parse('flowrl/halfcheetah/medium-replay-v0')
    assert task.entry.name == 'halfcheetah-medium-replay-v2' and task.name == 'flowrl/halfcheetah/medium-replay-v0'
    assert task.reference_returns == d4rl.REF_SCORES['halfcheetah'] and task.preset_keys == ('halfcheetah-medium-replay',)
    np.testing.assert_allclose(task.episode_scores([12135.0, -280.178953], None), [1.0, 0.0])
    with pytest.raises(UserError, match='make it with `python -m flowrl.suites.data locomotion halfcheetah`'):
        task._minari_id(print)
    assert d4rl.parse('flowrl/halfcheetah/mixed-v0') is None  # not a D4RL locomotion dataset, not installed


def test_the_commands_help_says_what_it_makes_and_every_default(capsys):
    """`python -m flowrl.suites.data --help` names locomotion data besides OGBench's, and
    `locomotion --help` shows each option's default: the recipe's own (RecipeSettings)."""
    import re

    with pytest.raises(SystemExit) as exit:
        data_main(['--help'])
    assert exit.value.code == 0
    description = ' '.join(capsys.readouterr().out.split())
    assert 'OGBench datasets' in description and 'locomotion datasets trained with SAC' in description
    with pytest.raises(SystemExit) as exit:
        data_main(['locomotion', '--help'])
    assert exit.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    defaults = locomotion.RecipeSettings(env='halfcheetah')
    shown = {field.name: str(getattr(defaults, field.name)) for field in dataclasses.fields(defaults)
             if getattr(defaults, field.name) not in (None, False) and field.name != 'env'}
    shown.update(hidden_dims='256,256', medium_return_fraction="1/3, D4RL's")
    for name, value in shown.items():
        assert re.search(rf'--{name} {name.upper()} [^-]*\(default: {re.escape(value)}', text), name
    for name in ('medium_return', 'max_episode_steps', 'work_dir'):  # None: said in words
        assert re.search(rf'--{name} {name.upper()} [^-]*\(default: (?!None)', text), name
    # The defaults shown are the ones a run gets.
    from flowrl.suites.data.__main__ import build_parser

    args = vars(build_parser().parse_args(['locomotion', 'halfcheetah']))
    assert locomotion.RecipeSettings(**{k: v for k, v in args.items() if k != 'command'}) == defaults


def test_data_md_worked_example_of_a_short_run_reaches_its_medium_return():
    """docs/DATA.md's short-run example: on the recorded halfcheetah curve, its --medium_return is
    reached before its --sac_steps, while the default medium return is not."""
    import csv
    import re

    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs')
    text = open(os.path.join(docs, 'DATA.md')).read()
    (steps, target), = re.findall(r'locomotion halfcheetah --sac_steps=(\d+) --medium_return=([\d.]+)', text)
    with open(os.path.join(docs, 'sac_halfcheetah_curve_flowrl.csv'), newline='') as f:
        curve = [(int(row['env_step']), float(row['eval_return'])) for row in csv.DictReader(f)]

    def medium_point(medium_return):
        return next((step for step, value in curve if value >= medium_return), None)

    default = locomotion.medium_target(locomotion.RecipeSettings(env='halfcheetah'))
    assert medium_point(float(target)) <= int(steps) < medium_point(default)


@pytest.fixture
def mujoco_warnings():
    """MuJoCo's warnings as they reach a recording handler (the handler before the test restored after)."""
    import mujoco

    before = mujoco.get_mju_user_warning()
    seen = []
    mujoco.set_mju_user_warning(seen.append)
    yield seen
    mujoco.set_mju_user_warning(before)


def test_halfcheetahs_settotalmass_warning_is_dropped_and_only_it(mujoco_warnings):
    """Gymnasium's HalfCheetah-v4 model makes MuJoCo warn that settotalmass is deprecated each time
    an environment is made (several times per locomotion run); flowrl drops that one warning where
    it makes one and passes every other on to the handler that was installed."""
    import gymnasium
    import mujoco

    from flowrl.suites.d4rl_envs import SETTOTALMASS_WARNING, make_locomotion_env, mujoco_warning_dropped

    with pytest.warns(DeprecationWarning):  # -v4 is out of date (the model is D4RL's on purpose)
        gymnasium.make('HalfCheetah-v4').close()
    assert [m[:len(SETTOTALMASS_WARNING)] for m in mujoco_warnings] == [SETTOTALMASS_WARNING]  # its source
    mujoco_warnings.clear()
    make_locomotion_env('halfcheetah').close()
    with mujoco_warning_dropped(SETTOTALMASS_WARNING):
        mujoco.get_mju_user_warning()('another warning')
    assert mujoco_warnings == ['another warning']
    mujoco.get_mju_user_warning()('after')  # the recording handler is back
    assert mujoco_warnings == ['another warning', 'after']


def test_writing_a_halfcheetah_dataset_drops_the_warning_too(tmp_path, monkeypatch, mujoco_warnings):
    """Minari makes the environment and the evaluation one to record their specs."""
    from flowrl.suites.d4rl_envs import make_locomotion_env

    monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path))
    env = make_locomotion_env('halfcheetah', max_episode_steps=2)
    observation, _ = env.reset(seed=0)
    steps = [env.step(env.action_space.sample()) for _ in range(2)]
    episode = dict(observations=np.stack([observation] + [s[0] for s in steps]), actions=np.zeros((2, 6)),
                   rewards=np.array([s[1] for s in steps]), terminations=np.zeros(2, bool),
                   truncations=np.array([False, True]))
    minari_writer.write('flowrl/halfcheetah/warning-v0', [episode], env.spec, (0.0, 1.0), 'test', {})
    assert minari_writer.exists('flowrl/halfcheetah/warning-v0')
    assert mujoco_warnings == []


def test_a_locomotion_env_prints_no_mujoco_warning(tmp_path, monkeypatch, capfd):
    """Without a handler (a plain run), MuJoCo would print the warning to stderr and append it to
    MUJOCO_LOG.TXT in the working directory: neither happens."""
    import mujoco

    from flowrl.suites.d4rl_envs import make_locomotion_env

    monkeypatch.chdir(tmp_path)
    before = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(None)
    try:
        make_locomotion_env('halfcheetah').close()
    finally:
        mujoco.set_mju_user_warning(before)
    captured = capfd.readouterr()
    assert 'settotalmass' not in captured.err + captured.out
    assert not (tmp_path / 'MUJOCO_LOG.TXT').exists()
