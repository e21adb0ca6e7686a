"""What gets installed: a wheel of the repository, distribution `flowrl-offline` (the package
index's `flowrl` is another project), holds the package `flowrl` only (agents/ and
configs/ become flowrl.agents and flowrl.configs), and a copy installed from it trains from a
directory outside the repository. `--agent=agents/X.py` names flowrl's agent X from any directory,
as one module object (flowrl.registry.agent_loading)."""

import importlib
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from flowrl.registry.agent_loading import AGENTS_DIR, load_agent, resolve_agent_path
from flowrl.errors import UserError
from flowrl.testing import short_manipulation_episodes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The distribution's name (pyproject.toml): not `flowrl`, which the package index gives another project.
DISTRIBUTION = 'flowrl-offline'
# Where each source folder of the repository is installed: the only top-level name is flowrl.
INSTALLED_AS = {'flowrl': 'flowrl', 'agents': 'flowrl/agents', 'configs': 'flowrl/configs'}
TINY = ['--agent.actor_hidden_dims=16', '--agent.batch_size=8', '--agent.flow_steps=2']

pytestmark = pytest.mark.xdist_group('test_packaging_wheel')


def quiet_env(**changes):
    return dict(os.environ, FLOWRL_NO_DOWNLOAD='1', JAX_PLATFORMS='cpu', PIP_NO_INDEX='1', **changes)


def repository_sources():
    """{path in the repository: path installed} for every Python file of the installed folders."""
    files = {}
    for folder, installed in INSTALLED_AS.items():
        for directory, subdirectories, names in os.walk(os.path.join(REPO, folder)):
            subdirectories[:] = [d for d in subdirectories if d != '__pycache__']
            relative = os.path.relpath(directory, os.path.join(REPO, folder)).replace(os.sep, '/')
            for name in names:
                if name.endswith('.py'):
                    inner = name if relative == '.' else f'{relative}/{name}'
                    files[f'{folder}/{inner}'] = f'{installed}/{inner}'
    return files


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """A wheel built, without the network, from a copy of the repository's sources (a build in the
    checkout would leave build/ there, whose stale files setuptools puts in later wheels)."""
    root = tmp_path_factory.mktemp('packaging')
    source = root / 'source'
    ignore = shutil.ignore_patterns('__pycache__')
    for name in INSTALLED_AS:
        shutil.copytree(os.path.join(REPO, name), source / name, ignore=ignore)
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(REPO, name), source / name)
    built = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
                            '-q', '-w', str(root / 'wheel'), str(source)],
                           env=quiet_env(), capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (path,) = (root / 'wheel').glob('*.whl')
    return path


def test_the_wheel_installs_flowrl_only_with_every_source_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (dist_info,) = {name.split('/')[0] for name in names if name.split('/')[0].endswith('.dist-info')}
        top_level = archive.read(f'{dist_info}/top_level.txt').decode().split()
        entry_points = archive.read(f'{dist_info}/entry_points.txt').decode()
        metadata = archive.read(f'{dist_info}/METADATA').decode().splitlines()
    assert f'Name: {DISTRIBUTION}' in metadata and wheel.name.startswith(DISTRIBUTION.replace('-', '_') + '-')
    assert {name.split('/')[0] for name in names} == {'flowrl', dist_info}
    assert top_level == ['flowrl']
    assert 'flowrl-train = flowrl.main:script' in entry_points
    # Every module of the checkout's flowrl/, agents/ and configs/ is in it (a subpackage missing
    # from pyproject.toml's list would not be), and nothing else is: no main.py, tests or benchmarks.
    assert {name for name in names if not name.startswith(dist_info)} == set(repository_sources().values())


def test_an_installed_copy_trains_from_a_directory_outside_the_repository(wheel, tmp_path):
    site = tmp_path / 'site'
    installed = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q',
                                '--target', str(site), str(wheel)], env=quiet_env(), capture_output=True, text=True,
                               timeout=300)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    env = quiet_env(PYTHONPATH=str(site))  # the installed copy, and not the repository, on sys.path
    where = subprocess.run(
        [sys.executable, '-c', 'import importlib.util, sys; import flowrl; '
         'print(*[importlib.util.find_spec(name).origin for name in '
         '("flowrl", "flowrl.main", "flowrl.agents.fql", "flowrl.configs.fql")]); '
         'print(sorted({"agents", "configs"} & set(sys.modules)))'],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    origins, loaded = where.stdout.splitlines()
    assert origins.split() == [str(site / 'flowrl' / name) for name in
                               ('__init__.py', 'main.py', 'agents/fql.py', 'configs/fql.py')]
    assert loaded == '[]'

    home = tmp_path / 'home'  # a fresh HOME: the data goes to OGBench's default directory in it
    with pytest.MonkeyPatch.context() as patch:  # 1 + 1 validation episodes of 6 steps
        short_manipulation_episodes(patch, 6)
        from flowrl.making.ogbench import produce_dataset

        produce_dataset('cube-single-play-v0', dataset_dir=str(home / '.ogbench' / 'data'), dataset_episodes=1,
                        workers=1, log=lambda *a: None, download=False)
    # Flow BC, the cheapest agent to compile; its presets come from flowrl.configs (the shared ones).
    # No --dataset_dir or --save_dir: the defaults, from a directory that is not the repository.
    command = [str(site / 'bin' / 'flowrl-train'), '--agent=agents/flow_bc.py', '--env_name=cube-single-play',
               '--dataset_episodes=1', '--offline_steps=2', '--log_interval=1', '--eval_episodes=0', *TINY]
    trained = subprocess.run(command, cwd=elsewhere, env=dict(env, HOME=str(home)), capture_output=True, text=True,
                             timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert 'Agent agents/flow_bc.py on cube-single-play-singletask-v0' in trained.stdout
    (run_dir,) = (elsewhere / 'exp' / 'Debug').glob('flow_bc_*')
    with open(run_dir / 'train.csv') as f:
        header, *rows = f.read().splitlines()
    assert header.startswith('step,member,seed,actor/bc_flow_loss') and [row[:2] for row in rows] == ['1,', '2,']


def test_agent_paths_name_flowrl_agents_from_any_directory_as_one_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fql = importlib.import_module('flowrl.agents.fql')
    assert resolve_agent_path('agents/fql.py') == os.path.join(AGENTS_DIR, 'fql.py')
    assert resolve_agent_path('./agents/fql.py') == os.path.join(AGENTS_DIR, 'fql.py')
    # A saved run's setting as given, a path into the checkout and a path through the package: one module.
    assert load_agent('agents/fql.py') is fql
    assert load_agent(os.path.join(REPO, 'agents', 'fql.py')) is fql
    assert load_agent(fql.__file__) is fql
    assert AGENTS_DIR == os.path.join(REPO, 'agents')
    # The current directory comes first: its own agents/fql.py is the one named.
    (tmp_path / 'agents').mkdir()
    (tmp_path / 'agents' / 'fql.py').write_text('')
    assert resolve_agent_path('agents/fql.py') == 'agents/fql.py'
    with pytest.raises(UserError, match=r"^Agent file 'agents/nope\.py' does not exist; flowrl's agents are "
                                        r"agents/acfql\.py, agents/flow_bc\.py, agents/flowq\.py, agents/fql\.py, .*agents/sac\.py\.$"):
        load_agent('agents/nope.py')


def test_the_folders_do_not_import_as_top_level_packages(monkeypatch):
    """From the repository root `import agents` would find the folder: a second copy of every agent,
    refused in one sentence."""
    monkeypatch.syspath_prepend(REPO)
    for name, example in (('agents', 'from flowrl.agents import fql'), ('configs', 'from flowrl.configs import fql')):
        with pytest.raises(ImportError, match=f'are the package flowrl.{name}, not {name}: write `{example}`'):
            importlib.import_module(name)
        assert name not in sys.modules


def test_main_py_runs_from_another_directory(tmp_path):
    """The repository's main.py, run from elsewhere: `--agent=agents/fql.py` is flowrl's FQL (its
    config is read: the bad override is refused by its key), and a missing file is one sentence."""
    for agent, message in (('agents/fql.py', 'error: --agent.batch_size must be a positive integer'),
                           ('agents/nope.py', "error: Agent file 'agents/nope.py' does not exist;")):
        result = subprocess.run([sys.executable, os.path.join(REPO, 'main.py'), f'--agent={agent}',
                                 '--agent.batch_size=0', f'--save_dir={tmp_path / "runs"}'],
                                cwd=tmp_path, env=quiet_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and result.stderr.startswith(message), result.stderr[-2000:]


def test_resume_lines_give_the_command_that_was_started():
    from flowrl.run.resume_lines import train_command

    module = os.path.join(REPO, 'flowrl', 'main.py')
    assert train_command('/venv/bin/flowrl-train', module) == 'flowrl-train'
    assert train_command(module, module) == 'python -m flowrl.main'
    assert train_command(os.path.join(REPO, 'main.py'), module) == 'python main.py'
    assert train_command('main.py', module) == 'python main.py'
