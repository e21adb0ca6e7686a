"""Does each agent learn? Success curves and final scores of every agent beside flow BC, CPU-sized.

    python benchmarks/learning.py --out_dir learning_results            # every agent, ~1 h on 2 cores
    python benchmarks/learning.py --agents flow_bc,fql --updates 300 --episodes 2 --out_dir /tmp/l

On a reduced cube-single-play dataset generated with flowrl's generator (a few hundred
episodes), every agent in agents/ but ONLINE_ONLY is trained by main.py with its defaults and the presets of
configs/<agent>.py for cube-single-play, `--seeds` seeds in one program, with networks smaller
than the papers' 4 x 512 (stated in the output) so it fits a CPU. Only the network sizes change,
and QIPO's phase lengths, which assume 1M updates, are scaled to `--updates` in the agent's own
proportions by `--agent.phase_scale=auto` (20 % BC warm-up, 30 % critic, renewal every 10 % of
the policy phase).
Score = the FQL paper's: mean success of the last three evaluations, per seed.

Writes to --out_dir: learning.md (the table), learning.json (every curve), the run directories
under runs/, and flowrl.results.report's report.md (IQM with bootstrap intervals), success_<env>.png
(success vs updates: mean over seeds, 95 % bootstrap band) and losses_<env>_<agent>.png.
An agent "learns beyond flow BC" here when its lowest seed's score is above flow BC's highest
(and "below" the other way round); otherwise the seed ranges overlap ("≈ flow BC").
"""

import argparse
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from flowrl import suites  # noqa: E402
from flowrl.results.report import write_report  # noqa: E402
from flowrl.registry.presets import unpublished_key_values  # noqa: E402
from flowrl.testing import agent_names  # noqa: E402

DATASET, ENV = 'cube-single-play-v0', 'cube-single-play'
BASELINE = 'flow_bc'
# Online baselines, left out of the default list: SAC (the RLPD baseline) has no BC term, so on
# offline data alone it measures nothing the paper compares; pass --agents=sac to run it anyway.
ONLINE_ONLY = ('sac',)


def unpublished(agent: str) -> str:
    """The agent's key values (configs/<agent>.py's KEY_VALUES) that no source gives on cube-single-play."""
    return ', '.join(unpublished_key_values(agent, suites.resolve(ENV)))


def dataset_file(dataset_dir, episodes, workers, dataset=DATASET):
    """The reduced dataset's train file, generated with flowrl's generator unless it exists."""
    path = os.path.join(os.path.expanduser(dataset_dir), f'{dataset}-ep{episodes}.npz')
    if not os.path.exists(path):
        print(f'Generating {path} ({episodes} episodes) ...', flush=True)
        subprocess.run([sys.executable, '-m', 'flowrl.suites.data', 'generate', dataset, f'--episodes={episodes}',
                        f'--dataset_dir={dataset_dir}', f'--workers={workers}'], cwd=REPO, check=True)
    return path


def agent_flags(agent, args):
    """main.py flags for one agent: its defaults and presets, smaller networks, QIPO's phases scaled."""
    hidden = args.hidden
    flags = [f'--agent.actor_hidden_dims={hidden}']
    if agent != BASELINE:
        flags.append(f'--agent.value_hidden_dims={hidden}')
    if agent == 'qipo':  # its defaults are 200k / 300k / 50k of 1M updates: scaled to the run
        flags.append('--agent.phase_scale=auto')
    extras = [item.split(':', 1) for item in args.extra]
    return flags + [f'--agent.{value}' for name, value in extras if name == agent]


def train(agent, path, args, runs_dir):
    """One main.py run of `args.seeds` seeds; returns (results.json, eval rows, config, seconds)."""
    interval = args.updates // args.evaluations
    command = [sys.executable, os.path.join(REPO, 'main.py'), f'--agent=agents/{agent}.py', f'--env_name={ENV}',
               f'--dataset_path={path}', '--seed=0', f'--num_seeds={args.seeds}', f'--offline_steps={args.updates}',
               f'--log_interval={interval}', f'--eval_interval={interval}', f'--eval_episodes={args.eval_episodes}',
               f'--eval_workers={args.eval_workers}', '--save_interval=0', f'--save_dir={runs_dir}',
               f'--run_group={agent}', *agent_flags(agent, args)]
    if args.success_timing:
        command.append(f'--success_timing={args.success_timing}')
    print(f'== {agent}: {" ".join(command[2:])}', flush=True)
    started = time.time()
    result = subprocess.run(command, cwd=REPO, env=dict(os.environ, FLOWRL_NO_DOWNLOAD='1'),
                            capture_output=True, text=True)
    seconds = time.time() - started
    if result.returncode != 0:
        print(f'{agent} failed (exit {result.returncode}):\n{result.stderr[-3000:]}', flush=True)
        return None
    (run_dir,) = glob.glob(os.path.join(runs_dir, agent, f'{agent}_*'))
    with open(os.path.join(run_dir, 'results.json')) as f:
        results = json.load(f)
    with open(os.path.join(run_dir, 'flags.json')) as f:
        config = json.load(f)['configs'][0]
    print(f'   {agent}: ' + ', '.join(f'seed {m["seed"]}: {100 * m["final_score"]:.0f}%' for m in results['members'])
          + f' ({seconds / 60:.1f} min)', flush=True)
    return dict(results=results, config=config, seconds=seconds, run_dir=run_dir)


def scores(entry):
    return np.array([m['final_score'] for m in entry['results']['members']])


def curves(entry):
    """steps, success [seed, evaluation]."""
    members = entry['results']['members']
    steps = [e['step'] for e in members[0]['evaluations']]
    return np.array(steps), np.array([[e['success'] for e in m['evaluations']] for m in members])


def versus_baseline(entry, baseline):
    if baseline is None or entry is baseline:
        return ''
    mine, theirs = scores(entry), scores(baseline)
    if mine.min() > theirs.max():
        return 'beyond flow BC'
    if mine.max() < theirs.min():
        return 'below flow BC'
    return '≈ flow BC'


def table(entries, args, path):
    baseline = entries.get(BASELINE)
    any_entry = next(iter(entries.values()))
    lines = [
        f'cube-single-play (default task), dataset {os.path.basename(path)} ({args.episodes} generated episodes), '
        f'{args.updates} updates, {args.seeds} seeds per agent, {args.evaluations} evaluations of '
        f'{args.eval_episodes} episodes per seed; score = mean success of the last 3 evaluations.',
        f'Networks smaller than the papers\' 4 x 512 (IQL: 4 x 256 here): hidden {args.hidden} (every MLP). '
        f'ogbench '
        f'{any_entry["results"].get("ogbench_version")}, success timing '
        f'{any_entry["results"].get("success_timing")}.', '',
        '| agent | score (mean ± std) | per seed | best evaluation | vs flow BC '
        '| not published for cube-single | time (min) |',
        '|---|---:|---|---:|---|---|---:|']
    for agent, entry in entries.items():
        s = scores(entry)
        _, success = curves(entry)
        lines.append(f'| {agent} | {100 * s.mean():.1f} ± {100 * s.std():.1f} | '
                     f'{", ".join(f"{100 * x:.0f}" for x in s)} | {100 * success.mean(0).max():.1f} | '
                     f'{versus_baseline(entry, baseline)} | {unpublished(agent)} | '
                     f'{entry["seconds"] / 60:.1f} |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out_dir', required=True)
    offline_agents = [name for name in agent_names() if name not in ONLINE_ONLY]
    parser.add_argument('--agents', default=','.join(offline_agents), help='comma-separated (flow_bc is always added)')
    parser.add_argument('--seeds', type=int, default=2)
    parser.add_argument('--updates', type=int, default=30_000)
    parser.add_argument('--evaluations', type=int, default=6, help='evenly spaced, the last at the end')
    parser.add_argument('--eval_episodes', type=int, default=10)
    parser.add_argument('--eval_workers', type=int, default=1, help='processes stepping evaluation envs per run')
    parser.add_argument('--parallel', type=int, default=2, help='agents trained at once (separate processes)')
    parser.add_argument('--hidden', default='128,128', help='hidden sizes of every MLP (papers: 512,512,512,512)')
    parser.add_argument('--episodes', type=int, default=200, help='episodes of the generated dataset')
    parser.add_argument('--dataset_dir', default='~/.ogbench/data')
    parser.add_argument('--workers', type=int, default=2, help='processes generating the dataset')
    parser.add_argument('--success_timing', choices=('pre', 'post'), default=None, help="default: OGBench's own")
    parser.add_argument('--extra', action='append', default=[],
                        help='AGENT:KEY=VALUE, an extra config value for one agent (repeatable), '
                             'e.g. rebrac:alpha_actor=1')
    args = parser.parse_args()
    if args.updates % args.evaluations:
        sys.exit('--updates must be a multiple of --evaluations.')
    agents = [a for a in args.agents.split(',') if a]
    unknown = sorted(set(agents) - set(agent_names()))
    if unknown:
        sys.exit(f'Unknown agent(s): {", ".join(unknown)}; agents/ has {", ".join(agent_names())}.')
    agents = [BASELINE] + [a for a in agents if a != BASELINE]

    os.makedirs(args.out_dir, exist_ok=True)
    runs_dir = os.path.join(os.path.abspath(args.out_dir), 'runs', time.strftime('%Y%m%d_%H%M%S'))
    path = dataset_file(args.dataset_dir, args.episodes, args.workers)
    started = time.time()
    # Runs are independent processes: --parallel 2 keeps both cores of a small machine busy
    # (small networks leave one XLA process mostly single-threaded). Times then overlap.
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        done = dict(zip(agents, pool.map(lambda agent: train(agent, path, args, runs_dir), agents)))
    entries = {agent: entry for agent, entry in done.items() if entry is not None}
    if not entries:
        sys.exit('Every run failed.')
    minutes = (time.time() - started) / 60
    text = table(entries, args, path) + f'\n\nTotal training and evaluation time: {minutes:.1f} min.'
    print('\n' + text)
    with open(os.path.join(args.out_dir, 'learning.md'), 'w') as f:
        f.write(text + '\n')
    with open(os.path.join(args.out_dir, 'learning.json'), 'w') as f:
        json.dump(dict(args=vars(args), dataset=path, runs={
            agent: dict(run_dir=e['run_dir'], seconds=e['seconds'], config=e['config'], results=e['results'])
            for agent, e in entries.items()}), f, indent=1)
    # Success curves (mean over seeds, 95 % bootstrap band), loss plots and IQM: flowrl.results.report.
    paths = write_report([runs_dir], args.out_dir, log=print)
    print(f'Written: {args.out_dir}/learning.md, learning.json, ' + ', '.join(
        os.path.basename(p) for p in [paths['markdown'], *paths['plots']]))
    sys.exit(0 if len(entries) == len(agents) else 1)


if __name__ == '__main__':
    main()
