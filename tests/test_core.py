"""flowrl.run.core.train: offline training as one Python call, the same loop as the command's.
Its rows are the command's train.csv rows for the same data, configs and seeds; member i equals
a one-member call with seed i; members whose configs would need two programs are refused."""

import numpy as np
import pytest

from flowrl import run_files
from flowrl.errors import UserError
from flowrl.registry.agent_loading import load_agent
from flowrl.run.core import train
from flowrl.run.runner import Run
from flowrl.testing import index, max_abs_diff, synthetic_batch, tiny_run_settings, use_fake_world

QUIET = lambda *_: None  # noqa: E731


@pytest.fixture(scope='module')
def command_run(tmp_path_factory):
    """The command's run: 2 members of a swept learning rate, 8 updates with validation rows every 2."""
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch, validation=True)
        run = Run(tiny_run_settings(tmp_path_factory.mktemp('run'), sweep=['agent.lr=1e-3,3e-4'], eval_episodes=0),
                  log=QUIET)
        run.train()
    return run


def fake_data():
    """use_fake_world's training and validation splits."""
    train_split = {k: np.asarray(v) for k, v in synthetic_batch(batch_size=256).items()}
    validation = {k: np.asarray(v) for k, v in synthetic_batch(rng_seed=1, batch_size=64).items()}
    return train_split, validation


def as_numbers(rows: list) -> list:
    return [{k: float(v) for k, v in row.items()} for row in rows]


def test_rows_are_the_commands_train_csv_for_the_same_data_configs_and_seeds(command_run):
    dataset, validation = fake_data()
    members = command_run.members
    trained = train(load_agent('agents/flow_bc.py'), dataset, members.configs, members.seeds, steps=8, log_interval=2,
                    validation=validation, labels=members.labels)
    written = run_files.CsvLog(f'{command_run.run_dir}/{run_files.TRAIN_CSV}').read()
    assert len(trained.rows) == 8 and any(k.startswith('validation/') for k in trained.rows[0])
    assert as_numbers(trained.rows) == as_numbers(written)
    assert max_abs_diff(trained.states, command_run.position.states) == 0.0
    assert trained.diverged == {}


def test_member_i_equals_a_one_member_call_with_seed_i():
    dataset, _ = fake_data()
    agent = load_agent('agents/flow_bc.py')
    config = agent.get_config()
    config.update(actor_hidden_dims=(8, 8), batch_size=8, flow_steps=2)
    both = train(agent, dataset, [config, config], [3, 5], steps=6, log_interval=3)
    alone = train(agent, dataset, [config], [5], steps=6, log_interval=3)
    assert max_abs_diff(index(both.states, 1), index(alone.states, 0)) == 0.0
    assert [dict(r, member=0) for r in both.rows if r['seed'] == 5] == alone.rows
    assert [r['step'] for r in alone.rows] == [3, 6]


def test_members_that_would_need_two_programs_are_refused():
    dataset, _ = fake_data()
    agent = load_agent('agents/flow_bc.py')
    small, wide = agent.get_config(), agent.get_config()
    wide.actor_hidden_dims = (16, 16)
    with pytest.raises(UserError, match="Member 1's config differs from member 0's in actor_hidden_dims"):
        train(agent, dataset, [small, wide], [0, 1], steps=2)
    with pytest.raises(UserError, match='one seed per config'):
        train(agent, dataset, [small], [0, 1], steps=2)
