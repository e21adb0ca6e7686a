"""Evaluate a saved run at several values of its dynamic hyperparameters, without retraining.

    python -m flowrl.run.evaluate_run --run_dir=exp/Debug/qfql_cube-double-play_sd000_... --agent.guidance=0.3,1,3

Every (member of the run) x (value) pair is evaluated in one vmapped program on one batch of
environments. Prints a table and writes it to RUN_DIR/evaluate_<key>_step<N>.csv.
"""

import csv
import io
import itertools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from flowrl import run_files, suites
from flowrl.engine import checkpoints, placement
from flowrl.run import runner
from flowrl.registry.agent_loading import load_agent
from flowrl.run.command import run_command
from flowrl.run.config_overrides import parse_sweeps, sweep_grid
from flowrl.errors import UserError
from flowrl.kit import chunking
from flowrl.engine.evaluation import EvalEnvs, make_diagnostics, make_policy, observation_dtype, run_episodes
from flowrl.run.saved import read_saved_agents, recorded_example, settings_from_run_dir
from flowrl.run.settings import EVAL_EPISODES, resolve_members
from flowrl.engine.training import init_members

def command_flags() -> flags.FlagValues:
    """The command's flags, in a registry of their own (joined to absl's only when the command
    runs: flowrl.run.command): some share main.py's names (--eval_episodes, the start-up flags),
    so a process may import both commands."""
    values = flags.FlagValues()
    flags.DEFINE_string('run_dir', None, 'Run directory written by main.py.', flag_values=values)
    flags.DEFINE_integer('eval_episodes', None, 'Episodes per (member, value); default: the run\'s --eval_episodes.',
                         flag_values=values)
    flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).', flag_values=values)
    flags.DEFINE_integer('eval_workers', None, 'Processes stepping the environments (default: the run\'s setting).',
                         flag_values=values)
    flags.DEFINE_integer('eval_envs', None, 'Environments alive at once (default: the run\'s setting; 0: automatic).',
                         flag_values=values)
    # Launched on every host of a multi-process job, every process reads the checkpoint (orbax reads
    # it together) and evaluates every member on its own host; process 0 alone prints and writes the table.
    placement.define_flags(values, __name__)
    return values


FLAGS = command_flags()


def example_batch(new_env):
    """Zero observations and actions shaped as the run's environments give them: the example of a
    run written before runs recorded the rows their agents were built from (saved.recorded_example)."""
    env = new_env()
    observations = np.zeros((2,) + env.observation_space.shape, env.observation_space.dtype)
    actions = np.zeros((2, env.action_space.shape[-1]), np.float32)
    env.close()
    return dict(observations=observations.astype(observation_dtype(observations)), actions=actions)


def restore_run(run_dir, step=None, log=print):
    """(settings, agent, task, members, stacked states, checkpoint step, environment factory) of a
    saved run; the environment matches the data the run read (flags.json 'data')."""
    settings = settings_from_run_dir(run_dir)
    agent, task = load_agent(settings.agent), suites.resolve(settings.env_name)
    members = resolve_members(settings, agent, task, log=lambda *_: None)
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    make_env = runner.env_factory(settings, task, description.get('data') or {})
    example = recorded_example(description)  # the dataset rows the run's agents were built from
    states, _ = init_members(agent, members.configs, members.seeds,
                             example_batch(make_env) if example is None else example)
    directory = os.path.join(run_dir, run_files.CHECKPOINT_DIR)
    if not checkpoints.steps(directory):
        raise UserError(f'{run_dir} has no complete checkpoint to evaluate.')
    states, step = read_saved_agents(run_dir, states, step, log)
    return settings, agent, task, members, states, step, make_env


def expand_members(states, labels, values: list[dict]):
    """Each member once per value combination: states stacked [member x value], with labels."""
    size = len(labels)
    grid = list(itertools.product(range(size), range(len(values))))
    expanded = jax.tree.map(lambda x: x[jnp.asarray([m for m, _ in grid])], states)
    hparams = dict(expanded.hparams)
    for key in values[0]:
        hparams[key] = jnp.asarray([values[v][key] for _, v in grid], jnp.float32)
    new_labels = [dict(labels[m], **values[v]) for m, v in grid]
    return expanded.replace(hparams=hparams), new_labels


def evaluate_values(run_dir, overrides: dict, episodes=None, step=None, workers=None, max_envs=None, log=print):
    settings, agent, task, members, states, step, make_env = restore_run(run_dir, step, log)
    config = members.configs[0]
    sweeps = parse_sweeps([f'agent.{k}={v}' for k, v in overrides.items()], config, agent.DYNAMIC_KEYS, settings.agent)
    for key, _ in sweeps:
        if key not in states.hparams:
            raise UserError(f'{key!r} is not a state leaf of {settings.agent} ({", ".join(states.hparams)}); '
                            'only those can change at evaluation time.')
    values = sweep_grid(sweeps)
    states, labels = expand_members(states, members.labels, values)
    diverged = run_files.read_diverged(run_dir)
    if diverged:
        log(f'Leaving out member(s) {", ".join(map(str, sorted(diverged)))}: they diverged in training.')
    evaluated = np.asarray([label['member'] not in diverged for label in labels])
    episodes = episodes or settings.eval_episodes or EVAL_EPISODES
    log(f'Evaluating {len(labels)} (member, value) pairs x {episodes} episodes at update {step:,} of {run_dir}.')
    workers = runner.eval_workers(settings.eval_workers if workers is None else workers)
    max_envs = settings.eval_envs if max_envs is None else max_envs
    envs = EvalEnvs(make_env, len(labels), episodes, workers, max_envs)
    log(envs.describe())
    stats = run_episodes(make_policy(agent), states, envs, [label['seed'] for label in labels], step,
                         make_diagnostics(agent), evaluated,
                         chunking.action_horizon(agent, members.configs[0]))  # acts on chunks as trained
    stats.pop('env_steps_per_s')
    stats = dict(score=task.episode_scores(stats['episode_return'], stats['success']), **stats)
    rows = [dict(step=step, **label, **{k: float(v[i]) for k, v in stats.items()}, episodes=episodes)
            for i, label in enumerate(labels) if evaluated[i]]
    name = '_'.join(key for key, _ in sweeps) or 'checkpoint'
    path = os.path.join(run_dir, f'evaluate_{name}_step{step}.csv')
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if jax.process_index() == 0:  # launched on every host: one table
        run_files.write_atomic(path, buffer.getvalue())
    log(buffer.getvalue().rstrip())
    log(f'Written to {path}.')
    return rows


def main(argv, overrides):
    if len(argv) > 1:
        raise UserError(f'Unexpected argument(s): {" ".join(argv[1:])}.')
    if not FLAGS.run_dir:
        raise UserError('Pass the run to evaluate: --run_dir=RUN_DIR.')
    for name, meaning in (('eval_workers', 'one per core'), ('eval_envs', 'chosen from cores and memory')):
        if FLAGS[name].value is not None and FLAGS[name].value < 0:
            raise UserError(f'--{name} must be zero ({meaning}) or a positive integer, got {FLAGS[name].value}.')
    placement.join(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    evaluate_values(FLAGS.run_dir, overrides, FLAGS.eval_episodes, FLAGS.step, FLAGS.eval_workers, FLAGS.eval_envs,
                    log=print if jax.process_index() == 0 else lambda *_: None)


def run():
    run_command(main, FLAGS)


if __name__ == '__main__':
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    run()
