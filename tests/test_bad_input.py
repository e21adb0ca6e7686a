"""Bad input: every mistake a user can type is refused up front, before any dataset is loaded,
with one sentence (`error: ...` and exit status 1 on the command line), never a traceback.

Most checks call the validation functions directly; `test_command_lines_fail_in_one_sentence`
drives main.py's entry point over many bad command lines in one subprocess (absl flags are
process-global, and one jax import is cheaper than one per command line).
"""

import glob
import importlib
import itertools
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from flowrl.agents import fql, ifql, qfql, qipo
from flowrl import run_files
from flowrl.registry.agent_loading import load_agent
from flowrl.run.config_overrides import apply_overrides, check_config, parse_sweeps
from flowrl.run.files import require_writable_dir
from flowrl.suites.ogbench_envs import DATASET_FAMILIES, parse_env_name
from flowrl.errors import UserError
from flowrl.results.scores import summarize_results
from flowrl.run.runner import RunSettings, check_settings
from flowrl.run.saved import settings_from_run_dir
from flowrl.engine.training import chunk_boundaries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_sentence(message: str) -> bool:
    return '\n' not in message and message.count('. ') == 0 and message.endswith(('.', '?'))


# ----------------------------------------------------------------------------- config values


@pytest.mark.parametrize('agent, key, raw, message', [
    (fql, 'alpha', 'nan', "--agent.alpha must be a finite number, got 'nan'."),
    (fql, 'alpha', 'inf', "--agent.alpha must be a finite number, got 'inf'."),
    (fql, 'alpha', '-inf', 'must be a finite number'),
    (fql, 'lr', '-3e-4', "--agent.lr must be a non-negative learning rate, got '-3e-4'."),
    (fql, 'discount', '1.5', "--agent.discount must be a discount in [0, 1], got '1.5'."),
    (fql, 'discount', '-0.1', 'a discount in [0, 1]'),
    (fql, 'tau', '0', "--agent.tau must be a Polyak rate in (0, 1], got '0'."),
    (fql, 'tau', '1.01', 'a Polyak rate in (0, 1]'),
    (fql, 'batch_size', '0', "--agent.batch_size must be a positive integer, got '0'."),
    (fql, 'batch_size', '-1', 'must be a positive integer'),
    (fql, 'flow_steps', '0', '--agent.flow_steps must be a positive integer (Euler steps)'),
    (fql, 'actor_hidden_dims', '(0,)', 'must be a tuple of positive integer layer sizes'),
    (fql, 'actor_hidden_dims', "(32,'a')", 'must be a tuple of positive integer layer sizes'),
    (fql, 'value_hidden_dims', '64,-1', 'must be a tuple of positive integer layer sizes'),
    (ifql, 'num_samples', '0', '--agent.num_samples must be a positive integer'),
    (ifql, 'expectile', '1.2', 'an expectile in [0, 1]'),
    (qipo, 'renew_period', '0', '--agent.renew_period must be a positive integer'),
    (qipo, 'bc_steps', '-5', '--agent.bc_steps must be a non-negative integer'),
    (qfql, 'grad_clip', 'nan', 'must be a finite number'),
])
def test_bad_config_values_are_refused_when_parsed(agent, key, raw, message):
    with pytest.raises(UserError) as error:
        apply_overrides(agent.get_config(), {key: raw}, 'agent')
    assert message in str(error.value) and one_sentence(str(error.value))


@pytest.mark.parametrize('agent, key, raw, value', [
    (qfql, 'grad_clip', 'inf', float('inf')),  # documented: inf switches clipping off
    (fql, 'discount', '1', 1.0),
    (fql, 'tau', '1', 1.0),
    (qipo, 'bc_steps', '0', 0),  # no warm-up phase
    (fql, 'actor_hidden_dims', '64,64', (64, 64)),
])
def test_edge_values_that_mean_something_are_accepted(agent, key, raw, value):
    assert apply_overrides(agent.get_config(), {key: raw}, 'agent')[key] == value


@pytest.mark.parametrize('specs, message', [
    (['agent.alpha=nan,1'], "--sweep=agent.alpha must be a finite number, got 'nan'."),
    (['agent.discount=0.99,2'], "--sweep=agent.discount must be a discount in [0, 1], got '2'."),
    (['agent.lr=-1,3e-4'], 'must be a non-negative learning rate'),
    (['agent.alpha=300,300'], '--sweep=agent.alpha=300,300 lists 300.0 more than once; give each value once'),
    (['agent.alpha=300,300.0,10'], 'lists 300.0 more than once'),
    (['agent.alpha=1,2', 'agent.alpha=3'],
     '--sweep gives agent.alpha twice (1,2 and 3); list all its values in one flag: --sweep=agent.alpha=1,2,3.'),
])
def test_bad_sweeps_are_refused(specs, message):
    with pytest.raises(UserError) as error:
        parse_sweeps(specs, fql.get_config(), fql.DYNAMIC_KEYS, 'agents/fql.py')
    assert message in str(error.value) and one_sentence(str(error.value))


def test_resolved_config_is_checked_whatever_set_the_value():
    """Defaults and presets go through the same rules as the command line (a user's agent file)."""
    for agent in (fql, ifql, qfql, qipo):
        check_config(agent.get_config(), 'agent')  # shipped defaults pass
    bad = ml_collections.ConfigDict(dict(batch_size=256, actor_hidden_dims=(512, 0)))
    with pytest.raises(UserError, match=r"my_agent\.py: config key 'actor_hidden_dims' must be a tuple"):
        check_config(bad, 'my_agent.py')


# ----------------------------------------------------------------------------- environment names


@pytest.mark.parametrize('name, message', [
    ('cube-single-pla', "OGBench publishes no dataset 'cube-single-pla-v0'; did you mean cube-single-play"),
    ('cube-single-foo', 'did you mean cube-single-noisy, cube-single-play'),
    ('cube-single-pla-singletask-task2-v0', 'did you mean cube-single-play-task2'),
    ('cube-octuple-play', "OGBench publishes no dataset 'cube-octuple-play-v0'"),  # environment only
    ('pointmaze-medium-explore', 'did you mean'),  # explore exists for antmaze only
    ('cube-double-play-task7', 'OGBench registers tasks 1 to 5 for cube-double-play; pass one of cube-double-play-task1'
                               ' to cube-double-play-task5, or cube-double-play for its default task.'),
    ('cube-double-play-singletask-task0-v0', 'tasks 1 to 5'),
])
def test_environment_typos_are_refused_with_the_nearest_names(name, message):
    with pytest.raises(UserError) as error:
        parse_env_name(name)
    assert message in str(error.value) and one_sentence(str(error.value))


@pytest.mark.parametrize('name', [
    'cube-double-play', 'cube-double-noisy', 'puzzle-4x4-play', 'scene-play-task5', 'humanoidmaze-medium-navigate',
    'antsoccer-arena-stitch', 'pointmaze-giant-stitch', 'antmaze-teleport-explore', 'visual-cube-double-play-task3',
    'visual-antmaze-large-explore-singletask-task2-v0', 'cube-double-play-singletask-v0',
])
def test_published_environment_names_are_accepted(name):
    parse_env_name(name)


def test_every_preset_names_a_published_dataset():
    """A preset keyed by a name the parser refuses could never apply."""
    for path in glob.glob(os.path.join(REPO, 'configs', '[!_]*.py')):
        module = importlib.import_module(f'flowrl.configs.{os.path.basename(path)[:-3]}')
        for key in module.PRESETS:
            assert key.split('-task')[0] in DATASET_FAMILIES, (path, key)


# ----------------------------------------------------------------------------- agent files, settings


@pytest.mark.parametrize('path, message', [
    ('README.md', "Agent file 'README.md' is not a Python file"),
    ('main.py', "Agent file 'main.py' is missing get_config, init, update, sample_actions, DYNAMIC_KEYS"),
])
def test_files_that_are_not_agents_are_refused_without_running_them(path, message, monkeypatch):
    monkeypatch.chdir(REPO)
    before = set(sys.modules)
    with pytest.raises(UserError) as error:
        load_agent(path)
    assert message in str(error.value) and one_sentence(str(error.value))
    assert set(sys.modules) == before  # main.py was not imported (it would redefine its flags)


def test_agent_file_with_a_syntax_error_is_one_sentence(tmp_path):
    path = tmp_path / 'broken.py'
    path.write_text('def get_config(:\n')
    with pytest.raises(UserError, match=r"broken\.py' is not valid Python \(invalid syntax"):
        load_agent(str(path))


def test_negative_seed_is_refused_up_front():
    with pytest.raises(UserError, match=r'^--seed must be a non-negative integer, got -1\.$'):
        check_settings(RunSettings(seed=-1))


@pytest.mark.parametrize('path, message', [
    ('/proc/x', "--save_dir '/proc/x' is not writable"),
    ('/etc/hostname/runs', "'/etc/hostname' is a file, not a directory"),
])
def test_unwritable_save_dir_is_refused(path, message):
    if not os.path.exists(path.rsplit('/', 1)[0]):
        pytest.skip(f'{path} needs a Linux /proc or /etc/hostname')
    with pytest.raises(UserError) as error:
        require_writable_dir(os.path.join(path, 'Debug'), f'--save_dir {path!r}')
    assert message in str(error.value) and one_sentence(str(error.value))


def test_writable_save_dir_is_accepted_and_left_untouched(tmp_path):
    require_writable_dir(str(tmp_path / 'new' / 'Debug'), '--save_dir')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('content', ['{"settings": {"seed": 0, "agent": "agents/fq', '[]', '{"settings": {"nope": 1}}'])
def test_corrupt_flags_json_is_one_sentence(tmp_path, content):
    (tmp_path / 'flags.json').write_text(content)
    with pytest.raises(UserError) as error:
        settings_from_run_dir(str(tmp_path))
    assert 'flags.json is unreadable or corrupt' in str(error.value)


def test_huge_offline_steps_build_no_boundary_list():
    """10^18 updates with a boundary every update: the boundaries come one at a time."""
    assert list(itertools.islice(chunk_boundaries(0, 10**18, (1, 5000)), 3)) == [1, 2, 3]
    assert list(itertools.islice(chunk_boundaries(10**10 - 2, 10**10, (3, 10**6)), 5)) == [10**10 - 1, 10**10]


# ----------------------------------------------------------------------------- damaged run files


def test_partial_last_eval_row_is_dropped_on_resume(tmp_path):
    """A crash while appending leaves a partial row; the resume's truncation repairs the file."""
    path = tmp_path / 'eval.csv'
    path.write_text('step,member,seed,success,episode_return,episode_length\r\n'
                    '100,0,0,0.5,-10.0,200.0\r\n'
                    '200,0,0,0.7,-8.0,180.0\r\n'
                    '300,0,0,0.')  # cut off mid-row
    log = run_files.CsvLog(str(path))
    log.truncate_after(300)
    assert path.read_bytes().endswith(b'200,0,0,0.7,-8.0,180.0\r\n')
    results = summarize_results(log.read(), [dict(member=0, seed=0)])
    assert results['members'][0]['final_score'] == pytest.approx(0.6)
    log.append([dict(step=300, member=0, seed=0, success=0.9, episode_return=-5.0, episode_length=150.0)])
    assert [row['step'] for row in log.read()] == ['100', '200', '300']


# ----------------------------------------------------------------------------- command lines


DRIVER = '''
import contextlib, io, json, sys, traceback
import main
results = []
for argv in json.loads(sys.argv[1]):
    main.FLAGS.unparse_flags()
    sys.argv = ['main.py', *argv]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main.run()
            code = 0
        except SystemExit as exit:
            code = exit.code
        except Exception:
            code = 'traceback'
            traceback.print_exc(file=stderr)
    results.append([code, stderr.getvalue()])
print(json.dumps(results))
'''


def _env():
    return dict(os.environ, FLOWRL_NO_DOWNLOAD='1', JAX_PLATFORMS='cpu', PYTHONPATH=REPO)


def test_command_lines_fail_in_one_sentence(tmp_path):
    """main.py's entry point on bad command lines: exit 1, `error: <one sentence>`, no dataset touched."""
    corrupt_run = tmp_path / 'corrupt_run'
    corrupt_run.mkdir()
    (corrupt_run / 'flags.json').write_text('{"settings": {"agent": "agents/fq')
    base = [f'--save_dir={tmp_path / "runs"}', f'--dataset_dir={tmp_path / "data"}', '--dataset_episodes=1',
            '--env_name=pointmaze-medium-stitch']
    cases = [
        (['--seed=-1'], '--seed must be a non-negative integer, got -1.'),
        (['--save_dir=/proc/x'], "--save_dir '/proc/x' is not writable"),
        (['--agent=README.md'], "Agent file 'README.md' is not a Python file"),
        (['--agent=main.py'], "Agent file 'main.py' is missing get_config"),
        (['--agent.batch_size=0'], '--agent.batch_size must be a positive integer'),
        (['--agent.flow_steps=0'], '--agent.flow_steps must be a positive integer'),
        (['--agent.actor_hidden_dims=(32,"a")'], '--agent.actor_hidden_dims must be a tuple of positive integer'),
        (['--agent.discount=1.5'], '--agent.discount must be a discount in [0, 1]'),
        (['--sweep=agent.alpha=300,300'], 'lists 300.0 more than once'),
        (['--sweep=agent.alpha=1,2', '--sweep=agent.alpha=3'], '--sweep gives agent.alpha twice'),
        (['--env_name=cube-single-pla'], 'did you mean cube-single-play'),
        ([f'--resume={corrupt_run}'], 'flags.json is unreadable or corrupt'),
        (['--env_name=cube-nine-play'], "Unknown environment 'cube-nine-play'"),
        (['--agent=agents/no_such_agent.py'], "Agent file 'agents/no_such_agent.py' does not exist"),
        (['--agent.no_such_key=1'], "Unknown config key 'no_such_key'"),
        (['--agent.alpha=ten'], "--agent.alpha expects a float like 10.0, got 'ten'"),
        (['--sweep=agent.value_hidden_dims=8,16'], "can only sweep its dynamic hyperparameters"),
        (['--resume=/no/such/run'], "Cannot resume '/no/such/run'"),
        (['--offline_steps=0'], '--offline_steps and --online_steps are both 0'),
        (['--online_steps=-5'], '--online_steps must be zero (off) or a positive integer'),
        (['--balanced_sampling=2'], '--balanced_sampling must be 0 or 1'),
        (['--horizon_length=0'], '--horizon_length must be a positive integer, got 0.'),
        (['--p_aug=0.5'], '--p_aug applies to pixel observations (visual-* environments)'),
        (['--restore_epoch=5'], '--restore_epoch needs --restore_path'),
        (['--restore_schedule=restart'], '--restore_schedule=restart needs --restore_path'),
        (['--agent=agents/qipo.py', '--offline_steps=1000'],
         "QIPO's phases do not fit a run that ends at update 1,000 (phase 3 starts at bc_steps + critic_steps = "
         '500,000 and renews its snapshot renew_period = 50,000 updates later); set values that fit (e.g. '
         'bc_steps=200, critic_steps=300, renew_period=50) or pass --agent.phase_scale=auto'),
    ]
    result = subprocess.run([sys.executable, '-c', DRIVER, json.dumps([base + argv for argv, _ in cases])],
                            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for (argv, message), (code, stderr) in zip(cases, json.loads(result.stdout.splitlines()[-1])):
        lines = stderr.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith('error: '), (argv, code, stderr[-2000:])
        assert message in lines[0], (argv, lines[0])
    assert not (tmp_path / 'runs').exists() and not (tmp_path / 'data').exists()


def test_evaluate_on_a_corrupt_run_is_one_sentence(tmp_path):
    (tmp_path / 'flags.json').write_text('{"settings": ')
    result = subprocess.run([sys.executable, '-m', 'flowrl.run.evaluate_run', f'--run_dir={tmp_path}'], cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith('error: ') and 'flags.json is unreadable or corrupt' in lines[0]
