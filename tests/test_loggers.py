"""Optional loggers (flowrl.run.loggers): TensorBoard event files per member hold the logged values;
a missing package, or a logger that fails, costs one warning and never the run."""

import glob
import os
import sys
import types

import pytest

from flowrl.errors import UserError
from flowrl.run import loggers as loggers_module
from flowrl.run.loggers import Loggers, parse_loggers
from flowrl.testing import tensorboard_events

LABELS = [dict(member=0, seed=0, alpha=1.0), dict(member=1, seed=1, alpha=1.0)]
CONFIGS = [dict(alpha=1.0, lr=3e-4)] * 2
SETTINGS = dict(wandb_mode='offline', agent='agents/fql.py')
TRAIN_ROWS = [dict(step=10, member=0, seed=0, alpha=1.0, **{'critic/loss': 0.5}),
              dict(step=10, member=1, seed=1, alpha=1.0, **{'critic/loss': 0.25})]
EVAL_ROWS = [dict(step=10, member=1, seed=1, alpha=1.0, success=0.75)]


def read_scalars(directory):
    """{(tag, step): value} from the event files tensorboardX wrote."""
    return {(tag, step): value for tag, step, value in tensorboard_events(directory)}


def test_logger_names_are_checked_and_csv_is_always_on():
    assert parse_loggers('csv') == [] and parse_loggers('tensorboard,csv,tensorboard') == ['tensorboard']
    with pytest.raises(UserError, match='--logger takes a comma-separated list of csv, tensorboard, wandb; got tb'):
        parse_loggers('csv,tb')


def test_tensorboard_writes_each_members_values_in_its_own_directory(tmp_path):
    pytest.importorskip('tensorboardX')
    lines = []
    loggers = Loggers(['tensorboard'], str(tmp_path), LABELS, CONFIGS, SETTINGS, log=lines.append)
    loggers.log('train', TRAIN_ROWS)
    # On disk as soon as logged, so TensorBoard follows a run live (and a crash loses nothing).
    assert read_scalars(tmp_path / 'tensorboard' / 'member_0') == {('critic/loss', 10): 0.5}
    loggers.log('eval', EVAL_ROWS)
    loggers.close()
    assert lines == []
    assert read_scalars(tmp_path / 'tensorboard' / 'member_0') == {('critic/loss', 10): 0.5}
    assert read_scalars(tmp_path / 'tensorboard' / 'member_1') == {('critic/loss', 10): 0.25,
                                                                   ('eval/success', 10): 0.75}


@pytest.mark.parametrize('name,package', [('tensorboard', 'tensorboardX'), ('wandb', 'wandb')])
def test_a_missing_package_costs_one_warning_and_logging_goes_on(tmp_path, monkeypatch, name, package):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    lines = []
    loggers = Loggers([name], str(tmp_path), LABELS, CONFIGS, SETTINGS, log=lines.append)
    loggers.log('train', TRAIN_ROWS)
    loggers.close()
    assert lines == [f'warning: --logger={name} is off: the {package} package is not installed '
                     f'(pip install -e ".[{name}]"); train.csv and eval.csv are written as always.']


def test_a_logger_that_fails_while_logging_warns_once_and_turns_itself_off(tmp_path, monkeypatch):
    class Unreachable:
        calls = 0

        def __init__(self, *args):
            pass

        def log(self, kind, rows):
            Unreachable.calls += 1
            raise ConnectionError('service unreachable')

        def close(self):
            raise AssertionError('a logger that failed is not used again')

    monkeypatch.setitem(loggers_module.BACKENDS, 'wandb', Unreachable)
    lines = []
    loggers = Loggers(['wandb'], str(tmp_path), LABELS, CONFIGS, SETTINGS, log=lines.append)
    for _ in range(3):
        loggers.log('train', TRAIN_ROWS)
    loggers.close()
    assert Unreachable.calls == 1
    assert lines == ['warning: --logger=wandb is off: it failed (ConnectionError: service unreachable); '
                     'train.csv and eval.csv are written as always.']


# On the xdist worker of tests/test_crash.py, whose runs compiled the programs this run reuses
# (flowrl.testing shares them): alone it spends ~7 s compiling.
@pytest.mark.xdist_group('test_crash')
def test_a_run_with_a_missing_logger_package_completes(tmp_path, monkeypatch):
    from flowrl.run.runner import Run
    from flowrl.testing import tiny_run_settings, use_fake_world

    use_fake_world(monkeypatch)
    monkeypatch.setitem(sys.modules, 'wandb', None)
    lines = []
    run = Run(tiny_run_settings(tmp_path, logger='csv,wandb', eval_episodes=0), log=lines.append)
    results = run.train()
    assert results['steps'] == 8 and os.path.exists(os.path.join(run.run_dir, 'train.csv'))
    assert sum(line.startswith('warning: --logger=wandb is off') for line in lines) == 1


def test_wandb_runs_are_offline_files_in_the_run_directory_announced_in_one_line(tmp_path, capfd, monkeypatch):
    pytest.importorskip('wandb')
    # Another project's top-level `agents` package (flowrl's own was one before it became flowrl.agents):
    # wandb takes it for the OpenAI Agents SDK and advertised LLM tracing.
    monkeypatch.setitem(sys.modules, 'agents', types.ModuleType('agents'))

    lines = []
    loggers = Loggers(['wandb'], str(tmp_path), LABELS, CONFIGS, SETTINGS, log=lines.append)
    loggers.log('train', TRAIN_ROWS)
    loggers.log('eval', EVAL_ROWS)
    loggers.close()
    assert len(lines) == 1 and lines[0].startswith(f'W&B: 2 offline run(s), group {tmp_path.name}'), lines
    printed = ''.join(capfd.readouterr())
    assert 'wandb:' not in printed, printed  # wandb's own ~15 lines per run stay quiet
    runs = glob.glob(str(tmp_path / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
    assert len(runs) == 2 and all(os.path.getsize(path) > 0 for path in runs)
