"""What a crash, an interruption or a diverging member must not cost: a run interrupted at any
point resumes to exactly the uninterrupted results, a sweep survives one member's divergence,
and `flowrl.run.evaluate_run` copes with a run that is still training; a run killed before its
first checkpoint starts over on resume. Tiny in-process runs (`flowrl.testing.use_fake_world`),
and main.py on the same fake world for the run a test kills."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from flowrl import run_files
from flowrl.engine import checkpoints
from flowrl.errors import TrainingDiverged, UserError
from flowrl.run.record import RunRecord
from flowrl.run.runner import Run, resume
from flowrl.testing import (TINY_RUN_OVERRIDES, index, max_abs_diff, tensorboard_events, tiny_run_settings,
                            use_fake_world)

QUIET = lambda *_: None
NO_SAVE_INTERVAL = dict(save_interval=0)  # checkpoints only before evaluations and at the end


# One xdist worker builds the module's fixtures once and runs every test that reads them.
pytestmark = pytest.mark.xdist_group('test_crash')


@pytest.fixture(scope='module')
def world():
    with pytest.MonkeyPatch.context() as patch:
        use_fake_world(patch)
        yield patch


@pytest.fixture(scope='module')
def straight(world, tmp_path_factory):
    """The reference: 2 seeds, 8 updates, evaluated at 4 and 8, never interrupted."""
    run = Run(tiny_run_settings(tmp_path_factory.mktemp('straight'), num_seeds=2, **NO_SAVE_INTERVAL), log=QUIET)
    return run.run_dir, run.train()


def read(run_dir, name):
    rows = run_files.CsvLog(os.path.join(run_dir, name)).read()
    return [{k: v for k, v in row.items() if k != 'env_steps_per_s'} for row in rows]


def assert_same_run(run_dir, reference_dir):
    for name in (run_files.TRAIN_CSV, run_files.EVAL_CSV):
        assert read(run_dir, name) == read(reference_dir, name), name
    results = [run_files.read_json(os.path.join(d, run_files.RESULTS_FILE)) for d in (run_dir, reference_dir)]
    assert results[0]['members'] == results[1]['members']


def strict_json(path):
    """The file parsed as strict JSON (no NaN or Infinity)."""
    def refuse(constant):
        raise ValueError(f'{constant} in {path}')
    with open(path) as f:
        return json.loads(f.read(), parse_constant=refuse)


@pytest.mark.parametrize('intervals', [dict(log_interval=2, eval_interval=4), dict(log_interval=4, eval_interval=2)])
def test_a_crash_while_evaluating_loses_no_training(world, tmp_path, monkeypatch, intervals):
    settings = dict(num_seeds=2, **NO_SAVE_INTERVAL, **intervals)
    reference = Run(tiny_run_settings(tmp_path / 'straight', **settings), log=QUIET)
    reference.train()
    original, calls = RunRecord.evaluate, []

    def crash_at_first_evaluation(self, position):
        calls.append(position.step)
        if len(calls) == 1:
            raise KeyboardInterrupt  # e.g. killed for memory while the environments run
        return original(self, position)

    monkeypatch.setattr(RunRecord, 'evaluate', crash_at_first_evaluation)
    run = Run(tiny_run_settings(tmp_path / 'crashed', **settings), log=QUIET)
    with pytest.raises(KeyboardInterrupt):
        run.train()
    first = intervals['eval_interval']
    assert checkpoints.steps(run.checkpoint_dir) == [first]  # saved just before the evaluation
    resume(run.run_dir, log=QUIET)
    assert calls[:2] == [first, first]  # the interrupted evaluation runs first on resume
    assert_same_run(run.run_dir, reference.run_dir)


def test_resume_with_more_offline_steps_extends_the_run(straight, tmp_path):
    reference_dir, _ = straight
    run = Run(tiny_run_settings(tmp_path, num_seeds=2, offline_steps=4, **NO_SAVE_INTERVAL), log=QUIET)
    run.train()
    with pytest.raises(UserError, match=r'--offline_steps=2 is below the checkpoint .* \(update 4\)'):
        resume(run.run_dir, dict(offline_steps=2), log=QUIET)
    with pytest.raises(UserError, match=r'only --offline_steps, .* can change, not --seed'):
        resume(run.run_dir, dict(seed=3), log=QUIET)
    results = resume(run.run_dir, dict(offline_steps=8), log=QUIET)
    assert results['steps'] == 8
    assert run_files.read_json(os.path.join(run.run_dir, run_files.FLAGS_FILE))['settings']['offline_steps'] == 8
    assert_same_run(run.run_dir, reference_dir)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# main.py on the fake world (flowrl.testing.use_fake_world: no dataset to make), whose first
# checkpoint's save leaves what a SIGKILL in the middle of one leaves (orbax's unfinished directory,
# and a train.csv row cut short), then says so and waits to be killed.
KILL_DRIVER = r'''
import os, runpy, sys, time
import pytest
from flowrl.engine import checkpoints
from flowrl.testing import use_fake_world

use_fake_world(pytest.MonkeyPatch())
sys.argv = ['main.py'] + sys.argv[1:]

def killed_while_saving(directory, step, *args, **kwargs):
    os.makedirs(os.path.join(directory, f'{step}.orbax-checkpoint-tmp-1700000000', 'default'))
    with open(os.path.join(os.path.dirname(directory), 'train.csv'), 'a') as f:
        f.write(f'{step + 1},0,0,0.25')
    print('AT THE KILL POINT', flush=True)
    time.sleep(600)

checkpoints.save = killed_while_saving
runpy.run_path('main.py', run_name='__main__')
'''
# tiny_run_settings(num_seeds=2, **NO_SAVE_INTERVAL) (the `straight` run) as main.py flags.
TINY_MAIN_FLAGS = ['--agent=agents/flow_bc.py', '--env_name=cube-single-play', '--offline_steps=8', '--log_interval=2',
                   '--eval_interval=4', '--eval_episodes=2', '--eval_workers=1', '--save_interval=0', '--num_seeds=2',
                   '--noreport', *[f'--agent.{k}={v}' for k, v in TINY_RUN_OVERRIDES.items()]]


def killed_before_its_first_checkpoint(save_dir, *flags) -> str:
    """The run directory of a main.py run SIGKILLed (as by the out-of-memory killer) while it
    saved its first checkpoint, at update 4: rows at 2 and 4 written, no complete checkpoint."""
    env = dict(os.environ, FLOWRL_NO_DOWNLOAD='1', JAX_PLATFORMS='cpu')
    process = subprocess.Popen([sys.executable, '-c', KILL_DRIVER, *TINY_MAIN_FLAGS, f'--save_dir={save_dir}',
                                *flags], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith('AT THE KILL POINT'):
                process.send_signal(signal.SIGKILL)
                break
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    (run_dir,) = glob.glob(os.path.join(save_dir, 'Debug', 'flow_bc_*'))
    return run_dir


def event_scalars(run_dir) -> dict:
    """{(member, tag, step): how many times it was logged} over the run's TensorBoard event files."""
    logged = [(member, tag, step) for member in (0, 1)
              for tag, step, _ in tensorboard_events(os.path.join(run_dir, 'tensorboard', f'member_{member}'))]
    return {key: logged.count(key) for key in logged}


def test_a_run_killed_before_its_first_checkpoint_starts_over_on_resume_as_if_uninterrupted(straight, tmp_path):
    reference_dir, _ = straight
    run_dir = killed_before_its_first_checkpoint(tmp_path, '--logger=tensorboard')
    assert checkpoints.steps(os.path.join(run_dir, run_files.CHECKPOINT_DIR)) == []
    assert [int(r['step']) for r in read(run_dir, run_files.TRAIN_CSV)] == [2, 2, 4, 4]
    assert event_scalars(run_dir)  # the killed run's TensorBoard files
    lines = []
    resume(run_dir, log=lines.append)
    assert (f'{run_dir} has no checkpoint yet (stopped before the first save): starting it over from update 0 with '
            'its saved settings.') in lines
    assert f'Removed 4.orbax-checkpoint-tmp-1700000000 from {run_dir}/checkpoints: a checkpoint whose save was cut ' \
           'short.' in lines
    assert_same_run(run_dir, reference_dir)
    results = [run_files.read_json(os.path.join(d, run_files.RESULTS_FILE)) for d in (run_dir, reference_dir)]
    assert {**results[0], 'run_dir': None} == {**results[1], 'run_dir': None}
    flags = [run_files.read_json(os.path.join(d, run_files.FLAGS_FILE))['settings'] for d in (run_dir, reference_dir)]
    assert {**flags[0], 'save_dir': None, 'logger': None} == {**flags[1], 'save_dir': None, 'logger': None}
    # TensorBoard holds each row once: the killed run's event files went with its rows.
    rows = read(run_dir, run_files.TRAIN_CSV) + read(run_dir, run_files.EVAL_CSV)
    assert set(event_scalars(run_dir).values()) == {1}
    assert {step for _, _, step in event_scalars(run_dir)} == {int(r['step']) for r in rows} == {2, 4, 6, 8}


def test_a_run_directory_without_flags_json_says_how_to_go_on(tmp_path):
    killed = tmp_path / 'fql_cube-double-play_sd000_20261121_120000'
    killed.mkdir()
    (killed / '.flags.json.x1y2z3').write_text('{"sett')  # flags.json's write, cut short
    with pytest.raises(UserError) as error:
        resume(str(killed), log=QUIET)
    assert str(error.value) == (f"Cannot resume '{killed}': it holds no flags.json (its run was stopped before it "
                                'recorded its settings, so nothing was trained); start the run again with its '
                                'original command, without --resume, and delete this empty directory.')
    (tmp_path / 'notes.txt').write_text('not a run')
    with pytest.raises(UserError, match=r"^Cannot resume '.*': it is not a flowrl run directory \(no flags\.json\)\.$"):
        resume(str(tmp_path), log=QUIET)


def test_a_diverging_member_is_frozen_and_the_sweep_goes_on(world, tmp_path):
    sweep = Run(tiny_run_settings(tmp_path / 'sweep', sweep=['agent.lr=1e30,3e-4']), log=QUIET)
    before = index(sweep.position.states, 0)
    results = sweep.train()
    diverged, healthy = results['members']
    assert diverged['final_score'] is None and diverged['diverged_at_update'] == 2
    assert diverged['diverged_metrics'] == ['actor/bc_flow_loss'] and diverged['evaluations'] == []
    assert max_abs_diff(index(sweep.position.states, 0), before) == 0.0  # frozen: its state no longer changes
    assert [a['diverged'] for a in results['aggregate']] == [1, 0]
    assert results['aggregate'][0]['mean'] is None and results['aggregate'][1]['num_seeds'] == 1
    assert strict_json(os.path.join(sweep.run_dir, run_files.RESULTS_FILE))['members'][0]['final_score'] is None
    assert {int(r['member']) for r in read(sweep.run_dir, run_files.TRAIN_CSV)} == {1}

    alone = Run(tiny_run_settings(tmp_path / 'alone', agent_overrides=dict(
        tiny_run_settings(tmp_path).agent_overrides, lr='3e-4')), log=QUIET)
    alone_results = alone.train()
    assert max_abs_diff(index(sweep.position.states, 1).params, index(alone.position.states, 0).params) < 1e-5
    for got, want in zip(read(sweep.run_dir, run_files.TRAIN_CSV), read(alone.run_dir, run_files.TRAIN_CSV)):
        assert got['step'] == want['step']
        assert float(got['actor/bc_flow_loss']) == pytest.approx(float(want['actor/bc_flow_loss']), rel=1e-5)
    assert healthy['final_score'] == alone_results['members'][0]['final_score']

    # Resumed from the checkpoint at 4, the member is still diverged and the results the same.
    shutil.rmtree(os.path.join(sweep.checkpoint_dir, '8'))
    os.remove(os.path.join(sweep.run_dir, run_files.RESULTS_FILE))
    assert resume(sweep.run_dir, log=QUIET)['members'] == results['members']


def test_a_single_member_that_diverges_stops_the_run_naming_the_checkpoint_that_exists(world, tmp_path):
    settings = tiny_run_settings(tmp_path, agent_overrides=dict(tiny_run_settings(tmp_path).agent_overrides, lr='1e30'))
    with pytest.raises(TrainingDiverged, match=r'non-finite .* at update 2; no checkpoint was saved before it\.'):
        Run(settings, log=QUIET).train()

    healthy = Run(tiny_run_settings(tmp_path), log=QUIET)

    class NanAfterUpdate4:
        """The run's chunks, with a non-finite metric from update 5 on."""
        chunks = healthy.parts.offline.chunks
        phases = chunks.phases

        def __getattr__(self, name):  # everything but `run` is the real runner's (schedule_steps, ...)
            return getattr(self.chunks, name)

        def run(self, states, rngs, totals, dataset, num_updates, first_step, alive):
            states, rngs, totals, first_bad = self.chunks.run(states, rngs, totals, dataset, num_updates, first_step,
                                                              alive)
            if first_step >= 4:
                totals = dict(totals, **{'actor/bc_flow_loss': np.full(1, np.nan)})
                first_bad = np.zeros(1, int)
            return states, rngs, totals, first_bad

    healthy.parts.offline.chunks = NanAfterUpdate4()
    with pytest.raises(TrainingDiverged, match=r'bc_flow_loss at update 5; the latest checkpoint is update 4 in '):
        healthy.train()


def test_evaluate_reads_again_when_the_trainer_deletes_the_checkpoint_being_read(straight, tmp_path, monkeypatch):
    from flowrl.run import evaluate_run

    run_dir = str(tmp_path / 'run')
    shutil.copytree(straight[0], run_dir)
    directory = os.path.join(run_dir, run_files.CHECKPOINT_DIR)
    real_read, lines = checkpoints.read_part, []

    def trainer_moves_on_while_reading(directory_, like, step):
        if not lines:  # first read: the trainer saves 12 and deletes the step being read
            shutil.copytree(os.path.join(directory, str(step)), os.path.join(directory, '12'))
            shutil.rmtree(os.path.join(directory, str(step)))
        lines.append(step)
        return real_read(directory_, like, step)

    monkeypatch.setattr(checkpoints, 'read_part', trainer_moves_on_while_reading)
    monkeypatch.setattr(checkpoints.time, 'sleep', QUIET)
    messages = []
    *_, step, _ = evaluate_run.restore_run(run_dir, log=messages.append)
    assert (lines, step) == ([8, 12], 12)
    assert any('reading again' in m for m in messages)


def test_evaluate_names_the_available_steps_for_a_missing_one(straight, monkeypatch):
    from flowrl.run import evaluate_run

    monkeypatch.setattr(checkpoints.time, 'sleep', QUIET)
    with pytest.raises(UserError, match=r'has no checkpoint 5; available: 4, 8\.'):
        evaluate_run.restore_run(straight[0], step=5, log=QUIET)


def test_evaluate_builds_the_agents_from_the_recorded_dataset_rows_without_an_environment(straight, tmp_path,
                                                                                           monkeypatch):
    """flags.json records the example rows' shapes and dtypes (the synthetic dataset's 6-dim float32
    observations, 3-dim actions); evaluate_run builds its agents from them and makes no environment,
    and restores the same agents as from the rows themselves. A run written before that record
    builds them from the environment (here: the fake world's rows)."""
    from flowrl.run import evaluate_run

    flags = run_files.read_json(os.path.join(straight[0], run_files.FLAGS_FILE))
    assert flags['example']['observations'] == dict(shape=[6], dtype='float32')
    assert flags['example']['actions'] == dict(shape=[3], dtype='float32')
    environment_example, made = evaluate_run.example_batch, []

    def counted(new_env):
        made.append(new_env)
        return environment_example(new_env)

    monkeypatch.setattr(evaluate_run, 'example_batch', counted)
    *_, recorded, step, _ = evaluate_run.restore_run(straight[0], log=QUIET)
    assert step == 8 and made == []

    old = str(tmp_path / 'old')
    shutil.copytree(straight[0], old)
    run_files.write_json(os.path.join(old, run_files.FLAGS_FILE), {k: v for k, v in flags.items() if k != 'example'})
    *_, from_rows, step, _ = evaluate_run.restore_run(old, log=QUIET)
    assert step == 8 and len(made) == 1
    assert max_abs_diff(recorded.params, from_rows.params) == 0.0
