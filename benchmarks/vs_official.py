"""flowrl against the authors' FQL code, side by side in one run, alternating the two programs.

    python benchmarks/vs_official.py --official_repo ~/src/fql --official_python ~/src/fql-venv/bin/python

Get the authors' code (github.com/seohongpark/fql, MIT) into a directory outside this project
and install its few imports (jax, flax, distrax, optax, ml_collections, ogbench, gymnasium,
wandb, tqdm, absl-py, pillow) in a virtual environment of its own; this script only runs it,
it never copies or edits its files. Three measurements, each repeated `--rounds` times with
the two programs alternating, each run in a fresh process:

1. `updates`: FQL update throughput at paper sizes (batch 256, 4 x 512 networks, obs 40,
   actions 5, 100k synthetic transitions), excluding compilation (reported separately).
   Official: one jitted `agent.update` per step on batches sampled on the host, as its
   main.py does; 4 seeds = 4 runs one after another, as its users run them. flowrl: the loop
   main.py runs (flowrl.engine.training.ChunkRunner, default member execution), 4 seeds in one program.
2. `command`: the whole training command, start to finish, on the same small generated
   cube-double-play dataset with the same number of updates and two evaluations each
   (the official main.py evaluates at update 1 and every --eval_interval; flowrl at every
   --eval_interval and the end). The official main.py stops at `wandb.init` with current
   wandb, so it runs through a shim that replaces `setup_wandb` by a disabled wandb run.
3. `eval`: 50 cube-double-play episodes of an untrained FQL policy (every episode runs to the
   time limit, so both do the same number of environment steps): the official `evaluate()`
   loop against flowrl's batched evaluation (flowrl.engine.evaluation), environment creation included.
4. `online`: online fine-tuning throughput, environment steps per second with one FQL update
   each (paper sizes), from the two main.py commands unchanged (`--offline_steps=0
   --online_steps=N`, no evaluation). Each command runs twice, with N and N + `--online_timed`
   steps: the difference in wall time is the time of `--online_timed` online steps, without
   set-up and compilation. flowrl runs 1 and 4 members in one program; the official code runs
   one seed per process (4 seeds take 4 times one seed's time).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV_NAME = 'cube-double-play-singletask-v0'

SYNTHETIC = '''
import numpy as np
def synthetic_dataset(size=100_000, obs_dim=40, action_dim=5):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(size, obs_dim)).astype(np.float32)
    return dict(observations=obs, next_observations=obs + 0.01, masks=np.ones(size, np.float32),
                actions=rng.uniform(-1, 1, (size, action_dim)).astype(np.float32),
                rewards=-np.ones(size, np.float32), terminals=np.zeros(size, np.float32))
'''

OFFICIAL_UPDATES = SYNTHETIC + '''
import json, sys, time
import jax
sys.path.insert(0, REPO)
from agents.fql import FQLAgent, get_config
from utils.datasets import Dataset
config = get_config()
dataset = Dataset.create(**synthetic_dataset())
rates, compiles = [], []
for seed in range(SEEDS):  # one run after another, as the official code's users run seeds
    example = dataset.sample(1)
    agent = FQLAgent.create(seed, example['observations'], example['actions'], config)
    start = time.perf_counter()
    agent, info = agent.update(dataset.sample(config['batch_size']))
    jax.block_until_ready(info)
    compiles.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(UPDATES):
        agent, info = agent.update(dataset.sample(config['batch_size']))
    jax.block_until_ready(info)
    rates.append(UPDATES / (time.perf_counter() - start))
print('RESULT ' + json.dumps(dict(updates_per_s=SEEDS / sum(1 / r for r in rates), compile_s=sum(compiles))))
'''

FLOWRL_UPDATES = SYNTHETIC + '''
import json, sys, time
import jax
sys.path.insert(0, ROOT)
from agents import fql
from flowrl.engine.training import ChunkRunner, init_members, member_shardings
config = fql.get_config()
dataset = synthetic_dataset()
members, replicated = member_shardings(SEEDS)
states, rngs = init_members(fql, [config] * SEEDS, list(range(SEEDS)), {k: v[:2] for k, v in dataset.items()})
states, rngs, data = jax.device_put(states, members), jax.device_put(rngs, members), jax.device_put(dataset, replicated)
runner = ChunkRunner(fql, config.batch_size, 'auto', config)
chunk = min(UPDATES, 100)
start = time.perf_counter()
states, rngs, summary = runner(states, rngs, data, chunk)
jax.block_until_ready(summary)
first = time.perf_counter() - start
start = time.perf_counter()
for _ in range(UPDATES // chunk):
    states, rngs, summary = runner(states, rngs, data, chunk)
jax.block_until_ready(summary)
per_chunk = (time.perf_counter() - start) / (UPDATES // chunk)
print('RESULT ' + json.dumps(dict(updates_per_s=SEEDS * chunk / per_chunk, compile_s=first - per_chunk,
                                  execution=runner.execution)))
'''

# Runs the official main.py unchanged; only setup_wandb (which current wandb rejects) is replaced.
OFFICIAL_MAIN_SHIM = '''
import os, sys
sys.path.insert(0, REPO)
os.chdir(REPO)
import wandb
import utils.log_utils as log_utils
log_utils.setup_wandb = lambda project='project', group=None, name=None, **_: wandb.init(
    mode='disabled', project=project, group=group, name=name)
import main
from absl import app
app.run(main.main)
'''

OFFICIAL_EVAL = '''
import json, sys, time
import numpy as np
sys.path.insert(0, REPO)
start = time.perf_counter()
from agents.fql import FQLAgent, get_config
from envs.env_utils import EpisodeMonitor
from utils.evaluation import evaluate
import ogbench
env = EpisodeMonitor(ogbench.make_env_and_datasets(ENV_NAME, env_only=True),
                     filter_regexes=['.*privileged.*', '.*proprio.*'])
config = get_config()
ob, _ = env.reset()
agent = FQLAgent.create(0, ob[None], env.action_space.sample()[None], config)
setup = time.perf_counter() - start
start = time.perf_counter()
stats, _, _ = evaluate(agent=agent, env=env, config=config, num_eval_episodes=EPISODES)
elapsed = time.perf_counter() - start
print('RESULT ' + json.dumps(dict(seconds=elapsed + setup, setup_s=setup,
                                  env_steps=int(round(stats['episode.length'] * EPISODES)),
                                  success=float(stats['success']))))
'''

FLOWRL_EVAL = '''
import functools, json, sys, time
import jax, numpy as np
sys.path.insert(0, ROOT)
start = time.perf_counter()
from agents import fql
from flowrl.suites.ogbench_envs import make_env, parse_env_name
from flowrl.engine.evaluation import EvalEnvs, make_policy, run_episodes
from flowrl.run.runner import eval_workers
from flowrl.engine.training import init_members
spec = parse_env_name(ENV_NAME)
envs = EvalEnvs(functools.partial(make_env, spec), 1, EPISODES, eval_workers(0))
env = make_env(spec)
example = dict(observations=np.zeros((2, env.observation_space.shape[0]), np.float32),
               actions=np.zeros((2, env.action_space.shape[0]), np.float32))
states, _ = init_members(fql, [fql.get_config()], [0], example)
envs.pool.reset(np.zeros(envs.size, np.uint32), np.ones(envs.size, bool))  # worker processes built their envs
setup = time.perf_counter() - start
start = time.perf_counter()
stats = run_episodes(make_policy(fql), states, envs, [0], 0)
elapsed = time.perf_counter() - start
print('RESULT ' + json.dumps(dict(seconds=elapsed + setup, setup_s=setup,
                                  env_steps=int(round(stats['episode_length'][0] * EPISODES)),
                                  success=float(stats['success'][0]))))
'''


def run_script(python, source, cwd, env=None, **constants):
    """Runs `source` (with `constants` defined first) in a fresh `python`; returns its RESULT dict."""
    header = ''.join(f'{name} = {value!r}\n' for name, value in constants.items())
    out = subprocess.run([python, '-c', header + textwrap.dedent(source)], cwd=cwd, env=env,
                         capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f'{python} failed (rc {out.returncode}):\n{out.stderr[-3000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def timed_command(argv, cwd, env=None):
    start = time.perf_counter()
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'{" ".join(argv)} failed (rc {out.returncode}):\n{out.stderr[-3000:]}')
    return time.perf_counter() - start


def alternate(rounds, measure_official, measure_flowrl):
    """[(official, flowrl)] per round, the two programs run one after the other each round."""
    return [(measure_official(), measure_flowrl()) for _ in range(rounds)]


def updates_section(args):
    rows = []
    for seeds in args.seeds:
        pairs = alternate(
            args.rounds,
            lambda: run_script(args.official_python, OFFICIAL_UPDATES, args.official_repo, REPO=args.official_repo,
                               SEEDS=seeds, UPDATES=args.updates),
            lambda: run_script(sys.executable, FLOWRL_UPDATES, ROOT, ROOT=ROOT, SEEDS=seeds, UPDATES=args.updates))
        official = statistics.median(p[0]['updates_per_s'] for p in pairs)
        ours = statistics.median(p[1]['updates_per_s'] for p in pairs)
        rows.append([f'FQL updates/s, {seeds} seed(s) (all seeds together)', f'{official:.2f}', f'{ours:.2f}',
                     f'{ours / official:.2f}x'])
        rows.append([f'  compile (s), {seeds} seed(s)', f'{statistics.median(p[0]["compile_s"] for p in pairs):.1f}',
                     f'{statistics.median(p[1]["compile_s"] for p in pairs):.1f}', ''])
        rows.append([f'  member execution', '', pairs[0][1]['execution'], ''])
    return rows


def prepare_dataset(args, workdir):
    """A small generated cube-double-play dataset, for flowrl (WORKDIR/data) and for the official
    code (under a HOME, WORKDIR/home, whose ~/.ogbench/data holds it with OGBench's file names)."""
    data_dir = os.path.join(workdir, 'data')
    subprocess.run([sys.executable, '-m', 'flowrl.suites.data', 'generate', 'cube-double-play-v0', '--episodes',
                    str(args.dataset_episodes), '--dataset_dir', data_dir], cwd=ROOT, check=True,
                   capture_output=True)
    stem = os.path.join(data_dir, f'cube-double-play-v0-ep{args.dataset_episodes}')
    official_dir = os.path.join(workdir, 'home', '.ogbench', 'data')
    os.makedirs(official_dir)
    shutil.copy(stem + '.npz', os.path.join(official_dir, 'cube-double-play-v0.npz'))
    shutil.copy(stem + '-val.npz', os.path.join(official_dir, 'cube-double-play-v0-val.npz'))


def official_main(args, workdir):
    """(flowrl's --dataset_path, the official command's environment, the official main.py shim):
    made once per benchmark run."""
    shim = os.path.join(workdir, 'official_main_shim.py')
    stem = os.path.join(workdir, 'data', f'cube-double-play-v0-ep{args.dataset_episodes}')
    if not os.path.exists(shim):
        prepare_dataset(args, workdir)
        with open(shim, 'w') as f:
            f.write(f'REPO = {args.official_repo!r}\n' + textwrap.dedent(OFFICIAL_MAIN_SHIM))
    home = os.path.join(workdir, 'home')
    return stem + '.npz', dict(os.environ, HOME=home, WANDB_MODE='disabled', WANDB_SILENT='true'), shim


def command_section(args, workdir):
    dataset_path, official_env, shim = official_main(args, workdir)
    updates, evals = args.command_updates, args.command_eval_episodes
    common = [f'--offline_steps={updates}', f'--log_interval={min(updates, 5000)}',
              f'--eval_episodes={evals}']
    official = [args.official_python, shim, f'--env_name={ENV_NAME}', f'--eval_interval={updates}',
                f'--save_dir={os.path.join(workdir, "official_exp")}'] + common
    ours = [sys.executable, 'main.py', f'--env_name={ENV_NAME}', f'--eval_interval={updates // 2}',
            f'--dataset_path={dataset_path}', f'--save_dir={os.path.join(workdir, "flowrl_exp")}'] + common
    pairs = alternate(args.rounds, lambda: timed_command(official, args.official_repo, official_env),
                      lambda: timed_command(ours, ROOT, dict(os.environ, FLOWRL_NO_DOWNLOAD='1')))
    official_s, ours_s = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    return [[f'whole command: {updates} updates + 2 x {evals} eval episodes (wall s)', f'{official_s:.1f}',
             f'{ours_s:.1f}', f'{official_s / ours_s:.2f}x']]


def eval_section(args):
    pairs = alternate(
        args.rounds,
        lambda: run_script(args.official_python, OFFICIAL_EVAL, args.official_repo, REPO=args.official_repo,
                           ENV_NAME=ENV_NAME, EPISODES=args.eval_episodes),
        lambda: run_script(sys.executable, FLOWRL_EVAL, ROOT, dict(os.environ, FLOWRL_NO_DOWNLOAD='1'), ROOT=ROOT,
                           ENV_NAME=ENV_NAME, EPISODES=args.eval_episodes))
    def median(side, measure):
        return statistics.median(measure(p[side]) for p in pairs)

    evaluation = lambda r: r['seconds'] - r['setup_s']  # the evaluate() call alone
    steps = pairs[0][1]['env_steps']
    official_eval, ours_eval = median(0, evaluation), median(1, evaluation)
    official_all, ours_all = median(0, lambda r: r['seconds']), median(1, lambda r: r['seconds'])
    return [[f'one evaluation: {args.eval_episodes} cube-double episodes, {steps:,} env steps (wall s)',
             f'{official_eval:.1f}', f'{ours_eval:.1f}', f'{official_eval / ours_eval:.2f}x'],
            ['  set-up once per run: imports, environments, agent (s)', f'{median(0, lambda r: r["setup_s"]):.1f}',
             f'{median(1, lambda r: r["setup_s"]):.1f}', ''],
            ['  set-up + one evaluation (s)', f'{official_all:.1f}', f'{ours_all:.1f}',
             f'{official_all / ours_all:.2f}x']]


def online_section(args, workdir):
    dataset_path, official_env, shim = official_main(args, workdir)
    short, long = args.online_warmup, args.online_warmup + args.online_timed

    def command(program, steps, extra):
        return program + [f'--env_name={ENV_NAME}', '--offline_steps=0', f'--online_steps={steps}',
                          f'--log_interval={steps}', '--eval_interval=0', f'--save_interval={10 * steps}'] + extra

    def official(steps):
        save_dir = os.path.join(workdir, f'official_online_{steps}')
        return timed_command(command([args.official_python, shim], steps, [f'--save_dir={save_dir}']),
                             args.official_repo, official_env)

    def ours(steps, seeds):
        save_dir = os.path.join(workdir, f'flowrl_online_{steps}_{seeds}')
        extra = [f'--dataset_path={dataset_path}', f'--save_dir={save_dir}', f'--num_seeds={seeds}', '--noreport']
        return timed_command(command([sys.executable, 'main.py'], steps, extra), ROOT,
                             dict(os.environ, FLOWRL_NO_DOWNLOAD='1'))

    rate = lambda measure: args.online_timed / (measure(long) - measure(short))
    rows = []
    for seeds in args.seeds:
        pairs = alternate(args.rounds, lambda: rate(official),
                          lambda: seeds * rate(lambda steps: ours(steps, seeds)))
        official_rate = statistics.median(p[0] for p in pairs)  # seeds run one after another
        ours_rate = statistics.median(p[1] for p in pairs)
        rows.append([f'online env steps/s (one update each), {seeds} seed(s), all seeds together',
                     f'{official_rate:.2f}', f'{ours_rate:.2f}', f'{ours_rate / official_rate:.2f}x'])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official_repo', required=True, help="checkout of github.com/seohongpark/fql")
    parser.add_argument('--official_python', default=sys.executable,
                        help='python of the virtual environment that runs the official code')
    parser.add_argument('--sections', default='updates,command,eval')
    parser.add_argument('--seeds', default='1,4', type=lambda s: [int(x) for x in s.split(',')])
    parser.add_argument('--updates', type=int, default=300, help='timed updates per seed (after compiling)')
    parser.add_argument('--rounds', type=int, default=2, help='alternating repetitions; medians are reported')
    parser.add_argument('--command_updates', type=int, default=1000)
    parser.add_argument('--command_eval_episodes', type=int, default=5)
    parser.add_argument('--dataset_episodes', type=int, default=20)
    parser.add_argument('--eval_episodes', type=int, default=50)
    parser.add_argument('--online_warmup', type=int, default=100, help='online steps of the shorter command')
    parser.add_argument('--online_timed', type=int, default=300, help='extra online steps of the longer command')
    args = parser.parse_args()
    args.official_repo = os.path.abspath(os.path.expanduser(args.official_repo))
    if not os.path.isfile(os.path.join(args.official_repo, 'agents', 'fql.py')):
        sys.exit(f'error: {args.official_repo} is not a checkout of seohongpark/fql (no agents/fql.py).')
    sections = args.sections.split(',')
    rows = []
    with tempfile.TemporaryDirectory(prefix='vs_official_') as workdir:
        if 'updates' in sections:
            rows += updates_section(args)
        if 'command' in sections:
            rows += command_section(args, workdir)
        if 'eval' in sections:
            rows += eval_section(args)
        if 'online' in sections:
            rows += online_section(args, workdir)
    print(f'\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; '
          f'{args.rounds} alternating round(s), medians.')
    print('| measurement | official FQL code | flowrl | flowrl speed-up |')
    print('|---|---:|---:|---:|')
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()
