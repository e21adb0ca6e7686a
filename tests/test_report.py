"""`python -m flowrl.results.report`: IQM and bootstrap intervals on known inputs, and the report over
hand-written run directories (numbers computed by hand)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from flowrl import run_files
from flowrl.results.report import write_report
from flowrl.results.stats import iqm, mean_ci_per_step, stratified_bootstrap, stratified_bootstrap_ci

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.arange(1, 9)) == 4.5  # drops 1, 2 and 7, 8
    assert iqm([10, 0, 1, 2, 3, 4, 5, 6, 7, -50]) == 3.5  # n=10: drops two at each end
    assert iqm([0.3, 0.4]) == pytest.approx(0.35)  # n=2: int(0.5) = 0 dropped
    scipy_stats = pytest.importorskip('scipy.stats')
    x = np.random.default_rng(0).normal(size=37)
    assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_two_seed_bootstrap_follows_its_enumerable_distribution():
    samples = stratified_bootstrap([[0.3, 0.4]], reps=20000, seed=1)
    means = samples.mean(axis=1)
    # Resamples: (0.3, 0.3), (0.4, 0.4) with 1/4 each, mixed with 1/2.
    assert np.mean(np.isclose(means, 0.35)) == pytest.approx(0.5, abs=0.02)
    assert np.mean(np.isclose(means, 0.3)) == pytest.approx(0.25, abs=0.02)
    assert stratified_bootstrap_ci([[0.3, 0.4]]) == pytest.approx((0.3, 0.4))


def test_constant_scores_give_a_zero_width_interval():
    assert stratified_bootstrap_ci([[0.7] * 5, [0.7] * 3]) == pytest.approx((0.7, 0.7))
    low, high = mean_ci_per_step(np.full((3, 4), 0.2))
    assert np.allclose(low, 0.2) and np.allclose(high, 0.2)


def test_stratified_resamples_never_mix_tasks():
    samples = stratified_bootstrap([[0.0, 0.0, 0.0], [1.0, 1.0]], reps=500)
    assert samples.shape == (500, 5)
    assert np.all((samples[:, :3] == 0.0).all(axis=1)) and np.all((samples[:, 3:] == 1.0).all(axis=1))
    # An unstratified bootstrap would often draw 3 or 4 ones out of 5; here it is always 2, so the
    # interval of the mean has zero width.
    assert stratified_bootstrap_ci([[0.0, 0.0, 0.0], [1.0, 1.0]], statistic='mean') == pytest.approx((0.4, 0.4))


def write_run(root, name, env, agent, labels, success, diverged=(), config=None, success_timing='pre'):
    """A run directory as main.py writes it: success[i] = member i's history at 100, 200, ..."""
    run_dir = os.path.join(root, name)
    os.makedirs(run_dir)
    configs = [dict(config or dict(alpha=1.0), **{k: v for k, v in label.items() if k not in ('member', 'seed')})
               for label in labels]
    run_files.write_json(os.path.join(run_dir, run_files.FLAGS_FILE),
                         dict(settings=dict(agent=f'agents/{agent}.py', sparse=False), env=env, members=labels,
                              configs=configs, success_timing=success_timing))
    evals, trains = [], []
    for label, history in zip(labels, success):
        for i, value in enumerate(history):
            evals.append(dict(step=100 * (i + 1), **label, success=value, episode_return=-1.0))
            trains.append(dict(step=100 * (i + 1), **label, **{'critic/loss': 1.0 / (i + 1), 'actor/loss': 0.5}))
    sort = lambda rows: sorted(rows, key=lambda r: (r['step'], r['member']))
    run_files.CsvLog(os.path.join(run_dir, run_files.EVAL_CSV)).append(sort(evals))
    run_files.CsvLog(os.path.join(run_dir, run_files.TRAIN_CSV)).append(sort(trains))
    if diverged:
        run_files.write_diverged(run_dir, {i: dict(diverged_at_update=150, diverged_metrics=['critic/loss'])
                                           for i in diverged})
    return run_dir


@pytest.fixture
def runs(tmp_path):
    sweep = [dict(member=m, seed=s, alpha=a) for m, (a, s) in enumerate([(10.0, 0), (10.0, 1), (30.0, 0), (30.0, 1)])]
    write_run(tmp_path, 'fql_sweep', 'cube-double-play-singletask-v0', 'fql', sweep,
              [[0, .2, .4, .6], [0, .1, .3, .5], [.5, .5, .5, .5], [.9, 0.0]], diverged=[3])
    seeds = [dict(member=0, seed=0), dict(member=1, seed=1)]
    write_run(tmp_path, 'iql_cube', 'cube-double-play-singletask-v0', 'iql', seeds, [[.1, .3], [0, 0]])
    write_run(tmp_path, 'iql_scene', 'scene-play-singletask-task2-v0', 'iql', seeds, [[1.0], [.8]])
    return tmp_path


def test_report_table_matches_hand_computed_scores(runs, tmp_path):
    paths = write_report([str(runs)], str(tmp_path / 'out'), log=lambda *_: None)
    rows = {(r['environment'], r['agent'], r['setting']): r
            for r in run_files.CsvLog(paths['csv']).read()}
    expected = {  # seeds, diverged, mean, std, iqm, ci, published
        ('cube-double-play', 'fql', 'alpha=10.0'): (2, 0, 35.0, 5.0, 35.0, (30.0, 40.0), 36.0),
        ('cube-double-play', 'fql', 'alpha=30.0'): (1, 1, 50.0, 0.0, 50.0, (50.0, 50.0), 36.0),
        ('cube-double-play', 'iql', 'defaults'): (2, 0, 10.0, 10.0, 10.0, (0.0, 20.0), 1.0),
        ('scene-play', 'iql', 'defaults'): (2, 0, 90.0, 10.0, 90.0, (80.0, 100.0), 12.0),
    }
    assert set(rows) == set(expected)
    for key, (seeds, diverged, mean, std, middle, ci, published) in expected.items():
        row = rows[key]
        assert (int(row['seeds']), int(row['diverged'])) == (seeds, diverged), key
        got = [float(row[k]) for k in ('mean', 'std', 'iqm', 'ci_low', 'ci_high', 'published')]
        assert got == pytest.approx([mean, std, middle, *ci, published]), key
    text = open(paths['markdown']).read()
    assert '| cube-double-play | fql | alpha=30.0 | 1 (+1 diverged) | 50.0 ± 0.0 | 50.0 [50.0, 50.0] | 400 | 36 ± 6¹ |' in text
    # iql over both environments: IQM of {0.2, 0, 1.0, 0.8} drops 0 and 1.0 -> 50.
    assert '| iql | defaults | 2 | 4 | 50.0 [' in text


def test_plots_are_png_files(runs, tmp_path):
    paths = write_report([str(runs / 'iql_*')], str(tmp_path / 'out'), log=lambda *_: None)
    names = sorted(os.path.basename(p) for p in paths['plots'])
    assert names == ['losses_cube-double-play_iql.png', 'losses_scene-play_iql.png', 'success_cube-double-play.png',
                     'success_scene-play.png']
    for path in paths['plots']:
        with open(path, 'rb') as f:
            data = f.read()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000


def test_an_unreadable_run_is_skipped_with_one_warning(runs, tmp_path):
    broken = runs / 'broken'
    broken.mkdir()
    (broken / run_files.FLAGS_FILE).write_text('{"settings": ')
    lines = []
    paths = write_report([str(runs)], str(tmp_path / 'out'), log=lines.append)
    assert [line for line in lines if 'broken' in line] == [line for line in lines if line.startswith('warning')]
    assert len([line for line in lines if 'broken' in line]) == 1
    assert len(run_files.CsvLog(paths['csv']).read()) == 4


def test_no_run_directories_is_one_sentence_and_a_nonzero_exit(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'flowrl.results.report', str(tmp_path / 'nothing*')], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().startswith('error: No run directories') and len(result.stderr.strip().splitlines()) == 1


def test_runs_made_with_different_values_are_told_apart_even_unswept(tmp_path):
    seeds = [dict(member=0, seed=0), dict(member=1, seed=1)]
    write_run(tmp_path, 'a', 'cube-double-play-singletask-v0', 'fql', seeds, [[.1], [.2]], config=dict(alpha=100.0))
    write_run(tmp_path, 'b', 'cube-double-play-singletask-v0', 'fql', seeds, [[.8], [.9]], config=dict(alpha=300.0))
    write_run(tmp_path, 'c', 'cube-double-play-singletask-v0', 'fql', seeds, [[.5], [.5]], config=dict(alpha=300.0),
              success_timing='post')
    lines = []
    paths = write_report([str(tmp_path)], str(tmp_path / 'out'), log=lines.append)
    rows = {r['setting']: float(r['mean']) for r in run_files.CsvLog(paths['csv']).read()}
    assert rows == pytest.approx({'alpha=100.0, success_timing=pre': 15.0, 'alpha=300.0, success_timing=pre': 85.0,
                                  'alpha=300.0, success_timing=post': 50.0})
    assert not [line for line in lines if 'seed' in line]  # no false repeated-seed warning
