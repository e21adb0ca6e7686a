"""Peak memory of evaluation's environment pool: members x episodes against the pool flowrl keeps.

    python benchmarks/eval_memory.py --members 8 --episodes 50            # the default pool size
    python benchmarks/eval_memory.py --members 1 --episodes 10 --eval_envs 10

Builds the evaluation environments of `--members x --episodes` episodes the way a run does
(flowrl.engine.evaluation.EvalEnvs: a pool sized by `default_env_count` unless `--eval_envs` is given,
stepped by `--workers` processes), resets every environment and takes `--steps` steps, then
prints the peak resident memory (VmHWM) of this process and of each worker, their sum, and what
one environment per (member, episode) would have needed at the measured cost per environment.
"""

import argparse
import functools
import os
import platform

import numpy as np

from flowrl.engine.env_pool import default_env_count
from flowrl.suites.ogbench_envs import make_env, parse_env_name
from flowrl.engine.evaluation import EvalEnvs


def peak_rss_bytes(pid) -> int:
    """VmHWM (peak resident set size) of a process, from /proc (Linux)."""
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'no VmHWM for process {pid}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--env_name', default='cube-double-play')
    parser.add_argument('--members', type=int, default=8)
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--eval_envs', type=int, default=0, help='pool size (0: the default, as main.py)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--steps', type=int, default=10)
    args = parser.parse_args()
    spec = parse_env_name(args.env_name)
    needed = args.members * args.episodes
    base = peak_rss_bytes(os.getpid())
    envs = EvalEnvs(functools.partial(make_env, spec), args.members, args.episodes, args.workers, args.eval_envs)
    size = envs.size
    envs.pool.reset(np.zeros(size, np.uint32), np.ones(size, bool))
    action_dim = make_env(spec).action_space.shape[0]
    for _ in range(args.steps):
        envs.pool.step(np.zeros((size, action_dim), np.float32), np.ones(size, bool))
    workers = [peak_rss_bytes(p.pid) for p in envs.pool.processes]
    main_peak = peak_rss_bytes(os.getpid())
    total = main_peak + sum(workers)
    per_env = (total - base) / size
    gib = 2 ** 30
    print(f'machine: {platform.machine()}, {os.cpu_count()} cores; {args.env_name}, {args.members} members x '
          f'{args.episodes} episodes = {needed} episodes; default pool here: {default_env_count(needed, args.workers)}')
    print(f'pool: {size} environments on {max(1, len(workers))} process(es); peak RSS: main {main_peak / gib:.2f} GiB'
          + ''.join(f', worker {w / gib:.2f} GiB' for w in workers) + f'; total {total / gib:.2f} GiB')
    print(f'~{per_env / 2**20:.0f} MiB per environment; one environment per episode ({needed}) would need '
          f'~{(base + per_env * needed) / gib:.1f} GiB')
    envs.pool.close()


if __name__ == '__main__':
    main()
