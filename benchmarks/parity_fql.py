"""Parity of flowrl's FQL with the authors' code: same data, same config, same loss curves.

    python benchmarks/parity_fql.py --official_repo /work/official/fql \
        --official_python /work/official/venv/bin/python

1. Generates (or reuses) a reduced cube-single-play dataset with flowrl's generator
   (`python -m flowrl.suites.data generate cube-single-play-v0 --episodes N`), and points both programs
   at the same files: flowrl through `--dataset_path`, the official code through
   `ogbench.make_env_and_datasets(..., dataset_path=...)` (its loader, relabelling and action
   clipping are the official ones).
2. Trains the official FQL agent (its `FQLAgent` and `Dataset`, driven by a short loop in the
   official virtualenv: one host batch and one jitted update per step, seeded as its main.py
   does) for each seed, and flowrl's FQL through main.py with `--num_seeds`, with the same
   config (checked key by key; smaller networks than the paper's 4 x 512 keep it CPU-sized).
3. Compares, at every log step, the window mean of critic loss, BC flow loss, distillation loss
   and mean Q (at dataset and at policy actions): mean and spread over seeds of each program.
   A point agrees when |mean difference| <= 3 standard errors of that difference
   (sqrt(var_a / n + var_b / n), seed variance with ddof 1); a metric agrees when at least 80%
   of its log steps do. Seeds of the two programs are independent draws (different RNG use),
   so only the distribution over seeds can be compared.

Defaults take about 10 minutes on 2 idle CPU cores. Prints a table per metric, a verdict and the
summary at the last log step that docs/RESULTS.md shows (`final_table`); with `--out_dir`, also
writes parity_fql.json (every curve) and parity_fql.md (the same text).
"""

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = 'cube-single-play-v0'
ENV_NAME = 'cube-single-play-singletask-v0'
# (flowrl train.csv column, official metric name, label)
METRICS = (
    ('critic/loss', 'critic/critic_loss', 'critic loss'),
    ('actor/bc_flow_loss', 'actor/bc_flow_loss', 'BC flow loss'),
    ('actor/distill_loss', 'actor/distill_loss', 'distillation loss'),
    ('critic/q_mean', 'critic/q_mean', 'mean Q on data actions'),
    ('actor/q', 'actor/q', 'mean Q on policy actions'),
)
# Config keys both implementations have; they must be equal for the comparison to mean anything.
SHARED_KEYS = ('lr', 'batch_size', 'actor_hidden_dims', 'value_hidden_dims', 'layer_norm', 'actor_layer_norm',
               'discount', 'tau', 'q_agg', 'alpha', 'flow_steps', 'normalize_q_loss')
AGREEMENT_SE, AGREEMENT_FRACTION = 3.0, 0.8

# Runs in the official virtualenv with the official repository first on sys.path. It only calls
# the official code's API (dataset loader, FQLAgent, Dataset); none of that code is copied here.
OFFICIAL_DRIVER = textwrap.dedent('''
    import functools, json, random, sys
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, spec['repo'])
    import jax, jax.numpy as jnp, numpy as np, ogbench
    # The official loader has no dataset argument: hand it ours through OGBench's own dataset_path.
    ogbench.make_env_and_datasets = functools.partial(ogbench.make_env_and_datasets,
                                                      dataset_path=spec['dataset_path'])
    from envs.env_utils import make_env_and_datasets
    from agents.fql import FQLAgent, get_config
    from utils.datasets import Dataset

    config = get_config()
    for key, value in spec['overrides'].items():
        config[key] = tuple(value) if isinstance(value, list) else value
    _, _, train, _ = make_env_and_datasets(spec['env_name'])
    seed = spec['seed']
    random.seed(seed)
    np.random.seed(seed)  # the official main.py seeds numpy's global RNG, which Dataset.sample uses
    train = Dataset.create(**train)
    example = train.sample(1)
    agent = FQLAgent.create(seed, example['observations'], example['actions'], config)
    rows, window = [], []
    for i in range(1, spec['steps'] + 1):
        agent, info = agent.update(train.sample(config['batch_size']))
        window.append(info)
        if i % spec['log_interval'] == 0:
            means = jax.device_get(jax.tree.map(lambda *x: jnp.mean(jnp.stack(x)), *window))
            rows.append(dict(step=i, **{k: float(v) for k, v in means.items()}))
            window = []
    with open(spec['out'], 'w') as f:
        json.dump(dict(config=config.to_dict(), rows=rows), f)
''')


def subprocess_env():
    return dict(os.environ, JAX_PLATFORMS='cpu', FLOWRL_NO_DOWNLOAD='1')


def run_checked(command, cwd, what):
    result = subprocess.run(command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f'{what} failed (exit {result.returncode}):\n{result.stderr[-4000:]}')
    return result


def dataset_file(dataset_dir, episodes, workers):
    """The reduced dataset's train file, generated with flowrl's generator unless it exists."""
    path = os.path.join(os.path.expanduser(dataset_dir), f'{DATASET}-ep{episodes}.npz')
    if not os.path.exists(path):
        print(f'Generating {path} ({episodes} episodes) ...', flush=True)
        run_checked([sys.executable, '-m', 'flowrl.suites.data', 'generate', DATASET, f'--episodes={episodes}',
                     f'--dataset_dir={dataset_dir}', f'--workers={workers}'], REPO, 'dataset generation')
    return path


def overrides_from(args):
    hidden = tuple(int(h) for h in args.hidden.split(','))
    return dict(actor_hidden_dims=hidden, value_hidden_dims=hidden, batch_size=args.batch_size, alpha=args.alpha)


def train_official(args, path, overrides, workdir):
    """Per-seed curves {metric: [steps]} and the official config, one process per seed."""
    driver = os.path.join(workdir, 'official_driver.py')
    with open(driver, 'w') as f:
        f.write(OFFICIAL_DRIVER)
    curves, config = [], None
    for seed in range(args.seeds):
        out = os.path.join(workdir, f'official_seed{seed}.json')
        spec = dict(repo=os.path.abspath(args.official_repo), dataset_path=path, env_name=ENV_NAME, seed=seed,
                    steps=args.steps, log_interval=args.log_interval, overrides=overrides, out=out)
        print(f'Official FQL, seed {seed} ...', flush=True)
        run_checked([args.official_python, driver, json.dumps(spec)], args.official_repo, f'official seed {seed}')
        with open(out) as f:
            result = json.load(f)
        config = result['config']
        curves.append({step_row['step']: step_row for step_row in result['rows']})
    return curves, config


def train_flowrl(args, path, overrides, workdir):
    """Per-seed curves and the resolved config of flowrl's main.py (all seeds in one program)."""
    flags = [f'--agent=agents/fql.py', f'--env_name={ENV_NAME}', f'--dataset_path={path}', '--seed=0',
             f'--num_seeds={args.seeds}', f'--offline_steps={args.steps}', f'--log_interval={args.log_interval}',
             '--eval_interval=0', '--eval_episodes=0', '--save_interval=0', f'--save_dir={workdir}',
             '--run_group=parity']
    flags += [f'--agent.{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}' for k, v in overrides.items()]
    print(f'flowrl FQL, {args.seeds} seed(s) in one program ...', flush=True)
    run_checked([sys.executable, os.path.join(REPO, 'main.py'), *flags], REPO, 'flowrl main.py')
    (run_dir,) = glob.glob(os.path.join(workdir, 'parity', 'fql_*'))
    with open(os.path.join(run_dir, 'flags.json')) as f:
        config = json.load(f)['configs'][0]
    with open(os.path.join(run_dir, 'train.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    curves = [{int(r['step']): {k: float(v) for k, v in r.items()} for r in rows if int(r['member']) == m}
              for m in range(args.seeds)]
    return curves, config


def check_same_config(official, flowrl):
    def norm(v):
        return tuple(v) if isinstance(v, list) else v
    differ = {k: (norm(official[k]), norm(flowrl[k])) for k in SHARED_KEYS if norm(official[k]) != norm(flowrl[k])}
    if differ:
        sys.exit(f'The two programs were not configured alike (official, flowrl): {differ}')
    return {k: norm(flowrl[k]) for k in SHARED_KEYS}


def compare(official_curves, flowrl_curves, steps):
    """Per metric and log step: both programs' mean and std over seeds, and whether they agree."""
    table = {}
    for flowrl_key, official_key, label in METRICS:
        points = []
        for step in steps:
            a = np.array([c[step][official_key] for c in official_curves])
            b = np.array([c[step][flowrl_key] for c in flowrl_curves])
            se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if len(a) > 1 else np.nan
            diff = b.mean() - a.mean()
            points.append(dict(step=step, official_mean=a.mean(), official_std=a.std(ddof=1) if len(a) > 1 else 0.0,
                               flowrl_mean=b.mean(), flowrl_std=b.std(ddof=1) if len(b) > 1 else 0.0,
                               diff=diff, se=se, agree=bool(abs(diff) <= AGREEMENT_SE * se)))
        fraction = float(np.mean([p['agree'] for p in points]))
        table[label] = dict(points=points, agree_fraction=fraction, agree=fraction >= AGREEMENT_FRACTION)
    return table


def final_table(table) -> str:
    """The summary docs/RESULTS.md shows: each metric's mean ± std over seeds at the last log step,
    official and flowrl, printed so that the document's table is pasted, not typed (typing it
    once gave 'mean Q on policy actions' the numbers of the row above)."""
    lines = ['| metric | official | flowrl |', '|---|---:|---:|']
    for label, entry in table.items():
        last = entry['points'][-1]
        lines.append(f'| {label} | {last["official_mean"]:.4g} ± {last["official_std"]:.2g} | '
                     f'{last["flowrl_mean"]:.4g} ± {last["flowrl_std"]:.2g} |')
    return '\n'.join(lines)


def markdown(table, header_lines):
    lines = list(header_lines) + ['']
    for label, entry in table.items():
        lines += [f'**{label}** ({100 * entry["agree_fraction"]:.0f}% of log steps within '
                  f'{AGREEMENT_SE:g} SE: {"agrees" if entry["agree"] else "DIFFERS"})', '',
                  '| step | official mean ± std | flowrl mean ± std | difference | 3 SE | agree |',
                  '|---:|---:|---:|---:|---:|:---:|']
        for p in entry['points']:
            lines.append(f'| {p["step"]} | {p["official_mean"]:.4g} ± {p["official_std"]:.2g} | '
                         f'{p["flowrl_mean"]:.4g} ± {p["flowrl_std"]:.2g} | {p["diff"]:+.3g} | '
                         f'{AGREEMENT_SE * p["se"]:.3g} | {"yes" if p["agree"] else "no"} |')
        lines.append('')
    differing = [label for label, entry in table.items() if not entry['agree']]
    verdict = not differing
    lines.append('Verdict: ' + ('flowrl and the official FQL agree within seed noise on every metric.' if verdict
                                else f'the curves DIFFER beyond seed noise on: {", ".join(differing)}.'))
    return '\n'.join(lines), verdict


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official_repo', required=True, help='checkout of github.com/seohongpark/fql')
    parser.add_argument('--official_python', default=sys.executable,
                        help='python of a virtualenv where the official code imports (jax, flax, distrax, ogbench)')
    parser.add_argument('--seeds', type=int, default=3, help='seeds per program')
    parser.add_argument('--steps', type=int, default=3000, help='updates per seed')
    parser.add_argument('--log_interval', type=int, default=250, help='updates per compared window')
    parser.add_argument('--hidden', default='128,128,128,128', help='hidden sizes of every MLP (paper: 512 x 4)')
    parser.add_argument('--batch_size', type=int, default=256)
    parser.add_argument('--alpha', type=float, default=300.0, help='distillation weight (paper, cube-single: 300)')
    parser.add_argument('--episodes', type=int, default=20, help='episodes of the generated dataset')
    parser.add_argument('--dataset_dir', default='~/.ogbench/data', help='where the reduced dataset is kept')
    parser.add_argument('--workers', type=int, default=2, help='worker processes for dataset generation')
    parser.add_argument('--out_dir', default=None, help='also write parity_fql.json and parity_fql.md here')
    args = parser.parse_args()
    if args.steps % args.log_interval or args.seeds < 2:
        sys.exit('--steps must be a multiple of --log_interval, and --seeds at least 2 (seed noise needs two).')
    if not os.path.isfile(os.path.join(args.official_repo, 'agents', 'fql.py')):
        sys.exit(f'{args.official_repo} is not a checkout of the FQL repository (no agents/fql.py).')

    path = dataset_file(args.dataset_dir, args.episodes, args.workers)
    overrides = overrides_from(args)
    with tempfile.TemporaryDirectory(prefix='parity_fql_') as workdir:
        official_curves, official_config = train_official(args, path, overrides, workdir)
        flowrl_curves, flowrl_config = train_flowrl(args, path, overrides, workdir)
    config = check_same_config(official_config, flowrl_config)
    steps = list(range(args.log_interval, args.steps + 1, args.log_interval))
    table = compare(official_curves, flowrl_curves, steps)
    header = [f'FQL parity on {DATASET} ({args.episodes} generated episodes, {path}): {args.seeds} seeds per '
              f'program, {args.steps} updates, window means over {args.log_interval} updates.',
              'Networks smaller than the paper\'s 4 x 512 (CPU-sized): ' + args.hidden + '.',
              'Shared config (checked equal in both programs): '
              + ', '.join(f'{k}={v}' for k, v in config.items()) + '.']
    text, verdict = markdown(table, header)
    text += f'\n\nAt update {steps[-1]}, mean ± std over seeds:\n\n' + final_table(table)
    print(text)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, 'parity_fql.md'), 'w') as f:
            f.write(text + '\n')
        with open(os.path.join(args.out_dir, 'parity_fql.json'), 'w') as f:
            json.dump(dict(config=config, args=vars(args), table=table, official=official_curves,
                           flowrl=flowrl_curves), f, indent=1, default=float)
    sys.exit(0 if verdict else 1)


if __name__ == '__main__':
    main()
