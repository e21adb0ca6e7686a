"""Evaluation wall time and peak memory against the size of the environment pool.

    python benchmarks/eval_pool_size.py --sizes 8,16,24,32,48,67 --rounds 2
    python benchmarks/eval_pool_size.py --sizes 32,67 --max_episode_steps 0 --rounds 1   # full episodes

Runs one evaluation the way a run does (flowrl.engine.evaluation: `--members` x `--episodes`
episodes of an untrained FQL agent at its default size, 4 x 512, on cube-double-play, stepped by
`--workers` processes) once per pool size, each in a fresh process so that its peak memory is its
own, the sizes alternated over `--rounds`. Prints, per size: wall time, environment steps per
second, and the peak resident memory (VmHWM) of the process tree (main process and workers).
`--max_episode_steps` cuts episodes short (a gymnasium TimeLimit) so a curve takes minutes; the
time per environment step, which is what the pool size changes, stays that of full episodes.
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.abspath(__file__)


def peak_rss_bytes(pid) -> int:
    """VmHWM (peak resident set size) of a process, from /proc (Linux)."""
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'no VmHWM for process {pid}')


def short_env(spec, max_episode_steps: int):
    import gymnasium

    from flowrl.suites.ogbench_envs import make_env

    env = make_env(spec)
    return gymnasium.wrappers.TimeLimit(env, max_episode_steps) if max_episode_steps else env


def one_evaluation(args) -> dict:
    """One evaluation with a pool of `args.one_size` environments; its time, steps and memory."""
    import jax

    from flowrl.engine.evaluation import BLOCK, EvalEnvs, make_policy, member_keys, run_episodes
    from flowrl.engine.training import init_members
    from flowrl.registry.agent_loading import load_agent
    from flowrl.suites.ogbench_envs import parse_env_name

    spec = parse_env_name(args.env_name)
    make = functools.partial(short_env, spec, args.max_episode_steps)
    env = make()
    observation, _ = env.reset(seed=0)
    example = dict(observations=np.stack([observation] * 2).astype(np.float32),
                   actions=np.zeros((2,) + env.action_space.shape, np.float32),
                   rewards=np.zeros(2, np.float32), masks=np.ones(2, np.float32), terminals=np.zeros(2, np.float32),
                   next_observations=np.stack([observation] * 2).astype(np.float32))
    env.close()
    agent = load_agent('agents/fql.py')
    seeds = list(range(args.members))
    states, _ = init_members(agent, [agent.get_config()] * args.members, seeds, example)
    policy = make_policy(agent)
    envs = EvalEnvs(make, args.members, args.episodes, args.workers, args.one_size)
    slots = np.zeros((args.members, BLOCK), np.int32)
    blank = np.zeros((args.members, BLOCK) + observation.shape, np.float32)
    jax.block_until_ready(policy(states, blank, member_keys(seeds, 0), slots, slots))  # compiled before the clock
    started = time.perf_counter()
    stats = run_episodes(policy, states, envs, seeds, 1)
    seconds = time.perf_counter() - started
    steps = float(np.sum(stats['episode_length']) * args.episodes)
    memory = peak_rss_bytes(os.getpid()) + sum(peak_rss_bytes(p.pid) for p in envs.pool.processes)
    envs.pool.close()
    jax.block_until_ready(states)
    return dict(size=args.one_size, seconds=seconds, steps=steps, peak_bytes=memory)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--env_name', default='cube-double-play')
    parser.add_argument('--members', type=int, default=8)
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--sizes', default='8,16,24,32,48,67', help='pool sizes, comma-separated')
    parser.add_argument('--max_episode_steps', type=int, default=100, help='0: the environment\'s own limit')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--one_size', type=int, default=0, help=argparse.SUPPRESS)  # a child process's size
    args = parser.parse_args()
    if args.one_size:
        print(json.dumps(one_evaluation(args)))
        return
    sizes = [int(size) for size in args.sizes.split(',')]
    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.env_name}, '
          f'{args.members} members x {args.episodes} episodes, {args.workers} worker(s), episodes cut at '
          f'{args.max_episode_steps or "the env limit"} steps')
    results = {size: [] for size in sizes}
    for round_index in range(args.rounds):
        for size in sizes if round_index % 2 == 0 else sizes[::-1]:
            child = [sys.executable, HERE, f'--one_size={size}'] + [
                f'--{k}={v}' for k, v in vars(args).items() if k not in ('one_size', 'sizes', 'rounds')]
            out = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            result = json.loads(out)
            results[size].append(result)
            print(f'  round {round_index + 1}, pool {size:4d}: {result["seconds"]:7.1f} s, '
                  f'{result["steps"] / result["seconds"]:7.0f} env steps/s, peak {result["peak_bytes"] / 2**30:.2f} GiB',
                  flush=True)
    fastest = min(min(r['seconds'] for r in rows) for rows in results.values())
    print('pool | seconds (each round) | vs fastest | peak GiB')
    for size, rows in results.items():
        best = min(r['seconds'] for r in rows)
        print(f'{size:4d} | ' + ', '.join(f'{r["seconds"]:.1f}' for r in rows)
              + f' | {best / fastest:.2f}x | {max(r["peak_bytes"] for r in rows) / 2**30:.2f}')


if __name__ == '__main__':
    main()
