"""One training run from settings to results: the library behind main.py.

    settings -> agent, env, config (presets + overrides), members (sweep grid x seeds)
             -> dataset on the device -> stacked member states
             -> chunks of scanned updates | evaluation | checkpoints | CSV logs
             -> results.json (final score = mean success of the last three evaluations)
"""

import dataclasses
import functools
import os
import time

import jax
import numpy as np
import tqdm

from flowrl import checkpoints, run_files
from flowrl.agent_loading import agent_name, load_agent
from flowrl.config_overrides import apply_overrides, check_config, parse_sweeps, sweep_grid
from flowrl.errors import TrainingDiverged, UserError
from flowrl.envs import make_env, ogbench_version, parse_env_name, resolve_success_timing
from flowrl.evaluation import EvalEnvs, final_score, make_diagnostics, make_policy, run_episodes
from flowrl.presets import apply_presets, presets_for
from flowrl.training import (NONFINITE_KEY, ChunkRunner, chunk_boundaries, init_members, member_shardings,
                             resolve_member_execution)


@dataclasses.dataclass
class RunSettings:
    agent: str = 'agents/fql.py'
    env_name: str = 'cube-double-play-singletask-v0'
    agent_overrides: dict = dataclasses.field(default_factory=dict)  # raw --agent.KEY=VALUE strings
    sweep: list = dataclasses.field(default_factory=list)  # ['agent.alpha=3,10,30', ...]
    seed: int = 0
    num_seeds: int = 1
    offline_steps: int = 1_000_000
    log_interval: int = 5_000
    eval_interval: int = 100_000
    eval_episodes: int = 50
    eval_workers: int = 0  # processes stepping the evaluation envs; 0: one per core
    save_interval: int = 1_000_000
    save_dir: str = 'exp/'
    run_group: str = 'Debug'
    sparse: bool = False
    dataset_path: str | None = None
    dataset_dir: str = '~/.ogbench/data'
    dataset_episodes: int | None = None
    dataset_workers: int | None = None
    member_execution: str = 'auto'  # how the members on one device run: auto, vmap or map (flowrl.training)
    success_timing: str | None = None  # 'pre' | 'post': when OGBench computes success; None: OGBench's default


@dataclasses.dataclass
class Members:
    """The independent runs trained side by side: one per (sweep point, seed)."""
    configs: list  # resolved agent config per member
    labels: list  # dict(member=i, seed=s, **swept values) per member

    @property
    def seeds(self):
        return [label['seed'] for label in self.labels]


def check_settings(s: RunSettings) -> None:
    positive = dict(offline_steps=s.offline_steps, log_interval=s.log_interval, num_seeds=s.num_seeds)
    non_negative = dict(eval_interval=s.eval_interval, eval_episodes=s.eval_episodes,
                        save_interval=s.save_interval, eval_workers=s.eval_workers)
    for name, value in positive.items():
        if value <= 0:
            raise UserError(f'--{name} must be a positive integer, got {value}.')
    for name, value in non_negative.items():
        if value < 0:
            raise UserError(f'--{name} must be zero (off) or a positive integer, got {value}.')
    if s.seed < 0:
        raise UserError(f'--seed must be a non-negative integer, got {s.seed}.')
    if s.dataset_episodes is not None and s.dataset_episodes <= 0:
        raise UserError(f'--dataset_episodes must be a positive integer, got {s.dataset_episodes}.')


def eval_workers(requested: int) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def resolve_members(s: RunSettings, agent, spec, log=print) -> Members:
    """Agent config = defaults <- env presets <- command-line overrides; then the sweep grid x seeds."""
    source = s.agent
    config = apply_overrides(agent.get_config(), s.agent_overrides, source)
    sweeps = parse_sweeps(s.sweep, config, agent.DYNAMIC_KEYS, source)
    keep = set(s.agent_overrides) | {key for key, _ in sweeps}
    applied = apply_presets(config, presets_for(agent_name(s.agent), spec), keep)
    check_config(config, source)
    if applied:
        log(f'Presets for {spec.family} (configs/{agent_name(s.agent)}.py): '
            + ', '.join(f'{k}={v}' for k, v in applied.items()))
    configs, labels = [], []
    for point in sweep_grid(sweeps):
        for offset in range(s.num_seeds):
            member_config = apply_overrides(config, {}, source)
            for key, value in point.items():
                member_config[key] = value
            configs.append(member_config)
            labels.append(dict(member=len(labels), seed=s.seed + offset, **point))
    return Members(configs, labels)


def load_dataset(s: RunSettings, spec, log=print):
    from flowrl.data import load_singletask_data

    data = load_singletask_data(spec.name, dataset_path=s.dataset_path, dataset_dir=s.dataset_dir,
                                dataset_episodes=s.dataset_episodes, workers=s.dataset_workers, log=log)
    train = dict(data.train)
    if s.sparse:
        # --sparse of the Q-chunking repository (github.com/ColinQiyangLi/qc; the FQL repository
        # has no such flag): -1 on every step that is not fully successful, 0 otherwise.
        train['rewards'] = (train['rewards'] != 0.0).astype(np.float32) * -1.0
    log(f'Dataset: {data.source}; {len(train["actions"]):,} transitions.')
    return train


def env_factory(s: RunSettings, spec):
    """A picklable () -> evaluation env with the run's success timing."""
    return functools.partial(make_env, spec, success_timing=resolve_success_timing(spec, s.success_timing))


def ogbench_description(s: RunSettings, spec) -> dict:
    """What decides how success is counted, recorded with the run (ALGORITHMS.md, "Evaluation timing")."""
    return dict(ogbench_version=ogbench_version(), success_timing=resolve_success_timing(spec, s.success_timing))


def new_run_dir(s: RunSettings, spec) -> str:
    stamp = time.strftime('%Y%m%d_%H%M%S')
    name = f'{agent_name(s.agent)}_{spec.short_name}_sd{s.seed:03d}_{stamp}'
    path = os.path.join(os.path.expanduser(s.save_dir), s.run_group, name)
    suffix = 0
    while os.path.exists(path if not suffix else f'{path}_{suffix}'):
        suffix += 1
    path = path if not suffix else f'{path}_{suffix}'
    os.makedirs(path)
    return path


class Run:
    """Holds everything a run needs between chunks; `train()` runs it to the end."""

    def __init__(self, settings: RunSettings, run_dir: str | None = None, log=print):
        check_settings(settings)
        self.s, self.log = settings, log
        self.execution = resolve_member_execution(settings.member_execution)
        self.agent = load_agent(settings.agent)
        self.spec = parse_env_name(settings.env_name)
        self.make_env = env_factory(settings, self.spec)
        self.members = resolve_members(settings, self.agent, self.spec, log)
        self._print_config()
        if run_dir is None:
            run_files.require_writable_dir(os.path.join(os.path.expanduser(settings.save_dir), settings.run_group),
                                           f'--save_dir {settings.save_dir!r}')
        else:
            run_files.require_writable_dir(run_dir, f'The run directory {run_dir!r}')
        dataset = load_dataset(settings, self.spec, log)
        # Optional contract hook: fields an agent derives once from the whole dataset (ReBRAC's next_actions).
        dataset = getattr(self.agent, 'prepare_dataset', lambda d: d)(dataset)
        self.obs_dim = dataset['observations'].shape[-1]
        example = {k: v[:2] for k, v in dataset.items()}
        member_sharding, replicated = member_shardings(len(self.members.configs))
        self.dataset = jax.device_put(dataset, replicated)
        states, rngs = init_members(self.agent, self.members.configs, self.members.seeds, example)
        self.states = jax.device_put(states, member_sharding)
        self.rngs = jax.device_put(rngs, member_sharding)
        self.step = 0
        self.run_dir = run_dir or new_run_dir(settings, self.spec)
        self.train_log = run_files.CsvLog(os.path.join(self.run_dir, run_files.TRAIN_CSV))
        self.eval_log = run_files.CsvLog(os.path.join(self.run_dir, run_files.EVAL_CSV))
        self.chunks = ChunkRunner(self.agent, self.members.configs[0].batch_size, self.execution,
                                  self.members.configs[0])
        self.policy = make_policy(self.agent, self.execution)
        self.diagnostics = make_diagnostics(self.agent, self.execution)
        self.eval_envs = None
        if run_dir is None:
            run_files.write_json(os.path.join(self.run_dir, run_files.FLAGS_FILE), self._description())

    def _print_config(self):
        config = self.members.configs[0]
        self.log(f'Agent {self.s.agent} on {self.spec.name}; {len(self.members.labels)} member(s) '
                 f'on {jax.local_device_count()} {jax.default_backend()} device(s), '
                 f'member execution: {self.execution} (--member_execution).')
        self.log('Config: ' + ', '.join(f'{k}={v}' for k, v in config.items()))
        if self.s.sweep:
            self.log('Members: ' + '; '.join(str(label) for label in self.members.labels))

    def _description(self) -> dict:
        return dict(settings=dataclasses.asdict(self.s), env=self.spec.name, members=self.members.labels,
                    configs=[c.to_dict() for c in self.members.configs], jax_backend=jax.default_backend(),
                    **ogbench_description(self.s, self.spec))

    # -- checkpoints ---------------------------------------------------------------------
    @property
    def checkpoint_dir(self):
        return os.path.join(self.run_dir, run_files.CHECKPOINT_DIR)

    def save(self):
        checkpoints.save(self.checkpoint_dir, self.step, dict(states=self.states, rngs=self.rngs))

    def restore(self):
        step = checkpoints.latest_step(self.checkpoint_dir)
        if step is None:
            raise UserError(f'{self.run_dir} has no complete checkpoint to resume from.')
        tree = checkpoints.restore(self.checkpoint_dir, dict(states=self.states, rngs=self.rngs), step)
        self.states, self.rngs, self.step = tree['states'], tree['rngs'], step
        self.train_log.truncate_after(step)
        self.eval_log.truncate_after(step)

    # -- training ------------------------------------------------------------------------
    def _rows(self, values: dict) -> list[dict]:
        return [dict(step=self.step, **label, **{k: float(v[i]) for k, v in values.items()})
                for i, label in enumerate(self.members.labels)]

    def _check_finite(self, summary, chunk_start):
        bad = np.asarray(summary[NONFINITE_KEY])
        for i in np.nonzero(bad >= 0)[0]:
            names = [k for k, v in summary.items() if k != NONFINITE_KEY and not np.isfinite(v[i])]
            raise TrainingDiverged(
                f'Training diverged: member {self.members.labels[i]} produced non-finite '
                f'{", ".join(names) or "metrics"} at update {chunk_start + int(bad[i]) + 1}; '
                f'the last checkpoint in {self.checkpoint_dir} is untouched.')

    def evaluate(self):
        if self.eval_envs is None:
            self.eval_envs = EvalEnvs(self.make_env, len(self.members.labels),
                                      self.s.eval_episodes, eval_workers(self.s.eval_workers))
        stats = run_episodes(self.policy, self.states, self.eval_envs, self.members.seeds, self.step,
                             self.diagnostics)
        self.eval_log.append(self._rows(stats))
        return stats

    def train(self) -> dict:
        s = self.s
        bar = tqdm.tqdm(total=s.offline_steps, initial=self.step, unit='upd', dynamic_ncols=True,
                        smoothing=0.1, desc=agent_name(s.agent))
        last_success, unlogged = None, []  # unlogged: (updates, chunk means) since the last train.csv row
        phase_starts = [start for start, _ in self.chunks.phases]
        for stop in chunk_boundaries(self.step, s.offline_steps, (s.log_interval, s.eval_interval, s.save_interval),
                                     phase_starts):
            start = self.step
            self.states, self.rngs, summary = self.chunks(self.states, self.rngs, self.dataset, stop - start, start)
            summary = jax.device_get(summary)
            self.step = stop
            self._check_finite(summary, start)
            bar.update(stop - start)
            at_end = stop == s.offline_steps
            unlogged.append((stop - start, {k: v for k, v in summary.items() if k != NONFINITE_KEY}))
            if stop % s.log_interval == 0 or at_end:
                self.train_log.append(self._rows(mean_over_chunks(unlogged)))
                unlogged = []
            if s.eval_episodes and s.eval_interval and (stop % s.eval_interval == 0 or at_end):
                last_success = float(np.mean(self.evaluate()['success']))
            if (s.save_interval and stop % s.save_interval == 0) or at_end:
                self.save()
            bar.set_postfix(self._postfix(summary, last_success), refresh=False)
        bar.close()
        return self.write_results()

    @staticmethod
    def _postfix(summary, success):
        shown = {k.split('/')[-1]: float(np.mean(v)) for k, v in summary.items()
                 if k in ('critic/loss', 'actor/loss')}
        if success is not None:
            shown['success'] = success
        return {k: f'{v:.3g}' for k, v in shown.items()}

    # -- results -------------------------------------------------------------------------
    def write_results(self) -> dict:
        results = summarize_results(self.eval_log.read(), self.members.labels)
        results.update(env=self.spec.name, agent=self.s.agent, steps=self.step, run_dir=self.run_dir,
                       **ogbench_description(self.s, self.spec))
        run_files.write_json(os.path.join(self.run_dir, run_files.RESULTS_FILE), results)
        for line in results_lines(results):
            self.log(line)
        return results


def mean_over_chunks(chunks) -> dict:
    """Per-update means over several chunks, from each chunk's (number of updates, means)."""
    total = sum(n for n, _ in chunks)
    return {k: sum(n * np.asarray(means[k]) for n, means in chunks) / total for k in chunks[0][1]}


def summarize_results(eval_rows: list[dict], labels: list[dict]) -> dict:
    """Per-member final score (mean success of the last 3 evaluations) and, per sweep point,
    mean and std over seeds."""
    members = []
    for label in labels:
        rows = sorted((r for r in eval_rows if int(r['member']) == label['member']), key=lambda r: int(r['step']))
        history = [float(r['success']) for r in rows]
        members.append(dict(**label, final_score=final_score(history),
                            evaluations=[dict(step=int(r['step']), success=float(r['success']),
                                              episode_return=float(r['episode_return'])) for r in rows]))
    groups = {}
    for member in members:
        point = tuple((k, v) for k, v in member.items()
                      if k not in ('member', 'seed', 'final_score', 'evaluations'))
        groups.setdefault(point, []).append(member['final_score'])
    aggregate = [dict(**dict(point), num_seeds=len(scores), mean=float(np.mean(scores)),
                      std=float(np.std(scores))) for point, scores in groups.items()]
    return dict(score='mean success of the last 3 evaluations', members=members, aggregate=aggregate)


def results_lines(results: dict) -> list[str]:
    lines = [f'Final score ({results["score"]}):']
    for m in results['members']:
        extra = ' '.join(f'{k}={v}' for k, v in m.items() if k not in ('member', 'seed', 'final_score', 'evaluations'))
        lines.append(f'  seed {m["seed"]} {extra}: {100 * m["final_score"]:.1f}%')
    for a in results['aggregate']:
        extra = ' '.join(f'{k}={v}' for k, v in a.items() if k not in ('num_seeds', 'mean', 'std'))
        lines.append(f'  {extra or "all"}: {100 * a["mean"]:.1f} ± {100 * a["std"]:.1f}% over {a["num_seeds"]} seed(s)')
    return lines


def settings_from_run_dir(run_dir: str) -> RunSettings:
    path = os.path.join(run_dir, run_files.FLAGS_FILE)
    if not os.path.isfile(path):
        raise UserError(f'Cannot resume {run_dir!r}: it is not a flowrl run directory (no {run_files.FLAGS_FILE}).')
    try:
        return RunSettings(**run_files.read_json(path)['settings'])
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UserError(f'{path} is unreadable or corrupt ({type(error).__name__}: {error}); it is written once '
                        'when a run starts, so restore it from a copy or start a new run.') from None


def resume(run_dir: str, log=print) -> dict:
    """Continues the run in `run_dir` from its latest checkpoint, exactly as if uninterrupted."""
    run = Run(settings_from_run_dir(run_dir), run_dir=run_dir, log=log)
    run.restore()
    log(f'Resumed {run_dir} at update {run.step:,}.')
    return run.train()
