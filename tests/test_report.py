"""`python -m flowrl.results.report`: IQM and bootstrap intervals on known inputs, and the report over
hand-written run directories (numbers computed by hand)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from flowrl import run_files, suites
from flowrl.registry.agent_loading import load_agent
from flowrl.results.report import write_report
from flowrl.run.runner import data_size
from flowrl.registry.presets import default_config
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


NOT_RECORDED = object()


def write_run(root, name, env, agent, labels, success, diverged=(), config=None, success_timing='pre', settings=None,
              data=None, default_config=None, validation=False):
    """A run directory as main.py writes it: success[i] = member i's history at 100, 200, ...;
    train.csv: critic/loss 1 / (i + 1) and actor/loss 0.5 at the i-th step (and, with
    `validation`, validation/critic/loss twice the critic's); `default_config` (the agent's
    defaults with presets) is `config` unless given (NOT_RECORDED: a run made before flags.json
    recorded it)."""
    run_dir = os.path.join(root, name)
    os.makedirs(run_dir)
    config = config or dict(alpha=1.0)
    configs = [dict(config, **{k: v for k, v in label.items() if k not in ('member', 'seed')}) for label in labels]
    flags = dict(settings=dict(agent=f'agents/{agent}.py', sparse=False, **(settings or {})), env=env, members=labels,
                 configs=configs, success_timing=success_timing, data=data or dict(source='test'),
                 default_config=config if default_config is None else default_config)
    if default_config is NOT_RECORDED:
        del flags['default_config']
    run_files.write_json(os.path.join(run_dir, run_files.FLAGS_FILE), flags)
    evals, trains = [], []
    for label, history in zip(labels, success):
        for i, value in enumerate(history):
            evals.append(dict(step=100 * (i + 1), **label, success=value, episode_return=-1.0))
            metrics = {'critic/loss': 1.0 / (i + 1), 'actor/loss': 0.5}
            if validation:
                metrics['validation/critic/loss'] = 2.0 / (i + 1)
            trains.append(dict(step=100 * (i + 1), **label, **metrics))
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
    # The runs record no protocol but their success timing, which is not the FQL paper's.
    assert ('| cube-double-play | fql | alpha=30.0 | 1 (+1 diverged) | 50.0 ± 0.0 | 50.0 [50.0, 50.0] | 400 | 36 ± 6¹ | '
            'success counted before the step (paper after) |') in text
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


# ---- the published protocol beside every published number (flowrl.results.departures) ----

PAPER_NETWORKS = dict(actor_hidden_dims=[512] * 4, value_hidden_dims=[512] * 4)
FQL_CUBE_SINGLE = dict(alpha=300.0, **PAPER_NETWORKS)  # fql's defaults with the cube-single preset
PAPER_SETTINGS = dict(offline_steps=1_000_000, online_steps=0, eval_episodes=50, eval_interval=100_000,
                      dataset_episodes=None)
SEEDS = [dict(member=0, seed=0), dict(member=1, seed=1)]


def report_rows(tmp_path, lines=None):
    paths = write_report([str(tmp_path / 'runs')], str(tmp_path / 'out'), log=[].append if lines is None else lines.append)
    return run_files.CsvLog(paths['csv']).read(), open(paths['markdown']).read()


def test_a_run_at_the_papers_protocol_is_as_published(tmp_path):
    write_run(tmp_path / 'runs', 'paper', 'cube-single-play-singletask-v0', 'fql', SEEDS, [[.9], [1.0]],
              config=FQL_CUBE_SINGLE, success_timing='post', settings=PAPER_SETTINGS,
              data=dict(source='ogbench', episodes=1000, transitions=1_000_000))
    (row,), text = report_rows(tmp_path)
    assert (row['setting'], row['departures'], float(row['published'])) == ('defaults', 'as published', 97.0)
    assert '| 97 ± 2¹ | as published |' in text
    assert ('¹ FQL paper (Park, Li, Levine 2025, "Flow Q-Learning"), offline results, default tasks: 1M offline '
            "updates, every MLP 4×512, OGBench's full dataset, evaluation every 100k updates on 50 episodes, score = "
            'mean of the last three, success counted after the step; the FQL paper ran ogbench 1.1.0') in text


def test_iql_at_the_papers_manipulation_networks_is_as_published(tmp_path):
    """The FQL paper ran IQL with 4×256 MLPs on state-based manipulation (Appendix E.2; configs/iql.py
    presets them): such a run departs from nothing, and a 4×512 one departs in its networks."""
    small = dict(alpha=0.3, actor_hidden_dims=[256] * 4, value_hidden_dims=[256] * 4)
    for name, config in (('paper', small), ('wide', dict(small, **PAPER_NETWORKS))):
        write_run(tmp_path / 'runs', name, 'cube-double-play-singletask-v0', 'iql', SEEDS, [[0.0], [.02]],
                  config=config, default_config=small, success_timing='post', settings=PAPER_SETTINGS,
                  data=dict(source='ogbench', episodes=1000, transitions=1_000_000))
    rows, text = report_rows(tmp_path)
    assert sorted(row['departures'] for row in rows) == ['as published', 'networks 4×512 (paper 4×256)']
    assert ('IQL on state-based manipulation with 4×256 MLPs (Appendix E.2): 1M offline updates, every MLP 4×256'
            in text)


def quick_start_run(root, name='quickstart', seeds=SEEDS):
    """What the README's quick start records: 100k updates, 2 x 128 networks, 200 generated
    episodes of 1,000 transitions, 10 episodes every 10k updates, ogbench >= 1.2's timing."""
    small = dict(alpha=300.0, actor_hidden_dims=[128, 128], value_hidden_dims=[128, 128])
    return write_run(root, name, 'cube-single-play-singletask-v0', 'fql', seeds, [[.5], [.7]], config=small,
                     default_config=FQL_CUBE_SINGLE, success_timing='pre',
                     settings=dict(PAPER_SETTINGS, offline_steps=100_000, eval_episodes=10, eval_interval=10_000,
                                   dataset_episodes=200),
                     data=dict(source='generated', episodes=200, transitions=200_000))


def test_the_quick_start_lists_exactly_its_departures(tmp_path):
    quick_start_run(tmp_path / 'runs')
    (row,), text = report_rows(tmp_path)
    departures = ('100k of 1M updates; networks 2×128 (paper 4×512); dataset 200 episodes, 200,000 transitions '
                  '(paper 1,000 episodes); 10 evaluation episodes (paper 50); evaluated every 10k updates (paper every '
                  '100k); success counted before the step (paper after)')
    assert row['departures'] == departures
    # The presets' alpha is a default; the networks are what the command line changed.
    assert row['setting'] == 'actor_hidden_dims=(128, 128), value_hidden_dims=(128, 128)'
    assert f'| 97 ± 2¹ | {departures} |' in text


def test_a_value_changed_from_the_default_is_named_even_when_every_pooled_run_shares_it(tmp_path):
    for name, seed in (('a', 0), ('b', 1)):
        write_run(tmp_path / 'runs', name, 'cube-single-play-singletask-v0', 'fql', [dict(member=0, seed=seed)],
                  [[.4 + .2 * seed]], config=dict(FQL_CUBE_SINGLE, alpha=100.0), default_config=FQL_CUBE_SINGLE)
    (row,), _ = report_rows(tmp_path)
    assert (row['setting'], int(row['seeds']), float(row['mean'])) == ('alpha=100.0', 2, pytest.approx(50.0))


def test_runs_of_another_length_are_not_pooled(tmp_path):
    """The recorded protocol tells runs apart like a config value: a 100k-update run and a
    200k-update one of the quick start are two rows, each with its own departures."""
    quick_start_run(tmp_path / 'runs', 'short', [dict(member=0, seed=0)])
    longer = quick_start_run(tmp_path / 'runs', 'long', [dict(member=0, seed=1)])
    flags = run_files.read_json(os.path.join(longer, run_files.FLAGS_FILE))
    flags['settings']['offline_steps'] = 200_000
    run_files.write_json(os.path.join(longer, run_files.FLAGS_FILE), flags)
    rows, _ = report_rows(tmp_path)
    by_setting = {r['setting']: r['departures'].split(';')[0] for r in rows}
    networks = 'actor_hidden_dims=(128, 128), '
    assert by_setting == {f'{networks}offline_steps=100000, value_hidden_dims=(128, 128)': '100k of 1M updates',
                          f'{networks}offline_steps=200000, value_hidden_dims=(128, 128)': '200k of 1M updates'}


def test_a_source_without_a_protocol_says_so(tmp_path):
    write_run(tmp_path / 'runs', 'qfql', 'scene-play-singletask-v0', 'qfql', SEEDS, [[.6], [.6]])
    (row,), text = report_rows(tmp_path)
    assert (row['departures'], float(row['published'])) == ('protocol not published', 62.0)
    assert 'QFQL paper, Table 2 (offline, default tasks): gives no training protocol' in text


def test_an_old_run_without_recorded_defaults(tmp_path, monkeypatch):
    """A run made before flags.json recorded its defaults: rebuilt from its agent file (the presets
    count as defaults), or, where that file is gone, one warning and the row says so."""
    monkeypatch.chdir(REPO)  # the recorded agent path, agents/fql.py, is relative to where the run started
    fql = load_agent('agents/fql.py')
    config = run_files.as_written(dict(fql.get_config().to_dict(), alpha=300.0, actor_hidden_dims=(128, 128)))
    write_run(tmp_path / 'runs', 'old', 'cube-single-play-singletask-v0', 'fql', SEEDS, [[.2], [.4]], config=config,
              default_config=NOT_RECORDED)
    (row,), _ = report_rows(tmp_path)
    assert row['setting'] == 'actor_hidden_dims=(128, 128)'
    monkeypatch.chdir(tmp_path)  # agents/fql.py is not here
    lines = []
    (row,), _ = report_rows(tmp_path, lines)
    assert row['setting'] == 'defaults (agent defaults unknown)'
    assert len([line for line in lines if "does not record its agent's defaults" in line]) == 1


def test_a_run_records_its_data_size_and_its_defaults_with_presets():
    terminals = np.array([0, 0, 1, 0, 1], np.float32)  # two episodes, five transitions
    assert data_size(dict(actions=np.zeros((5, 2)), terminals=terminals)) == dict(transitions=5, episodes=2)
    fql = load_agent(os.path.join(REPO, 'agents', 'fql.py'))
    offline = default_config(fql, 'agents/fql.py', suites.resolve('cube-single-play'), online=False)
    assert (offline.alpha, offline.q_agg, tuple(offline.actor_hidden_dims)) == (300.0, 'mean', (512,) * 4)
    # Offline-to-online on pen-cloned: the D4RL online preset refines the offline one.
    online = default_config(fql, 'agents/fql.py', suites.resolve('pen-cloned-v1'), online=True)
    assert (online.alpha, online.q_agg) == (1000.0, 'min')


def test_the_result_settings_defaults_are_run_settings_defaults():
    """The report names a result setting set otherwise than its default: the defaults it holds are
    RunSettings' (the report sits below the run layer and cannot import them)."""
    from flowrl.results.report import RESULT_SETTINGS
    from flowrl.run.settings import RunSettings

    fields = RunSettings.__dataclass_fields__
    assert RESULT_SETTINGS == {key: fields[key].default for key in RESULT_SETTINGS}


# ---- what the plots say and where they say it ----

LOCOMOTION = 'flowrl/halfcheetah/medium-replay-v0'  # a dataset made here: its file-safe name has '_' for '/'


def groups_under(root):
    from flowrl.results.report import find_run_dirs, group_members, load_all

    return group_members(load_all(find_run_dirs([str(root)]), log=[].append), log=[].append)


def drawn(fig):
    """The figure drawn once, so that text extents are known; the renderer."""
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def texts_outside(fig) -> list:
    """The titles, axis labels and legend entries of `fig` that reach past its edges (clipped in the PNG)."""
    renderer = drawn(fig)
    page = fig.bbox
    texts = list(fig.texts) + ([fig._suptitle] if fig._suptitle is not None else [])
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label] + (ax.get_legend().get_texts() if ax.get_legend() else [])
    outside = []
    for text in texts:
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            if box.x0 < page.x0 - 1 or box.x1 > page.x1 + 1 or box.y0 < page.y0 - 1 or box.y1 > page.y1 + 1:
                outside.append(text.get_text())
    return outside


def test_the_report_names_a_dataset_made_here_by_its_id(tmp_path):
    write_run(tmp_path / 'runs', 'iql_loco', LOCOMOTION, 'iql', SEEDS, [[.1, .2], [.3, .4]])
    paths = write_report([str(tmp_path / 'runs')], str(tmp_path / 'out'), log=[].append)
    (row,) = run_files.CsvLog(paths['csv']).read()
    assert row['environment'] == LOCOMOTION
    assert f'| {LOCOMOTION} | iql |' in open(paths['markdown']).read()
    # File names stay file-safe.
    assert sorted(os.path.basename(p) for p in paths['plots']) == [
        'losses_flowrl_halfcheetah_medium-replay-v0_iql.png', 'success_flowrl_halfcheetah_medium-replay-v0.png']


@pytest.mark.parametrize('env, label, limits', [
    ('cube-single-play-singletask-v0', 'success (%)', (0, 100)),
    ('antmaze-large-diverse-v2', 'success (%)', (0, 100)),  # D4RL's antmaze scores success too
    (LOCOMOTION, 'normalised score', None),
    ('halfcheetah-medium-replay-v2', 'normalised score', None),
])
def test_the_score_axis_says_what_the_task_measures(tmp_path, env, label, limits):
    from flowrl.results.report import success_figure

    write_run(tmp_path, 'run', env, 'iql', SEEDS, [[.1, .2], [.3, .5]])
    (key,) = groups_under(tmp_path)
    ax = success_figure(groups_under(tmp_path), key[0]).axes[0]
    assert ax.get_ylabel() == label
    assert ax.get_title().splitlines()[0] == suites.resolve(env).display_name
    if limits is None:  # autoscaled around the curve (mean 20, then 35)
        assert ax.get_ylim()[0] > 0 and ax.get_ylim()[1] < 100
    else:
        low, high = ax.get_ylim()
        assert low <= limits[0] < limits[1] <= high and high - low <= 1.1 * (limits[1] - limits[0])


def test_the_published_score_is_a_reference_line_with_its_band(tmp_path):
    from flowrl.results.report import success_figure

    quick_start_run(tmp_path)  # fql on cube-single-play: 97 ± 2 in the FQL paper
    figure = success_figure(groups_under(tmp_path), 'cube-single-play')
    ax = figure.axes[0]
    (reference,) = [line for line in ax.get_lines() if 'published (paper)' in line.get_label()]
    assert reference.get_label() == 'fql, published (paper): 97 ± 2'
    assert list(reference.get_ydata()) == [97, 97] and reference.get_linestyle() == ':'
    (band,) = ax.patches  # the ± std band: from 95 to 99 across the plot
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((95, 99))
    assert 'fql, published (paper): 97 ± 2' in [t.get_text() for t in figure.legends[0].get_texts()]
    # No published number (IQL on a dataset made here): no reference line.
    write_run(tmp_path / 'loco', 'iql', LOCOMOTION, 'iql', SEEDS, [[.1], [.2]])
    ax = success_figure(groups_under(tmp_path / 'loco'), 'flowrl_halfcheetah_medium-replay-v0').axes[0]
    assert not [line for line in ax.get_lines() if 'published' in line.get_label()]


def test_a_metric_and_its_validation_curve_share_one_panel(tmp_path):
    from flowrl.results.report import loss_panels, losses_figure

    assert loss_panels(['critic/loss', 'validation/critic/loss', 'actor/loss', 'validation/value/loss']) == [
        ('critic/loss', 'validation/critic/loss'), ('actor/loss', None), (None, 'validation/value/loss')]
    write_run(tmp_path, 'run', 'cube-single-play-singletask-v0', 'fql', SEEDS, [[.1, .2, .3], [.3, .4, .5]],
              validation=True)
    fig = losses_figure(groups_under(tmp_path), 'cube-single-play', 'fql')
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.axison}
    assert sorted(panels) == ['actor/loss', 'critic/loss']
    training, validation = panels['critic/loss'].get_lines()
    assert (training.get_linestyle(), validation.get_linestyle()) == ('-', '--')
    assert training.get_color() == validation.get_color()
    assert list(training.get_xdata()) == [100, 200, 300]
    assert np.allclose(training.get_ydata(), [1, 1 / 2, 1 / 3]) and np.allclose(validation.get_ydata(), [2, 1, 2 / 3])
    assert len(panels['actor/loss'].get_lines()) == 1
    assert 'dashed: validation split' in fig._suptitle.get_text()


FQL_METRICS = ('critic/loss', 'critic/q_mean', 'critic/q_max', 'critic/q_min', 'actor/loss', 'actor/bc_flow_loss',
               'actor/distill_loss', 'actor/q_loss', 'actor/q', 'actor/mse_to_data')  # agents/fql.py's


def with_fql_metrics(run_dir):
    """train.csv rewritten with FQL's ten metrics and their validation columns (4 rows of 3 panels)."""
    rows = [dict(step=100 * (i + 1), **label, **{prefix + name: 1.0 / (i + 1) for name in FQL_METRICS
                                                 for prefix in ('', run_files.VALIDATION_PREFIX)})
            for i in range(3) for label in SEEDS]
    os.remove(os.path.join(run_dir, run_files.TRAIN_CSV))
    run_files.CsvLog(os.path.join(run_dir, run_files.TRAIN_CSV)).append(rows)


def test_titles_fit_the_figure_and_clear_the_panels(tmp_path):
    """No title is clipped at the figure's edge (a long dataset id included) and the losses
    figure's title sits above its panels' titles, not over them (as it did with 20 panels)."""
    from flowrl.results.report import losses_figure, success_figure

    for name, env in (('loco', LOCOMOTION), ('cube', 'cube-single-play-singletask-v0')):
        with_fql_metrics(write_run(tmp_path / name, 'run', env, 'fql', SEEDS, [[.1, .2, .3], [.3, .4, .5]]))
        (key,) = groups_under(tmp_path / name)
        groups = groups_under(tmp_path / name)
        for fig in (success_figure(groups, key[0]), losses_figure(groups, key[0], 'fql')):
            assert texts_outside(fig) == []
        renderer = drawn(fig)  # the losses figure
        title = fig._suptitle.get_window_extent(renderer)
        panel_titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.axison]
        assert len(panel_titles) == 10 and all(title.y0 >= box.y1 for box in panel_titles)
    # A narrow losses figure (two panels) with the long name.
    write_run(tmp_path / 'narrow', 'run', LOCOMOTION, 'fql', SEEDS, [[.1], [.3]])
    fig = losses_figure(groups_under(tmp_path / 'narrow'), 'flowrl_halfcheetah_medium-replay-v0', 'fql')
    assert len([ax for ax in fig.axes if ax.axison]) == 2 and texts_outside(fig) == []


def test_the_command_prints_paths_that_open_from_anywhere(tmp_path):
    """Run on one run directory from inside another directory: every path it prints is a file
    that exists as printed (absolute), not a 'report/...' that reads as the run's own report."""
    run_dir = quick_start_run(tmp_path / 'runs')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, '-m', 'flowrl.results.report', os.path.relpath(run_dir, elsewhere),
                             '--out', 'my_report'], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split('Written:\n', 1)[1].split()
    assert [os.path.basename(p) for p in printed] == ['report.md', 'report.csv', 'success_cube-single-play.png',
                                                      'losses_cube-single-play_fql.png']
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in printed)
    out = os.path.realpath(elsewhere / 'my_report')
    assert all(os.path.realpath(p).startswith(out + os.sep) for p in printed)


def test_footnote_marks_number_any_count_of_sources():
    from flowrl.results.report import footnote_mark

    assert [footnote_mark(n) for n in (1, 2, 4, 5, 10, 12)] == ['¹', '²', '⁴', '⁵', '¹⁰', '¹²']
