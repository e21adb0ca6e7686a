"""Does action chunking help at CPU size? QC-FQL (agents/acfql.py, H = 5) beside the same agent at
H = 1 (FQL as the Q-chunking code runs it) and flowrl's FQL, offline then online, on a reduced
dataset (cube-double-play by default, `--env`) generated with flowrl's generator.

    python benchmarks/chunking_learning.py --out_dir chunking_results          # ~30 min on 2 idle cores
    python benchmarks/chunking_learning.py --offline 2000 --online 2000 --episodes 20 --out_dir /tmp/c

Every run is main.py with `--seeds` seeds in one program, smaller networks than the papers' 4 x 512
(stated in the table), `--offline` updates then `--online` environment steps (one update each),
evaluations every (offline + online) / `--evaluations` updates. alpha: the Q-chunking README's 100 for
acfql (both horizons, so H is the only difference) and the FQL paper's preset for FQL (300 on
cube-single and cube-double). Writes chunking.md (success after the offline phase and at the end, per seed, and the
mean) and chunking.png (success vs updates, mean over seeds, seeds as thin lines) to --out_dir.
"""

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

from learning import dataset_file  # noqa: E402

ENV = 'cube-double-play'
RUNS = {  # label -> main.py flags
    'QC-FQL: acfql H=5': ['--agent=agents/acfql.py', '--horizon_length=5'],
    'FQL: acfql H=1': ['--agent=agents/acfql.py', '--horizon_length=1'],
    'FQL: agents/fql.py': ['--agent=agents/fql.py'],
}


def train(label, flags, path, args, runs_dir):
    total = args.offline + args.online
    interval = total // args.evaluations
    group = ''.join(c if c.isalnum() else '_' for c in label)
    command = [sys.executable, os.path.join(REPO, 'main.py'), *flags, f'--env_name={args.env}', f'--dataset_path={path}',
               f'--num_seeds={args.seeds}', f'--offline_steps={args.offline}', f'--online_steps={args.online}',
               f'--log_interval={interval}', f'--eval_interval={interval}', f'--eval_episodes={args.eval_episodes}',
               '--save_interval=0', f'--save_dir={runs_dir}', f'--run_group={group}',
               f'--agent.actor_hidden_dims={args.hidden}', f'--agent.value_hidden_dims={args.hidden}']
    print(f'== {label}: {" ".join(command[2:])}', flush=True)
    started = time.time()
    result = subprocess.run(command, cwd=REPO, env=dict(os.environ, FLOWRL_NO_DOWNLOAD='1'), capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f'{label} failed (exit {result.returncode}):\n{result.stderr[-3000:]}')
    (run_dir,) = glob.glob(os.path.join(runs_dir, group, '*'))
    members = json.load(open(os.path.join(run_dir, 'results.json')))['members']
    steps = np.array([e['step'] for e in members[0]['evaluations']])
    success = np.array([[e['success'] for e in m['evaluations']] for m in members])
    print(f'   {label}: final success per seed {success[:, -1].round(2).tolist()} ({(time.time() - started) / 60:.1f} min)',
          flush=True)
    return dict(steps=steps, success=success, minutes=(time.time() - started) / 60)


def table(results, args) -> str:
    offline_column = int(np.argmin(np.abs(next(iter(results.values()))['steps'] - args.offline)))
    lines = [f'{args.env}, {args.episodes} generated episodes; {args.offline:,} offline updates then '
             f'{args.online:,} online steps; networks {args.hidden}; {args.seeds} seeds; {args.eval_episodes} '
             f'evaluation episodes per seed; {platform.processor() or platform.machine()}, '
             f'{time.strftime("%Y-%m-%d")}.', '',
             '| run | success after offline (per seed) | final success (per seed) | final mean | minutes |',
             '|---|---|---|---|---|']
    for label, r in results.items():
        s = r['success']
        lines.append(f'| {label} | {s[:, offline_column].round(2).tolist()} | {s[:, -1].round(2).tolist()} | '
                     f'{s[:, -1].mean():.2f} | {r["minutes"]:.1f} |')
    return '\n'.join(lines) + '\n'


def plot(results, args, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, r), color in zip(results.items(), ('C0', 'C1', 'C2')):
        ax.plot(r['steps'], r['success'].mean(0), color=color, label=label)
        for seed in r['success']:
            ax.plot(r['steps'], seed, color=color, alpha=0.3, linewidth=0.8)
    ax.axvline(args.offline, color='grey', linestyle=':', label='online starts')
    ax.set_xlabel('updates (offline, then online steps)')
    ax.set_ylabel('success')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out_dir', required=True)
    parser.add_argument('--env', default=ENV, help='an OGBench manipulation family, e.g. cube-single-play')
    parser.add_argument('--dataset_dir', default='~/.ogbench/data')
    parser.add_argument('--episodes', type=int, default=200)
    parser.add_argument('--offline', type=int, default=20_000)
    parser.add_argument('--online', type=int, default=20_000)
    parser.add_argument('--evaluations', type=int, default=8)
    parser.add_argument('--eval_episodes', type=int, default=10)
    parser.add_argument('--seeds', type=int, default=2)
    parser.add_argument('--hidden', default='256,256')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--runs', default=','.join(RUNS), help='labels of RUNS, comma-separated')
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    path = dataset_file(args.dataset_dir, args.episodes, args.workers, f'{args.env}-v0')
    results = {label: train(label, RUNS[label], path, args, os.path.join(args.out_dir, 'runs'))
               for label in args.runs.split(',')}
    text = table(results, args)
    open(os.path.join(args.out_dir, 'chunking.md'), 'w').write(text)
    plot(results, args, os.path.join(args.out_dir, 'chunking.png'))
    print(text)


if __name__ == '__main__':
    main()
