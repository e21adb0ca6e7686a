"""What a crash, an interruption or a diverging member must not cost: a run interrupted at any
point resumes to exactly the uninterrupted results, a sweep survives one member's divergence,
and `flowrl.run.evaluate_run` copes with a run that is still training. Tiny in-process runs
(`flowrl.testing.use_fake_world`)."""

import json
import os
import shutil

import numpy as np
import pytest

from flowrl import run_files
from flowrl.engine import checkpoints
from flowrl.errors import TrainingDiverged, UserError
from flowrl.run.runner import Run, resume
from flowrl.testing import index, max_abs_diff, tiny_run_settings, use_fake_world

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
    original, calls = Run.evaluate, []

    def crash_at_first_evaluation(self):
        calls.append(self.step)
        if len(calls) == 1:
            raise KeyboardInterrupt  # e.g. killed for memory while the environments run
        return original(self)

    monkeypatch.setattr(Run, 'evaluate', crash_at_first_evaluation)
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


def test_a_diverging_member_is_frozen_and_the_sweep_goes_on(world, tmp_path):
    sweep = Run(tiny_run_settings(tmp_path / 'sweep', sweep=['agent.lr=1e30,3e-4']), log=QUIET)
    before = index(sweep.states, 0)
    results = sweep.train()
    diverged, healthy = results['members']
    assert diverged['final_score'] is None and diverged['diverged_at_update'] == 2
    assert diverged['diverged_metrics'] == ['actor/bc_flow_loss'] and diverged['evaluations'] == []
    assert max_abs_diff(index(sweep.states, 0), before) == 0.0  # frozen: its state no longer changes
    assert [a['diverged'] for a in results['aggregate']] == [1, 0]
    assert results['aggregate'][0]['mean'] is None and results['aggregate'][1]['num_seeds'] == 1
    assert strict_json(os.path.join(sweep.run_dir, run_files.RESULTS_FILE))['members'][0]['final_score'] is None
    assert {int(r['member']) for r in read(sweep.run_dir, run_files.TRAIN_CSV)} == {1}

    alone = Run(tiny_run_settings(tmp_path / 'alone', agent_overrides=dict(
        tiny_run_settings(tmp_path).agent_overrides, lr='3e-4')), log=QUIET)
    alone_results = alone.train()
    assert max_abs_diff(index(sweep.states, 1).params, index(alone.states, 0).params) < 1e-5
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
        chunks = healthy.chunks
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

    healthy.chunks = NanAfterUpdate4()
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
