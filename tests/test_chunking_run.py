"""Action chunking end to end: the issue's command (agents/acfql.py on cube-double-play with
--horizon_length=5) trains on sequences, evaluates and fine-tunes online with open-loop chunks on
locally generated data, and a crash mid-chunk resumes exactly; the horizon's refusals."""

import csv
import json
import os
import shutil

import pytest

from flowrl.errors import UserError
from flowrl.registry.agent_loading import load_agent
from flowrl.run.settings import RunSettings, resolve_members
from flowrl import suites

from test_main import run_cli

TINY = ['--agent.actor_hidden_dims=16,16', '--agent.value_hidden_dims=16,16', '--agent.batch_size=16',
        '--agent.flow_steps=2']
pytestmark = pytest.mark.xdist_group('test_chunking_run')


@pytest.fixture(scope='module')
def chunked_run(tmp_path_factory):
    """QC-FQL with H = 5 on 2 generated cube-double episodes: 60 offline updates, then 60 online
    steps; evaluations at 60 and 120, checkpoints every 37 updates (the one at 74 is online step 14:
    4 actions into a chunk)."""
    home = tmp_path_factory.mktemp('chunks')
    args = ['--agent=agents/acfql.py', '--env_name=cube-double-play', '--horizon_length=5', '--dataset_episodes=2',
            '--offline_steps=60', '--online_steps=60', '--log_interval=30', '--eval_interval=60', '--eval_episodes=2',
            '--save_interval=37', f'--save_dir={home / "runs"}', *TINY]
    result = run_cli(args, home)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [str(p) for p in (home / 'runs' / 'Debug').glob('acfql_*')]
    return run_dir, home


def _rows(path, drop=('env_steps_per_s', 'updates_per_s')):
    with open(path, newline='') as f:
        return [{k: v for k, v in row.items() if not k.endswith(drop)} for row in csv.DictReader(f)]


def test_the_chunked_run_trains_evaluates_and_fine_tunes(chunked_run):
    run_dir, _ = chunked_run
    flags = json.load(open(os.path.join(run_dir, 'flags.json')))
    assert flags['settings']['horizon_length'] == 5
    train = _rows(os.path.join(run_dir, 'train.csv'))
    steps = [int(r['step']) for r in train]
    assert {30, 60, 90, 120} <= set(steps) and steps[-1] == 120  # (and rows at the checkpoints)
    online = [r for r in train if int(r['step']) > 60]
    assert online and all(r['exploration/episodes'] not in ('', 'nan') for r in online)  # online rows count episodes
    evals = _rows(os.path.join(run_dir, 'eval.csv'))
    assert [int(r['step']) for r in evals] == [60, 120]
    assert all(float(r['episode_length']) > 0 for r in evals)


def test_a_crash_mid_chunk_resumes_exactly(chunked_run, tmp_path):
    run_dir, home = chunked_run
    copy = str(tmp_path / 'crashed')
    shutil.copytree(run_dir, copy)
    for step in ('111', '120'):  # the newest checkpoint left is 74: online step 14, inside a chunk
        shutil.rmtree(os.path.join(copy, 'checkpoints', step))
    os.remove(os.path.join(copy, 'results.json'))
    result = run_cli([f'--resume={copy}'], home)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ('train.csv', 'eval.csv'):
        assert _rows(os.path.join(copy, name)) == _rows(os.path.join(run_dir, name)), name


def _members(**settings):
    s = RunSettings(**settings)
    return resolve_members(s, load_agent(s.agent), suites.resolve('cube-double-play'), log=lambda *_: None)


def test_the_horizon_reaches_the_config_of_an_agent_that_trains_on_chunks():
    members = _members(agent='agents/acfql.py', horizon_length=5)
    assert members.configs[0].horizon_length == 5


def test_an_agent_without_chunks_refuses_a_horizon_above_one():
    with pytest.raises(UserError, match='agents/fql.py does not train on action chunks, so --horizon_length must be 1'):
        _members(agent='agents/fql.py', horizon_length=5)
    assert _members(agent='agents/fql.py', horizon_length=1).configs[0].alpha == 300.0


def test_the_horizon_is_set_by_the_run_flag_only():
    with pytest.raises(UserError, match='use --horizon_length=5 instead of --agent.horizon_length'):
        _members(agent='agents/acfql.py', agent_overrides={'horizon_length': '5'})
