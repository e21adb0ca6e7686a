"""main.py end to end on a small locally generated dataset: train, evaluate, checkpoint, resume,
results. (Bad command lines: tests/test_bad_input.py.)"""

import csv
import importlib.metadata
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from flowrl.suites.ogbench_envs import default_success_timing, parse_env_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--agent.actor_hidden_dims=32,32', '--agent.value_hidden_dims=32,32', '--agent.batch_size=32']


# One xdist worker builds the module's trained run once and runs every test that reads it.
pytestmark = pytest.mark.xdist_group('test_main_trained_run')


def run_cli(args, home, cwd=REPO, module=None):
    """main.py (or `module`) as a user runs it, with `home` as HOME (where the dataset goes)."""
    env = dict(os.environ, FLOWRL_NO_DOWNLOAD='1', JAX_PLATFORMS='cpu', HOME=str(home))
    command = [sys.executable, '-m', module] if module else [sys.executable, os.path.join(REPO, 'main.py')]
    return subprocess.run(command + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def newcomer(tmp_path_factory):
    """(HOME, working directory) of a fresh machine: no dataset, no runs."""
    root = tmp_path_factory.mktemp('main')
    (root / 'home').mkdir()
    (root / 'work').mkdir()
    return root / 'home', root / 'work'


@pytest.fixture(scope='module')
def trained_run(newcomer):
    """A 2-seed FQL run on cube-single-play (2 generated episodes): 100 offline updates, then 100
    online environment steps (one update each); checkpoints every 50, the last two kept. Run as a
    newcomer runs it: no --dataset_dir (the data is generated into ~/.ogbench/data of a fresh
    HOME), no --save_dir (the run lands in exp/Debug/ of the working directory), and every flag the
    test does not need to shrink at its default."""
    home, work = newcomer
    args = ['--env_name=cube-single-play', '--dataset_episodes=2', '--offline_steps=100', '--online_steps=100',
            '--log_interval=50', '--eval_interval=100', '--eval_episodes=2', '--save_interval=50', '--num_seeds=2',
            *TINY]
    result = run_cli(args, home, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (home / '.ogbench' / 'data').glob('*.npz')) == [
        'cube-single-play-v0-ep2-val.npz', 'cube-single-play-v0-ep2.npz']
    (run_dir,) = [str(path) for path in (work / 'exp' / 'Debug').glob('fql_*')]
    return run_dir, result


def read_csv(path, drop=('env_steps_per_s',)):
    with open(path, newline='') as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def test_run_writes_logs_checkpoints_and_results(trained_run, newcomer):
    run_dir, result = trained_run
    assert 'Presets for cube-single-play' in result.stdout and 'alpha=300.0' in result.stdout
    flags = json.load(open(os.path.join(run_dir, 'flags.json')))
    assert flags['env'] == 'cube-single-play-singletask-v0' and flags['configs'][0]['alpha'] == 300.0
    # The data's size (2 generated episodes of 1,001 steps: 1,000 transitions each) and the agent's
    # defaults with the presets, for the report.
    assert (flags['data']['episodes'], flags['data']['transitions']) == (2, 2000)
    assert (flags['default_config']['alpha'], flags['default_config']['actor_hidden_dims']) == (300.0, [512] * 4)
    ogbench = dict(ogbench_version=importlib.metadata.version('ogbench'),
                   success_timing=default_success_timing(parse_env_name('cube-single-play')))
    assert {k: flags[k] for k in ogbench} == ogbench
    train = read_csv(os.path.join(run_dir, 'train.csv'))
    assert [(int(r['step']), int(r['seed'])) for r in train] == [(s, seed) for s in (50, 100, 150, 200) for seed in (0, 1)]
    evals = read_csv(os.path.join(run_dir, 'eval.csv'))
    assert [(int(r['step']), int(r['seed'])) for r in evals] == [(100, 0), (100, 1), (200, 0), (200, 1)]
    assert all(float(r['episode_length']) > 0 and 0 <= float(r['success']) <= 1 for r in evals)
    # The dataset's validation split gives validation/<metric> beside every training metric.
    assert {k for k in train[0] if k.startswith('validation/')} == {f'validation/{k}' for k in train[0]
                                                                   if k.startswith(('actor/', 'critic/'))}
    # Online rows report the episodes that ended (none here: cube-single episodes last 200 steps).
    assert [r['exploration/episodes'] for r in train] == ['nan'] * 4 + ['0.0'] * 4
    assert sorted(os.listdir(os.path.join(run_dir, 'checkpoints'))) == ['150', '200']
    results = json.load(open(os.path.join(run_dir, 'results.json')))
    assert [m['seed'] for m in results['members']] == [0, 1]
    for member in results['members']:
        history = [e['success'] for e in member['evaluations']]
        assert member['final_score'] == pytest.approx(sum(history[-3:]) / len(history[-3:]))
    assert results['aggregate'][0]['num_seeds'] == 2
    assert {k: results[k] for k in ogbench} == ogbench
    assert 'Final score' in result.stdout
    # The run's report (flowrl.results.report): its table names the run's agent and both seeds.
    # Paths as the user gave them: relative to the directory the run was started from.
    assert f'Report: {os.path.relpath(run_dir, newcomer[1])}/report/report.md' in result.stdout
    # The setting column names what the command line changed from the defaults with presets, and the
    # published number (FQL paper, 97 ± 2) stands beside how this run departs from the paper's protocol.
    report = open(os.path.join(run_dir, 'report', 'report.md')).read()
    assert ('| cube-single-play | fql | actor_hidden_dims=(32, 32), batch_size=32, value_hidden_dims=(32, 32) | 2 |'
            in report)
    assert ('| 97 ± 2¹ | 100 of 1M updates; 100 online steps (paper offline only); networks 2×32 (paper 4×512); '
            'dataset 2 episodes, 2,000 transitions (paper 1,000 episodes); 2 evaluation episodes (paper 50); evaluated '
            'every 100 updates (paper every 100k)') in report
    assert os.path.exists(os.path.join(run_dir, 'report', 'success_cube-single-play.png'))


def test_interrupted_then_resumed_run_matches_the_uninterrupted_one(trained_run, newcomer, tmp_path):
    run_dir, _ = trained_run
    copy = str(tmp_path / 'interrupted')
    shutil.copytree(run_dir, copy)
    # Simulate a crash after the checkpoint at 150 (online, with the replay buffers): the last
    # checkpoint and results are gone, the CSVs hold rows from after the checkpoint that a
    # resume must not duplicate.
    shutil.rmtree(os.path.join(copy, 'checkpoints', '200'))
    os.remove(os.path.join(copy, 'results.json'))
    result = run_cli([f'--resume={copy}'], newcomer[0])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Resumed' in result.stdout
    for name in ('train.csv', 'eval.csv'):
        assert read_csv(os.path.join(copy, name)) == read_csv(os.path.join(run_dir, name)), name
    original = json.load(open(os.path.join(run_dir, 'results.json')))
    resumed = json.load(open(os.path.join(copy, 'results.json')))
    assert resumed['members'] == original['members']


def test_evaluate_cli_gives_one_row_per_seed_and_value(trained_run, newcomer):
    run_dir, _ = trained_run
    result = run_cli([f'--run_dir={run_dir}', '--agent.alpha=1,30', '--eval_episodes=1'], newcomer[0],
                     module='flowrl.run.evaluate_run')
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(os.path.join(run_dir, 'evaluate_alpha_step200.csv'))
    assert sorted((int(r['seed']), float(r['alpha'])) for r in rows) == [(0, 1.0), (0, 30.0), (1, 1.0), (1, 30.0)]


def test_the_readmes_report_command_reports_the_run_as_written(trained_run, newcomer):
    """The README's `python -m flowrl.results.report exp/`, verbatim, where the run was made."""
    from doc_commands import commands_in

    (command,) = [c for c in commands_in(open(os.path.join(REPO, 'README.md')).read())
                  if c.startswith('python -m flowrl.results.report ')]
    home, work = newcomer
    argv = [sys.executable] + shlex.split(command)[1:]
    result = subprocess.run(argv, cwd=work, env=dict(os.environ, HOME=str(home)), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (work / 'report' / 'report.md').read_text()
    assert '| cube-single-play | fql | actor_hidden_dims=(32, 32), batch_size=32, value_hidden_dims=(32, 32) | 2 |' in report
    assert (work / 'report' / 'success_cube-single-play.png').exists()


def test_results_without_evaluations_are_json_with_null_scores(tmp_path):
    from flowrl.run_files import write_json
    from flowrl.results.scores import results_lines, summarize_results

    results = summarize_results([], [dict(member=0, seed=0), dict(member=1, seed=1)])
    write_json(tmp_path / 'results.json', results)
    text = (tmp_path / 'results.json').read_text()
    assert 'NaN' not in text
    parsed = json.loads(text)
    assert [m['final_score'] for m in parsed['members']] == [None, None] and parsed['aggregate'][0]['mean'] is None
    assert results_lines(parsed)[1:] == ['  seed 0 : not evaluated', '  seed 1 : not evaluated',
                                         '  all: no score over 0 seed(s)']


@pytest.mark.parametrize('flag', ['--help', '--helpfull'])
def test_help_is_a_success_that_names_both_suites(flag, tmp_path):
    """absl ends --help with status 1; the command's own help must exit 0 (its first line: what
    it trains on, OGBench and D4RL alike)."""
    result = run_cli([flag], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    first = result.stdout.splitlines()[0]
    assert first == 'Train an agent on an OGBench singletask environment or a D4RL task (or a Minari dataset).'
    assert '--env_name' in result.stdout and '--offline_steps' in result.stdout


def test_only_help_asked_for_counts_as_help():
    from flowrl.run.command import asks_for_help

    assert asks_for_help(['main.py', '--help']) and asks_for_help(['main.py', '--env_name=x', '-helpfull'])
    assert asks_for_help(['main.py', '-?']) and asks_for_help(['main.py', '--help=true'])
    assert not asks_for_help(['main.py', '--help=false'])
    assert not asks_for_help(['main.py', '--env_name=help'])
    assert not asks_for_help(['main.py', '--', '--help'])  # after `--`, not a flag


def test_eval_workers_error_says_zero_means_one_per_core():
    from flowrl.errors import UserError
    from flowrl.run.runner import RunSettings, check_settings

    with pytest.raises(UserError, match=r'^--eval_workers must be zero \(one per core\) or a positive integer'):
        check_settings(RunSettings(eval_workers=-1))


# A real main.py, its chunks pinned to 7 updates (rows do not depend on where chunks end), that
# stops at a known point until a stop signal has been received: the test sends it only then, so
# no outcome depends on timing. Point 'offline': the chunk from update 57; 'evaluation': its first
# policy call; 'online': the environment step to update 160.
STOP_DRIVER = r'''
import runpy, sys, time
from flowrl import stopping
from flowrl.engine import evaluation, online, training
from flowrl.run import progress

point, sys.argv = sys.argv[1], ['main.py'] + sys.argv[2:]
progress.ChunkPacer.size = lambda self: 7

def wait_for_a_stop_signal():
    print('AT THE STOP POINT', flush=True)
    deadline = time.monotonic() + 300
    while stopping.requested() is None:
        assert time.monotonic() < deadline, 'no stop signal came'
        time.sleep(0.01)

def pausing(owner, name, here):
    original = getattr(owner, name)
    def paused(*args):
        if here(*args):
            wait_for_a_stop_signal()
        return original(*args)
    setattr(owner, name, paused)

if point == 'offline':
    pausing(training.ChunkRunner, 'run', lambda self, *args: args[5] == 57)
elif point == 'evaluation':
    pausing(evaluation, '_policy_actions', lambda *args: True)
elif point == 'online':
    pausing(online.MemberEnvs, 'step', lambda self, actions, step: step == 160)
runpy.run_path('main.py', run_name='__main__')
'''


def run_until_stopped(args, point, signum, home):
    """main.py `args`, sent `signum` once it waits at `point`; returns (exit status, stderr lines)."""
    env = dict(os.environ, FLOWRL_NO_DOWNLOAD='1', JAX_PLATFORMS='cpu', HOME=str(home))
    process = subprocess.Popen([sys.executable, '-c', STOP_DRIVER, point] + args, cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith('AT THE STOP POINT'):
                process.send_signal(signum)
                break
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.slow  # the slowest tests: run with -m slow (pyproject.toml)
def test_stopped_three_times_the_run_continues_exactly_as_the_uninterrupted_one(trained_run, newcomer, tmp_path):
    """SIGINT mid-training, SIGTERM mid-evaluation and SIGINT mid-online, each followed by the
    printed resume command: every stop says where it stopped and keeps a checkpoint there, and
    the rows and agents are those of the uninterrupted run."""
    from flowrl.engine import checkpoints

    reference, _ = trained_run
    home = newcomer[0]  # the reference run's data, in its ~/.ogbench/data
    args = [f'--save_dir={tmp_path}', '--dataset_episodes=2',
            '--env_name=cube-single-play', '--offline_steps=100', '--online_steps=100', '--log_interval=50',
            '--eval_interval=100', '--eval_episodes=2', '--save_interval=50', '--num_seeds=2', *TINY]
    status, lines = run_until_stopped(args, 'offline', signal.SIGINT, home)
    (run_dir,) = [os.path.join(dp, d) for dp, ds, _ in os.walk(tmp_path) for d in ds if d.startswith('fql_')]
    resume = f'continue with: python main.py --resume={run_dir}'
    assert status == 130, lines
    assert lines[-1] == (f'Stopped by Ctrl-C (SIGINT) at update 64 of 200, with a checkpoint in {run_dir}/checkpoints; '
                         f'{resume}')
    assert not any('Traceback' in line for line in lines), lines
    assert checkpoints.steps(os.path.join(run_dir, 'checkpoints')) == [50, 64]

    status, lines = run_until_stopped([f'--resume={run_dir}'], 'evaluation', signal.SIGTERM, home)
    assert status == 143, lines
    assert lines[-1] == (f'Stopped by SIGTERM during the evaluation at update 100; the checkpoint saved before it is '
                         f'kept and the resumed run evaluates again; {resume}')
    assert checkpoints.steps(os.path.join(run_dir, 'checkpoints')) == [64, 100]
    assert not os.path.exists(os.path.join(run_dir, 'eval.csv'))  # no evaluation finished

    status, lines = run_until_stopped([f'--resume={run_dir}'], 'online', signal.SIGINT, home)
    assert status == 130, lines
    assert lines[-1] == (f'Stopped by Ctrl-C (SIGINT) at update 164 of 200, with a checkpoint in {run_dir}/checkpoints; '
                         f'{resume}')
    assert not any('Traceback' in line or 'Error' in line for line in lines), lines
    assert checkpoints.steps(os.path.join(run_dir, 'checkpoints')) == [150, 164]
    # Resumed once more to the end: every row, the final agents and the results are the
    # uninterrupted run's (online episodes go on across the stop's checkpoint, replayed on resume).
    result = run_cli([f'--resume={run_dir}'], home)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ('train.csv', 'eval.csv'):
        assert read_csv(os.path.join(run_dir, name)) == read_csv(os.path.join(reference, name)), name
    assert_same_checkpoint(os.path.join(run_dir, 'checkpoints'), os.path.join(reference, 'checkpoints'), 200)
    final = lambda path: json.load(open(os.path.join(path, 'results.json')))['members']
    assert final(run_dir) == final(reference)


def assert_same_checkpoint(directory, reference_directory, step):
    import numpy as np
    import orbax.checkpoint as ocp

    def arrays(path):
        tree = ocp.PyTreeCheckpointer().restore(os.path.join(path, str(step), 'default'))
        return {k: np.asarray(v) for k, v in ocp.tree.to_flat_dict(tree, sep='/').items()}

    got, want = arrays(directory), arrays(reference_directory)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_main_and_evaluate_run_import_into_one_process_each_with_its_own_flag_registry():
    """absl has one global registry per process, and the two commands share flag names
    (--eval_episodes, the start-up flags): each defines its flags in a registry of its own and
    joins it to absl's only when it runs (flowrl.run.command), so a program may import both
    and parse each command line (the commands themselves: test_evaluate_cli_gives_one_row_per_seed_and_value,
    test_help_is_a_success_that_names_both_suites)."""
    script = '''
from absl import flags
import flowrl.main, flowrl.run.evaluate_run
from flowrl.run.command import join_flags

assert not {"env_name", "run_dir", "eval_episodes", "distributed"} & set(flags.FLAGS)  # importing defined none
train, evaluate = flowrl.main.FLAGS, flowrl.run.evaluate_run.FLAGS
assert "run_dir" not in train and "env_name" not in evaluate
assert train(["main.py", "--env_name=pen-human-v1", "--eval_episodes=3", "--distributed=off"]) == ["main.py"]
assert evaluate(["evaluate_run", "--run_dir=exp/x", "--eval_episodes=7", "--step=5"]) == ["evaluate_run"]
assert (train.env_name, train.eval_episodes, train.distributed) == ("pen-human-v1", 3, "off")
assert (evaluate.run_dir, evaluate.eval_episodes, evaluate.step, evaluate.distributed) == ("exp/x", 7, 5, "auto")
join_flags(evaluate)  # what running the command does: its flags join absl's registry...
join_flags(evaluate)  # ...once, however often it runs in one process
assert flags.FLAGS["eval_episodes"] is evaluate["eval_episodes"] and "run_dir" in flags.FLAGS
assert flags.FLAGS.get_flags_for_module("flowrl.run.evaluate_run")  # --help lists them under their module
try:
    join_flags(train)  # a second command in the same process: absl refuses the same name twice
except flags.DuplicateFlagError:
    pass
else:
    raise AssertionError("two commands joined one registry")
'''
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, JAX_PLATFORMS='cpu'))
    assert result.returncode == 0, result.stderr[-2000:]
