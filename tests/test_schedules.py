"""One step counter: the agents' `state.step` decides their phase, `--restore_path` continues or
restarts the saved step (--restore_schedule), an update that does not count stops the run; and
schedules that fit the run: QIPO's phases are refused when they would not happen, or scaled to
the run with --agent.phase_scale=auto. Tiny in-process runs (`flowrl.testing.use_fake_world`)."""

import os

import pytest

from flowrl.agents import qipo
from flowrl import run_files
from flowrl.errors import UserError
from flowrl.run.runner import Run, resume
from flowrl.testing import TINY_RUN_OVERRIDES, tiny_config, tiny_run_settings, use_fake_world

QUIET = lambda *_: None
TINY_QIPO = dict(TINY_RUN_OVERRIDES, value_hidden_dims='8,8', critic_support='2', policy_support='2')
PHASES = dict(bc_steps='2', critic_steps='2', renew_period='1')  # phase 2 from agent step 2, phase 3 from 4

pytestmark = pytest.mark.xdist_group('test_schedules')


@pytest.fixture(scope='module')
def world():
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        yield patch


def qipo_settings(save_dir, offline_steps, **changes):
    overrides = dict(TINY_QIPO, **changes.pop('agent_overrides', PHASES))
    return tiny_run_settings(save_dir, agent='agents/qipo.py', offline_steps=offline_steps, eval_interval=0,
                             save_interval=offline_steps, agent_overrides=overrides, **changes)


def phases_logged(run) -> list:
    """The mean `actor/phase` (the number of the update that ran) of each train.csv row."""
    return [float(row['actor/phase']) for row in run_files.CsvLog(os.path.join(run.run_dir, run_files.TRAIN_CSV)).read()]


@pytest.fixture(scope='module')
def phase_three(world, tmp_path_factory):
    """A QIPO run of 8 updates whose phases were scaled to it (2 / 2 / renewal every 1): its
    checkpoint at 8 holds agents in phase 3."""
    lines = []
    run = Run(qipo_settings(tmp_path_factory.mktemp('saved'), 8, agent_overrides=dict(phase_scale='auto')),
              log=lines.append)
    run.train()
    return run, lines


def test_scaled_phases_are_printed_and_run_in_their_order(phase_three):
    run, lines = phase_three
    assert 'Schedule fitted to agent steps 0-8: bc_steps=2, critic_steps=2, renew_period=1' in lines
    assert ('Phases start at agent step 0 (update_behaviour_phase), 2 (update_critic_phase), '
            '4 (update_policy_phase); this run trains agent steps 0 to 8.') in lines
    assert phases_logged(run) == [1.0, 2.0, 3.0, 3.0]  # rows every 2 updates
    assert int(run.position.states.step[0]) == 8


def test_restore_path_continues_the_saved_agents_schedule_by_default(phase_three, tmp_path):
    saved, _ = phase_three
    lines = []
    run = Run(qipo_settings(tmp_path, 2, restore_path=saved.run_dir), log=lines.append)
    run.train()
    assert phases_logged(run) == [3.0]  # agent steps 8 and 9: phase 3, not the run's own step 0's phase 1
    assert int(run.position.states.step[0]) == 10 and run.position.step == 2
    assert any('at agent step 8 (--restore_path, --restore_schedule=continue)' in line for line in lines)
    assert resume(run.run_dir, dict(offline_steps=4), log=QUIET)['steps'] == 4  # extended: agent steps 10, 11
    assert phases_logged(run) == [3.0, 3.0]


def test_restore_schedule_restart_starts_the_saved_weights_over_at_step_0(phase_three, tmp_path):
    saved, _ = phase_three
    run = Run(qipo_settings(tmp_path, 6, restore_path=saved.run_dir, restore_schedule='restart'), log=QUIET)
    run.train()
    assert phases_logged(run) == [1.0, 2.0, 3.0]
    assert int(run.position.states.step[0]) == 6


def test_qipo_phases_that_do_not_fit_the_run_are_refused_with_values_that_fit(world, tmp_path):
    with pytest.raises(UserError, match=r"QIPO's phases do not fit a run that ends at update 8 .*"
                                        r'e\.g\. bc_steps=2, critic_steps=2, renew_period=1\) or pass '
                                        r'--agent\.phase_scale=auto'):
        Run(qipo_settings(tmp_path, 8, agent_overrides={}), log=QUIET)  # the defaults: 200k / 300k / 50k


def test_fit_schedule_by_hand():
    config = tiny_config(qipo, bc_steps=3, critic_steps=4, renew_period=2)
    assert qipo.fit_schedule(config, 0, 10) == {}  # phase 3 at 7, renewed at 7 and 9
    with pytest.raises(UserError, match='do not fit a run that ends at update 9'):
        qipo.fit_schedule(config, 0, 9)  # the renewal at 9 would never be used
    assert qipo.fit_schedule(config, 5, 10) == {}  # continuing from agent step 5 to 10: the same phases
    config.phase_scale = 'auto'
    assert qipo.fit_schedule(config, 0, 2_000_000) == dict(bc_steps=6, critic_steps=8, renew_period=4)
    assert qipo.fit_schedule(qipo.get_config().copy_and_resolve_references(), 0, 1_000_000) == {}
    with pytest.raises(UserError, match='still do not fit it'):
        qipo.fit_schedule(config, 0, 1)  # scaled to 0 / 0 / 1
    config.phase_scale = 'on'
    with pytest.raises(UserError, match="phase_scale must be one of off, auto, got 'on'"):
        qipo.fit_schedule(config, 0, 10)


def test_resume_refuses_to_rescale_a_fitted_schedule(phase_three):
    saved, _ = phase_three
    with pytest.raises(UserError, match='other values of bc_steps, critic_steps than it trained'):
        resume(saved.run_dir, dict(offline_steps=16), log=QUIET)  # scaled to 16: 3 / 5 / 1
    assert resume(saved.run_dir, log=QUIET)['steps'] == 8  # its own length: the same schedule


def test_an_update_that_does_not_count_its_step_stops_the_run(world, tmp_path):
    run = Run(tiny_run_settings(tmp_path), log=QUIET)
    run.position = run.position.replace(states=run.position.states.replace(step=run.position.states.step + 3))
    with pytest.raises(RuntimeError, match=r'hold step\(s\) \[3\] and should hold 0: agents/flow_bc\.py does not'):
        run.train()
