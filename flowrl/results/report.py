"""Tables and plots over any set of run directories.

    python -m flowrl.results.report exp/                       # every run under exp/
    python -m flowrl.results.report 'exp/sweep/fql_*' exp/Debug/iql_cube-double-play_sd000_20261122_101500 --out report/

Members (seeds, sweep points) are grouped by (environment, agent, swept values) across all the
run directories given, so seeds trained in separate runs pool together; runs that differ in any
config value or recorded protocol value are told apart. The setting column names those values
and every config value that differs from the agent's defaults with the task's presets (what a
run without --agent.KEY overrides gets: the papers' values), "defaults" when there is none.
Writes to --out:
- report.md / report.csv: per group, the final score (the FQL paper's: mean success of the
  last three evaluations) as mean ± std over seeds, the IQM with its 95 % stratified-bootstrap
  interval (flowrl.results.stats), the number of seeds and of diverged members, the last evaluated
  update, and the published score where one exists (flowrl.results.published) with, beside it, where
  the runs depart from the protocol behind it (flowrl.results.departures: updates, network sizes, dataset
  size, evaluation episodes and interval, success timing) or "as published"; over several
  environments, one aggregate IQM per agent and setting with the environments as strata;
- success_<env>.png: the score against updates, one line per agent / setting, mean over seeds
  with a 95 % bootstrap band, the axis labelled by what the task measures (flowrl.suites.METRICS:
  "success (%)", "normalised score"), and each agent's published score, where there is one, as a
  dotted line with its ± std band;
- losses_<env>_<agent>.png: train.csv metrics, mean over seeds, one panel per metric: its
  training curve solid, its validation-split curve (validation/<metric>) dashed.
Tables and titles name environments as users do (the task's display_name: cube-double-play,
flowrl/halfcheetah/medium-replay-v0); file names use the file-safe short name. The command prints
the paths it wrote as absolute paths.
"""

import argparse
import csv
import dataclasses
import glob
import io
import os
import sys
import textwrap

import numpy as np

from flowrl import run_files
from flowrl.registry.agent_loading import agent_name, load_agent
from flowrl import suites
from flowrl.suites import METRICS
from flowrl.results.departures import Recorded, departures, departures_text, protocol_text, recorded_protocol
from flowrl.errors import UserError
from flowrl.results.published import SOURCE_PROTOCOLS, TIMING_NOTE, published_score
from flowrl.results.scores import member_score
from flowrl.registry.presets import default_config
from flowrl.results.stats import iqm, mean_ci_per_step, stratified_bootstrap_ci

LABEL_KEYS = ('member', 'seed')
# Settings that change results besides the agent config; the report tells runs apart by them too.
# Settings that change results besides the agent config, with their defaults (RunSettings'; a test
# checks they agree): the report tells runs apart by them and names them when set otherwise.
RESULT_SETTINGS = dict(sparse=False, success_timing=None)


@dataclasses.dataclass
class Member:
    """One trained member (a seed at one sweep point) of one run directory."""
    run_dir: str
    env: str  # file-safe environment name, e.g. cube-double-play, flowrl_halfcheetah_medium-replay-v0
    env_label: str  # what users call it (the task's display_name): flowrl/halfcheetah/medium-replay-v0
    metric: str  # what the score measures: a key of flowrl.suites.METRICS
    family: str
    task: int | None
    agent: str
    setting: tuple  # ((key, value), ...): what tells this member's group apart (set by group_members)
    config: dict  # the member's agent config
    run_values: dict  # RESULT_SETTINGS and the recorded protocol (Recorded.grouping_values)
    changed: set | None  # keys of config and RESULT_SETTINGS set otherwise than by default; None: defaults unknown
    recorded: Recorded  # how the member trained and was evaluated (flowrl.results.departures)
    seed: int
    diverged: bool
    steps: np.ndarray  # evaluated updates
    success: np.ndarray  # the score at those updates, as `metric` measures it (fractions)
    train_rows: list

    @property
    def score(self):
        """The final score, or None if the member diverged or was never evaluated."""
        return member_score(self.success, self.diverged)


def find_run_dirs(patterns) -> list:
    """Run directories (those holding flags.json) named by, under, or matched by each pattern."""
    found = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.expanduser(pattern))) or [pattern]:
            if os.path.isfile(os.path.join(path, run_files.FLAGS_FILE)):
                found.append(path)
            elif os.path.isdir(path):
                for root, dirs, files in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if d != run_files.CHECKPOINT_DIR)
                    if run_files.FLAGS_FILE in files:
                        found.append(root)
    unique = list(dict.fromkeys(os.path.normpath(p) for p in found))
    if not unique:
        raise UserError(f'No run directories (directories holding {run_files.FLAGS_FILE}) in or under '
                        f'{", ".join(patterns)}.')
    return unique


def run_defaults(flags: dict, task) -> dict | None:
    """The agent config a run of its agent on its task gets without --agent overrides: its
    defaults with the task's presets. flags.json records it ('default_config'); for a run made
    before it did, it is rebuilt from the agent file if that is still at the recorded path; None
    otherwise."""
    if 'default_config' in flags:
        return flags['default_config']
    path = flags['settings']['agent']
    if not flags.get('configs') or not os.path.isfile(path):
        return None
    online = bool(flags['settings'].get('online_steps'))
    try:
        return run_files.as_written(default_config(load_agent(path), path, task, online).to_dict())
    except Exception:  # noqa: BLE001 -- the file there now is not that agent: the run is still worth reporting
        return None


def changed_from_defaults(config: dict, defaults: dict | None, settings: dict) -> set | None:
    """Keys of `config` whose value is not the default one (keys the defaults lack count as
    changed), and RESULT_SETTINGS set otherwise than their defaults; None if `defaults` is."""
    if defaults is None:
        return None
    changed = {key for key, value in config.items() if key not in defaults or defaults[key] != value}
    return changed | {key for key, default in RESULT_SETTINGS.items() if settings.get(key, default) != default}


def load_members(run_dir: str, log=print) -> list:
    """The members of one run directory with their evaluations and train.csv rows."""
    flags = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    run_task = suites.resolve(flags['env'])
    task = run_task.canonical()  # cube-double-play-task2 is cube-double-play
    agent = agent_name(flags['settings']['agent'])
    defaults = run_defaults(flags, run_task)
    if defaults is None:
        log(f'warning: {run_dir} does not record its agent\'s defaults and {flags["settings"]["agent"]} is not '
            'here to rebuild them: its setting column shows only what differs between the runs pooled.')
    diverged = run_files.read_diverged(run_dir)
    evals = run_files.CsvLog(os.path.join(run_dir, run_files.EVAL_CSV)).read()
    trains = run_files.CsvLog(os.path.join(run_dir, run_files.TRAIN_CSV)).read()
    members = []
    configs = flags.get('configs') or [{}] * len(flags['members'])
    outcome = {k: flags.get(k, flags['settings'].get(k)) for k in RESULT_SETTINGS}
    for label, config in zip(flags['members'], configs):
        mine = lambda rows: [r for r in rows if int(r['member']) == label['member']]
        rows = sorted(mine(evals), key=lambda r: int(r['step']))
        swept = {k: v for k, v in label.items() if k not in LABEL_KEYS}
        config = {**config, **swept}
        recorded = recorded_protocol(flags, config)
        members.append(Member(
            run_dir=run_dir, env=task.short_name, env_label=task.display_name, metric=task.metric,
            family=task.family, task=task.task_number, agent=agent,
            setting=tuple(swept.items()), config=config, run_values={**outcome, **recorded.grouping_values()},
            changed=changed_from_defaults(config, defaults, flags['settings']), recorded=recorded,
            seed=int(label['seed']), diverged=label['member'] in diverged,
            steps=np.array([int(r['step']) for r in rows]), success=np.array([run_files.row_score(r) for r in rows]),
            train_rows=mine(trains)))
    return members


def load_all(run_dirs, log=print) -> list:
    """Members of every readable run directory; an unreadable one is skipped with one line."""
    members = []
    for run_dir in run_dirs:
        try:
            members += load_members(run_dir, log)
        except (OSError, ValueError, KeyError, TypeError, UserError) as error:
            log(f'warning: skipped {run_dir}: unreadable ({type(error).__name__}: {error}).')
    return members


def setting_text(setting) -> str:
    return ', '.join(f'{k}={v}' for k, v in setting) or 'defaults'


def hashable(value):
    """A JSON value usable in a group key: lists (network sizes) as tuples."""
    return tuple(hashable(v) for v in value) if isinstance(value, list) else value


def distinguish_settings(members) -> None:
    """Sets each member's `setting` to the values that tell its group apart within its
    (environment, agent): those that differ between the members (config values, RESULT_SETTINGS
    and the recorded protocol: runs made with different --agent.alpha or --offline_steps are
    different groups even when neither swept it), and those that any member set otherwise than by
    default (--agent.actor_hidden_dims=128,128 is named even when every run pooled shares it)."""
    by_task = {}
    for member in members:
        by_task.setdefault((member.env, member.agent), []).append(member)
    for group in by_task.values():
        values = [{**m.config, **m.run_values} for m in group]
        keys = {k for v in values for k in v}
        differing = {k for k in keys if len({repr(v.get(k)) for v in values}) > 1}
        changed = set().union(*(m.changed or set() for m in group))
        shown = sorted(differing | changed)
        for member, value in zip(group, values):
            member.setting = tuple((k, hashable(value.get(k))) for k in shown)


def group_members(members, log=print) -> dict:
    """{(env, agent, setting): [members]}, in first-seen order; warns about repeated seeds."""
    distinguish_settings(members)
    groups = {}
    for member in members:
        groups.setdefault((member.env, member.agent, member.setting), []).append(member)
    for (env, agent, setting), group in groups.items():
        seeds = [m.seed for m in group]
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            log(f'warning: {agent} on {env} ({setting_text(setting)}) has seed(s) {repeated} in more than one run '
                'directory; each counts as a separate run.')
    return groups


def summary_row(key, group) -> dict:
    _, agent, setting = key
    scores = np.array([m.score for m in group if m.score is not None])
    row = dict(environment=group[0].env_label, agent=agent, setting=setting_text(setting), seeds=len(scores),
               diverged=sum(m.diverged for m in group), mean=None, std=None, iqm=None, ci_low=None, ci_high=None,
               last_update=max((int(m.steps[-1]) for m in group if len(m.steps)), default=None),
               published=None, published_std=None, published_source=None, departures=None)
    if any(m.changed is None for m in group):
        row['setting'] += ' (agent defaults unknown)'

    if len(scores):
        low, high = stratified_bootstrap_ci([scores])
        row.update(mean=100 * scores.mean(), std=100 * scores.std(), iqm=100 * iqm(scores), ci_low=100 * low,
                   ci_high=100 * high)
    published = published_score(group[0].family, group[0].task, agent)
    if published is not None:
        texts = departures(group[0].recorded, published.protocol, group[0].family)  # a group shares its protocol
        row.update(published=published.mean, published_std=published.std, published_source=published.source,
                   departures=departures_text(texts, published.protocol))
    return row


def aggregate_rows(groups) -> list:
    """Per (agent, setting) run on several environments: IQM over all runs, environments as strata."""
    by_agent = {}
    for (env, agent, setting), group in groups.items():
        scores = [m.score for m in group if m.score is not None]
        if scores:
            by_agent.setdefault((agent, setting), {})[env] = np.array(scores)
    rows = []
    for (agent, setting), per_env in by_agent.items():
        if len(per_env) < 2:
            continue
        low, high = stratified_bootstrap_ci(list(per_env.values()))
        rows.append(dict(agent=agent, setting=setting_text(setting), environments=len(per_env),
                         runs=sum(len(s) for s in per_env.values()), iqm=100 * iqm(np.concatenate(list(per_env.values()))),
                         ci_low=100 * low, ci_high=100 * high))
    return rows


SUPERSCRIPT_DIGITS = str.maketrans('0123456789', '⁰¹²³⁴⁵⁶⁷⁸⁹')


def footnote_mark(number: int) -> str:
    """The superscript of a footnote number: 1 -> '¹', 12 -> '¹²' (any number of sources)."""
    return str(number).translate(SUPERSCRIPT_DIGITS)


def markdown(rows, aggregates) -> str:
    lines = ["Final score = mean score (x 100: success in % on OGBench, D4RL's normalised return on D4RL) of the "
             'last three evaluations per seed; IQM with its 95 % '
             'stratified-bootstrap interval over seeds.', '',
             '| environment | agent | setting | seeds | mean ± std | IQM [95% CI] | last update | published | '
             'departures from the published protocol |',
             '|---|---|---|---:|---:|---:|---:|---:|---|']
    sources = []
    for r in rows:
        seeds = f'{r["seeds"]}' + (f' (+{r["diverged"]} diverged)' if r['diverged'] else '')
        published = '–'
        if r['published'] is not None:
            if r['published_source'] not in sources:
                sources.append(r['published_source'])
            mark = footnote_mark(sources.index(r['published_source']) + 1)
            std = '' if r['published_std'] is None else f' ± {r["published_std"]:g}'
            published = f'{r["published"]:g}{std}{mark}'
        score = '–' if r['mean'] is None else f'{r["mean"]:.1f} ± {r["std"]:.1f}'
        interval = '–' if r['iqm'] is None else f'{r["iqm"]:.1f} [{r["ci_low"]:.1f}, {r["ci_high"]:.1f}]'
        last = '–' if r['last_update'] is None else f'{r["last_update"]:,}'
        lines.append(f'| {r["environment"]} | {r["agent"]} | {r["setting"]} | {seeds} | {score} | {interval} | '
                     f'{last} | {published} | {r["departures"] or "–"} |')
    for i, source in enumerate(sources):
        protocol = SOURCE_PROTOCOLS[source]
        timing = f'; {TIMING_NOTE}' if protocol.success_timing else ''
        lines.append(f'\n{footnote_mark(i + 1)} {source}: {protocol_text(protocol)}{timing}.')
    if aggregates:
        lines += ['', 'Over environments (IQM of every run, stratified bootstrap with environments as strata):', '',
                  '| agent | setting | environments | runs | IQM [95% CI] |', '|---|---|---:|---:|---:|']
        for a in aggregates:
            lines.append(f'| {a["agent"]} | {a["setting"]} | {a["environments"]} | {a["runs"]} | '
                         f'{a["iqm"]:.1f} [{a["ci_low"]:.1f}, {a["ci_high"]:.1f}] |')
    return '\n'.join(lines) + '\n'


def csv_text(rows) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def common_curve(group):
    """(steps every member of the group was evaluated at, success [members, steps])."""
    evaluated = [m for m in group if len(m.steps) and not m.diverged]
    if not evaluated:
        return np.array([]), np.zeros((0, 0))
    steps = sorted(set.intersection(*(set(m.steps.tolist()) for m in evaluated)))
    curves = [[m.success[list(m.steps).index(s)] for s in steps] for m in evaluated]
    return np.array(steps), np.array(curves)


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


TITLE_CHARACTERS = 60  # a title line wider than this is wrapped (at hyphens and slashes too)
CHARACTERS_PER_INCH = 11  # of a 10-point title, with a margin (DejaVu Sans averages ~6 points a character)


def wrapped(text: str, width: int = TITLE_CHARACTERS) -> str:
    """`text` cut into lines of at most `width` characters, an environment name at its hyphens or slashes."""
    return '\n'.join(textwrap.wrap(text.replace('/', '/ '), width)).replace('/ ', '/')


def draw_published(ax, published, agent: str, color) -> None:
    """The published score as a dotted reference line, with its ± std band where the source gives one."""
    if published is None:
        return
    std = '' if published.std is None else f' ± {published.std:g}'
    ax.axhline(published.mean, color=color, linestyle=':', linewidth=1.5, label=f'{agent}, published (paper): '
               f'{published.mean:g}{std}')
    if published.std is not None:
        ax.axhspan(published.mean - published.std, published.mean + published.std, color=color, alpha=0.1,
                   linewidth=0)


def success_figure(groups: dict, env: str):
    """The score against updates on `env`: one line per agent / setting (mean over seeds, 95 %
    bootstrap band), each agent's published score as a reference line; None if nothing was evaluated."""
    curves = [(agent, setting, group[0], *common_curve(group)) for (group_env, agent, setting), group in groups.items()
              if group_env == env]
    curves = [curve for curve in curves if len(curve[3])]
    if not curves:
        return None
    member = curves[0][2]  # the environment's names and metric, shared by every member on it
    metric = METRICS[member.metric]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), layout='constrained')
    colors = {}
    for agent, setting, _, steps, values in curves:
        low, high = mean_ci_per_step(values)
        label = agent + ('' if not setting else f' ({setting_text(setting)})') + f', {len(values)} seed(s)'
        line, = ax.plot(steps, 100 * values.mean(0), marker='o', markersize=3,
                        label='\n'.join(textwrap.wrap(label, 70)))
        ax.fill_between(steps, 100 * low, 100 * high, color=line.get_color(), alpha=0.2, linewidth=0)
        colors.setdefault(agent, line.get_color())
    for agent, color in colors.items():
        draw_published(ax, published_score(member.family, member.task, agent), agent, color)
    if metric.limits is not None:
        low, high = metric.limits
        ax.set_ylim(low - 0.03 * (high - low), high + 0.03 * (high - low))
    ax.set(xlabel='updates', ylabel=metric.label)
    ax.set_title(wrapped(member.env_label) + '\nmean over seeds, band = 95% bootstrap CI', fontsize=11)
    ax.grid(alpha=0.3)
    fig.legend(loc='outside lower center', fontsize=8)  # below the axes: never over a curve or the published line
    return fig


def plot_success(groups: dict, env: str, path: str) -> bool:
    """success_<env>.png (success_figure); False if nothing was evaluated."""
    return _save_figure(success_figure(groups, env), path)


def loss_panels(columns) -> list:
    """[(training column or None, validation column or None)]: one panel per metric, its
    validation column (VALIDATION_PREFIX + metric) beside it; a validation column whose metric
    train.csv lacks gets a panel of its own."""
    prefix = run_files.VALIDATION_PREFIX
    training = [c for c in columns if not c.startswith(prefix)]
    panels = [(c, prefix + c if prefix + c in columns else None) for c in training]
    return panels + [(None, c) for c in columns if c.startswith(prefix) and c[len(prefix):] not in training]


def mean_over_seeds(group, column: str):
    """(steps, mean of `column` over the group's members at each step where any logged it)."""
    values = {}
    for member in group:
        for row in member.train_rows:
            if row.get(column) not in (None, ''):
                values.setdefault(int(row['step']), []).append(float(row[column]))
    steps = sorted(values)
    return steps, [np.mean(values[step]) for step in steps]


def losses_figure(groups: dict, env: str, agent: str):
    """Every train.csv metric of `agent` on `env`, mean over seeds: one panel per metric with its
    training (solid) and validation (dashed) curves, one colour per setting; None without metrics."""
    mine = {setting: group for (e, a, setting), group in groups.items() if e == env and a == agent}
    rows = [r for group in mine.values() for m in group for r in m.train_rows]
    labels = {k for group in mine.values() for m in group for k in m.config}  # swept values sit in the rows too
    panels = loss_panels([k for k in (rows[0] if rows else {}) if k not in run_files.ROW_LABELS and k not in labels])
    if not panels:
        return None
    plt = _pyplot()
    columns = min(3, len(panels))
    lines = -(-len(panels) // columns)
    width = max(8.0, 4.2 * columns)  # inches
    fig, axes = plt.subplots(lines, columns, figsize=(width, 1.0 + 2.8 * lines), squeeze=False, layout='constrained')
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, (training, validation) in zip(axes.flat, panels):
        for i, (setting, group) in enumerate(mine.items()):
            for column, style in ((training, '-'), (validation, '--')):
                if column is not None:
                    steps, means = mean_over_seeds(group, column)
                    ax.plot(steps, means, style, color=colors[i % len(colors)], marker='o' if len(steps) == 1 else None,
                            label=setting_text(setting) if column == (training or validation) else None)
        ax.set_title(training or validation, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis('off')
    if len(mine) > 1:
        axes.flat[0].legend(fontsize=7)
    member = next(iter(mine.values()))[0]
    styles = '\nsolid: training batches, dashed: validation split' if any(v for _, v in panels) else ''
    title = f'{agent} on {member.env_label}: training metrics, mean over seeds (x: updates)'
    fig.suptitle(wrapped(title, int(CHARACTERS_PER_INCH * width)) + styles, fontsize=10)
    return fig


def plot_losses(groups: dict, env: str, agent: str, path: str) -> bool:
    """losses_<env>_<agent>.png (losses_figure); False without metrics."""
    return _save_figure(losses_figure(groups, env, agent), path)


def _save_figure(fig, path: str) -> bool:
    """Writes `fig` (None: nothing to draw) through a temporary file and a rename, like every file
    flowrl writes, and closes it; whether there was one."""
    if fig is None:
        return False
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=110)
    _pyplot().close(fig)
    run_files.write_atomic(path, buffer.getvalue())
    return True


def write_report(patterns, out_dir: str, log=print) -> dict:
    """Reads the run directories in/under/matching `patterns` and writes the report to
    `out_dir`; returns {'markdown': path, 'csv': path, 'plots': [paths]}."""
    members = load_all(find_run_dirs(patterns), log)
    if not members:
        raise UserError('None of the run directories could be read.')
    groups = group_members(members, log)
    rows = [summary_row(key, group) for key, group in groups.items()]
    os.makedirs(out_dir, exist_ok=True)
    paths = dict(markdown=os.path.join(out_dir, 'report.md'), csv=os.path.join(out_dir, 'report.csv'), plots=[])
    run_files.write_atomic(paths['markdown'], markdown(rows, aggregate_rows(groups)))
    run_files.write_atomic(paths['csv'], csv_text(rows))
    for env in dict.fromkeys(env for env, _, _ in groups):
        path = os.path.join(out_dir, f'success_{env}.png')
        if plot_success(groups, env, path):
            paths['plots'].append(path)
        for agent in dict.fromkeys(a for e, a, _ in groups if e == env):
            path = os.path.join(out_dir, f'losses_{env}_{agent}.png')
            if plot_losses(groups, env, agent, path):
                paths['plots'].append(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='python -m flowrl.results.report', description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='run directories, directories holding runs, or globs')
    parser.add_argument('--out', default='report', help='output directory (default: report/ in the current directory)')
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.runs, args.out)
    except UserError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(1)
    print(open(paths['markdown']).read())
    print('\n'.join(written_lines(paths)))


def written_lines(paths: dict) -> list:
    """What the report wrote, as absolute paths: openable whatever directory the command ran in
    and whatever run directories it was given (a relative 'report/...' reads as the run's own)."""
    files = [paths['markdown'], paths['csv'], *paths['plots']]
    return ['Written:'] + [f'  {os.path.abspath(path)}' for path in files]


if __name__ == '__main__':
    main()
