"""One training run from settings to results: the library behind main.py.

    settings -> agent, task (flowrl.suites), config (presets + overrides), members (sweep grid x seeds)
             -> dataset on the device -> stacked member states
             -> chunks of scanned updates | evaluation | checkpoints | CSV logs
             -> results.json (final score = mean score of the last three evaluations: success on
                OGBench, D4RL's normalised return on D4RL)
"""

import dataclasses
import os
import time

import jax
import numpy as np

from flowrl import disk, run_files, stopping, suites
from flowrl.engine import checkpoints, replay
from flowrl.kit import pixels
from flowrl.kit.agent_loading import agent_name, load_agent
from flowrl.errors import TrainingDiverged, UserError
from flowrl.engine.evaluation import EvalEnvs, final_score, make_diagnostics, make_policy, member_keys, run_episodes
from flowrl.run.loggers import Loggers, parse_loggers
from flowrl.engine.online import EXPLORATION_KEYS, MemberEnvs, OnlineProgram, empty_buffers
from flowrl.engine.placement import Placement, tell_checkpoints_with, whole_array_sharding, whole_value
from flowrl.run.progress import ChunkPacer, Progress
from flowrl.engine.replay import online_capacity
from flowrl.run.settings import (RESUME_CHANGES, Members, RunSettings,  # noqa: F401 (re-exported)
                             check_settings, fit_schedules, resolve_members)
from flowrl.engine.training import (ChunkRunner, chunk_boundaries, init_members, make_validation_metrics, phase_at,
                             resolve_member_execution)


def eval_workers(requested: int) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def load_dataset(s: RunSettings, task, log=print) -> suites.LoadedData:
    """The task's data, checked, with rewards as the run defines them (both splits)."""
    data = task.load(s, log)
    reward = task.reward_function(s)
    splits = [None if split is None else dict(split, rewards=reward(split['rewards'])) for split in data[:2]]
    for split, name in zip(splits, ('training', 'validation')):
        if split is not None:
            suites.check_transitions(split, f'The {name} data of {data.source}')
    validation = '' if splits[1] is None else f' (validation: {len(splits[1]["actions"]):,})'
    log(f'Dataset: {data.source}; {len(splits[0]["actions"]):,} transitions{validation}.')
    return data._replace(train=splits[0], val=splits[1])


def env_factory(s: RunSettings, task, data_record: dict):
    """A picklable () -> evaluation environment for the data the run read."""
    return task.env_factory(s, data_record)


def new_run_dir(s: RunSettings, task) -> str:
    stamp = time.strftime('%Y%m%d_%H%M%S')
    name = f'{agent_name(s.agent)}_{task.short_name}_sd{s.seed:03d}_{stamp}'
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
        # Every process of a multi-process run prints its placement line; process 0 alone the rest.
        self.placement = None
        writes = jax.process_index() == 0
        self.s, self.log = settings, log if writes else (lambda *_: None)
        log = self.log
        self.execution = resolve_member_execution(settings.member_execution)
        self.agent = load_agent(settings.agent)
        self.task = suites.resolve(settings.env_name)
        self.total_steps = settings.offline_steps + settings.online_steps
        self.restore_checkpoint, self.first_agent_step = restore_start(settings, log)
        members = resolve_members(settings, self.agent, self.task, log)
        self.members = fit_schedules(self.agent, members, self.first_agent_step,
                                     self.first_agent_step + self.total_steps, log)
        self.task.check_settings(settings, self.members.configs)
        self.placement = Placement.build(len(self.members.configs))
        self._print_config()
        if run_dir is None:
            run_files.require_writable_dir(os.path.join(os.path.expanduser(settings.save_dir), settings.run_group),
                                           f'--save_dir {settings.save_dir!r}')
        else:
            run_files.require_writable_dir(run_dir, f'The run directory {run_dir!r}')
        dataset, validation, source, self.data_record = load_dataset(settings, self.task, log)
        self.placement.require_same_data(dataset, source)
        if run_dir is not None:
            require_same_data(run_dir, self.data_record)
        self.make_env = env_factory(settings, self.task, self.data_record)
        # Optional contract hook: fields an agent derives once from the whole dataset (ReBRAC's next_actions).
        prepare = getattr(self.agent, 'prepare_dataset', lambda d: d)
        dataset = prepare(dataset)
        example = pixels.gather_transitions(dataset, np.arange(2))
        self.observation_dtype = example['observations'].dtype  # what the policy is compiled for everywhere
        placement = self.placement
        self.dataset = jax.device_put(dataset, placement.replicated)
        # The validation split (when the dataset has one): validation/<metric> columns in train.csv;
        # computed by each process for its own members.
        self.validation = None if validation is None else jax.device_put(prepare(validation), placement.local_replicated)
        # Each process makes the states of its own members (inactive ones: copies of member 0's).
        held = placement.local_members
        configs, self.seeds = placement.padded_list(self.members.configs), placement.padded_list(self.members.seeds)
        states, rngs = init_members(self.agent, [configs[i] for i in held], [self.seeds[i] for i in held], example,
                                    rows=pixels.num_transitions(dataset), log=log)
        if settings.restore_path is not None:
            states = starting_agents(settings.restore_path, self.restore_checkpoint, states, log,
                                     keep_step=settings.restore_schedule == 'continue',
                                     num_members=len(self.members.labels), members=held)
        self.states, self.rngs = placement.put_local(states), placement.put_local(rngs)
        self.step = 0
        self.online = None  # member-stacked online replay buffers, from the first online step
        self.online_envs, self.actions = None, None  # the members' environments and their next actions
        self.online_program = OnlineProgram(self.agent, self.members.configs[0].batch_size, self.execution,
                                            bool(settings.balanced_sampling), settings.buffer_size,
                                            placement=placement)
        self._require_disk_space(run_dir)
        self.run_dir = run_dir or placement.on_writer(lambda: new_run_dir(settings, self.task))
        tell_checkpoints_with(self._checkpoint_note)
        self.train_log = run_files.CsvLog(os.path.join(self.run_dir, run_files.TRAIN_CSV))
        self.eval_log = run_files.CsvLog(os.path.join(self.run_dir, run_files.EVAL_CSV))
        self.chunks = ChunkRunner(self.agent, self.members.configs[0].batch_size, self.execution,
                                  self.members.configs[0], p_aug=settings.p_aug or 0.0, placement=placement)
        self._print_phases()
        self.validation_metrics = make_validation_metrics(self.chunks.batch_size, self.execution, self.chunks.p_aug)
        self.policy = make_policy(self.agent, self.execution)
        self.diagnostics = make_diagnostics(self.agent, self.execution)
        self.eval_envs = None
        self.diverged = {}  # member index -> dict(diverged_at_update, diverged_metrics)
        self.alive = placement.active.copy()  # members still training (not diverged; inactive ones never)
        if run_dir is None and placement.writes_files:
            run_files.write_json(os.path.join(self.run_dir, run_files.FLAGS_FILE), self._description())
        self.loggers = Loggers(parse_loggers(settings.logger) if placement.writes_files else [], self.run_dir,
                               self.members.labels, [c.to_dict() for c in self.members.configs],
                               dataclasses.asdict(settings), log)

    def _print_config(self):
        config = self.members.configs[0]
        if self.placement.multi_process:
            print(self.placement.describe())  # one line from every process
        self.log(f'Agent {self.s.agent} on {self.task.name}; {len(self.members.labels)} member(s) '
                 f'on {jax.local_device_count()} {jax.default_backend()} device(s)'
                 + (f' per process x {self.placement.process_count} processes' if self.placement.multi_process else '')
                 + f', member execution: {self.execution} (--member_execution).')
        pads = self.placement.padded - self.placement.num_members
        if pads and not self.placement.multi_process:
            self.log(f'{pads} inactive member(s) pad the {self.placement.num_members} so that every device used '
                     f'holds {self.placement.padded // self.placement.mesh.devices.size}; they are never trained '
                     'or logged.')
        self.log('Config: ' + ', '.join(f'{k}={v}' for k, v in config.items()))
        if self.s.sweep:
            self.log('Members: ' + '; '.join(str(label) for label in self.members.labels))

    def _print_phases(self):
        if len(self.chunks.phases) == 1:
            return
        first, last = self.first_agent_step, self.first_agent_step + self.total_steps
        self.log('Phases start at agent step ' + ', '.join(f'{start:,} ({update.__name__})'
                                                           for start, update in self.chunks.phases)
                 + f'; this run trains agent steps {first:,} to {last:,}.')

    def _description(self) -> dict:
        return dict(settings=dataclasses.asdict(self.s), env=self.task.name, members=self.members.labels,
                    configs=[c.to_dict() for c in self.members.configs], jax_backend=jax.default_backend(),
                    data=self.data_record, placement=self._placement_record(), **self.task.description(self.s))

    def _placement_record(self) -> dict:
        """How the members were laid out: a checkpoint's arrays hold `padded_members` rows."""
        return dict(processes=self.placement.process_count, devices=int(self.placement.mesh.devices.size),
                    padded_members=self.placement.padded)

    # -- checkpoints ---------------------------------------------------------------------
    @property
    def checkpoint_dir(self):
        return os.path.join(self.run_dir, run_files.CHECKPOINT_DIR)

    def _carry(self, step: int, online, episodes) -> dict:
        """What a checkpoint at `step` holds: states and keys, and once online transitions exist the
        online buffers and the members' running episodes (`_episodes`), which go on across
        checkpoints and evaluations as in the authors' loop."""
        carry = dict(states=self.states, rngs=self.rngs)
        if step > self.s.offline_steps:
            carry.update(online=online, episodes=episodes)
        return carry

    def _episodes(self) -> dict:
        """The members' running episodes (MemberEnvs.record: reset seeds, actions so far, observations)
        and the actions they take next: what a resumed run replays to continue them exactly. Each
        process records the episodes of its own members' environments."""
        return self.placement.put_local(dict(self.online_envs.record(),
                                             next_actions=np.asarray(self.actions, np.float32)))

    def save(self, attachments=None):
        online = self.step > self.s.offline_steps
        checkpoints.save(self.checkpoint_dir, self.step,
                         self._carry(self.step, self.online, self._episodes() if online else None), attachments,
                         writes_manifest=self.placement.writes_files)
        self.placement.barrier(f'saved {self.step}')  # the manifest is written before anyone goes on

    def restore(self):
        """Restores the newest checkpoint that passes verification (setting newer, damaged ones
        aside) and the members that had diverged by then; drops log rows written after it."""
        for name in checkpoints.remove_unfinished(self.checkpoint_dir):
            self.log(f'Removed {name} from {self.checkpoint_dir}: a checkpoint whose save was cut short.')
        if not checkpoints.steps(self.checkpoint_dir):
            raise UserError(f'{self.run_dir} has no complete checkpoint to resume from.')
        self._require_same_padding()
        # Process 0 checks the checkpoints and sets damaged ones aside; every process reads its choice.
        step = self.placement.on_writer(lambda: checkpoints.pick_step(self.checkpoint_dir, log=self.log,
                                                                      set_aside=True))
        online = step > self.s.offline_steps
        if online:
            self._make_online_envs()
        like = self._carry(step, self._abstract_online(), self._abstract_episodes() if online else None)
        tree = checkpoints.read(self.checkpoint_dir, like, step)
        self.states, self.rngs, self.step = tree['states'], tree['rngs'], step
        self.online = tree.get('online')
        if online:
            episodes = jax.device_get(self.placement.local(tree['episodes']))
            self.actions = np.asarray(episodes.pop('next_actions'))
            self.online_envs.replay(episodes)
        self.diverged = {i: record for i, record in run_files.read_diverged(self.run_dir).items()
                         if record['diverged_at_update'] <= step}
        if self.placement.writes_files:
            self.train_log.truncate_after(step)
            self.eval_log.truncate_after(step)
            run_files.write_diverged(self.run_dir, self.diverged)
        self.alive[list(self.diverged)] = False
        steps = np.asarray(self.placement.gather(getattr(self.states, 'step', np.zeros(0))))[self.alive]
        if steps.size:  # the agents' own count says where their schedules are (a --restore_path run's offset)
            self.first_agent_step = int(steps.max()) - step

    def _require_same_padding(self):
        """A checkpoint holds one row per member, inactive ones included: it restores onto any
        process count that pads the members to the same number (e.g. 4 members on 1, 2 or 4
        processes with one device each), and is refused on another."""
        description = run_files.read_json(os.path.join(self.run_dir, run_files.FLAGS_FILE))
        saved = description.get('placement') or {}
        rows = saved.get('padded_members', len(description['members']))
        if rows != self.placement.padded:
            raise UserError(f'{self.run_dir} was trained with {saved.get("processes", 1)} process(es) and '
                            f'{saved.get("devices", "?")} device(s), which hold its {self.placement.num_members} '
                            f'members as {rows} rows; {self.placement.process_count} process(es) with '
                            f'{self.placement.mesh.devices.size} device(s) would hold {self.placement.padded}: resume '
                            'it with the process and device counts it started with.')

    def _checkpoint_note(self) -> str:
        step = checkpoints.latest_step(self.checkpoint_dir)
        if step is None:
            return 'no checkpoint was saved before it'
        return f'the latest checkpoint is update {step:,} in {self.checkpoint_dir}'

    # -- training ------------------------------------------------------------------------
    def _rows(self, values: dict) -> list[dict]:
        """One row per member still training (diverged members are no longer logged)."""
        return [dict(step=self.step, **label, **{k: float(v[i]) for k, v in values.items()})
                for i, label in enumerate(self.members.labels) if self.alive[i]]

    def _record_divergence(self, means: dict, first_bad, chunk_start: int):
        """Members whose metrics turned non-finite in this chunk (`first_bad` >= 0: the program
        kept their pre-chunk state): in a sweep they are recorded and frozen and the others go
        on; a single member, or the last ones alive, stop the run."""
        bad = np.asarray(first_bad)
        new = [i for i in np.nonzero(bad >= 0)[0] if self.alive[i]]
        for i in new:
            names = [k for k, v in means.items() if not np.isfinite(v[i])]
            self.diverged[int(i)] = dict(diverged_at_update=chunk_start + int(bad[i]) + 1,
                                         diverged_metrics=names or ['metrics'])
        if not new:
            return
        described = '; '.join(f'member {self.members.labels[i]} produced non-finite '
                              f'{", ".join(self.diverged[i]["diverged_metrics"])} at update '
                              f'{self.diverged[i]["diverged_at_update"]}' for i in new)
        if len(new) == self.alive.sum():
            raise TrainingDiverged(f'Training diverged: {described}; {self._checkpoint_note()}.')
        self.alive[new] = False
        if self.placement.writes_files:
            run_files.write_diverged(self.run_dir, self.diverged)
        self.log(f'Diverged: {described}; frozen at update {chunk_start:,} and left out of evaluations and '
                 f'results, the other {int(self.alive.sum())} member(s) go on.')

    def _evaluation_due(self, step: int) -> bool:
        s = self.s
        return bool(s.eval_episodes and s.eval_interval and step > 0
                    and (step % s.eval_interval == 0 or step == self.total_steps))

    def evaluate(self):
        """Each process evaluates its own members on its own environments; the per-member
        statistics of every process reach every process (one gather)."""
        held = self.placement.local_members
        if self.eval_envs is None:
            self.eval_envs = EvalEnvs(self.make_env, len(held), self.s.eval_episodes,
                                      eval_workers(self.s.eval_workers), self.s.eval_envs, self.observation_dtype)
            self.log(self.eval_envs.describe())
        stats = run_episodes(self.policy, self.placement.local(self.states), self.eval_envs,
                             [self.seeds[i] for i in held], self.step, self.diagnostics, self.alive[held])
        stats = self.placement.gather(stats)
        stats = dict(score=self.task.episode_scores(stats['episode_return'], stats['success']), **stats)
        self._log_rows('eval', self._rows(stats))
        return stats

    def _log_rows(self, kind: str, rows: list) -> None:
        """train.csv or eval.csv rows and the loggers' copies, written by process 0 alone."""
        if self.placement.writes_files:
            (self.train_log if kind == 'train' else self.eval_log).append(rows)
            self.loggers.log(kind, rows)

    def _evaluate_and_show(self, progress):
        stats = self.evaluate()
        progress.evaluated(self.step, float(np.nanmean(np.asarray(stats['score'])[self.alive])))

    def _train_until(self, stop: int, totals, counted: int, pacer, progress):
        """Chunks of about `pacer.seconds` each up to update `stop`, adding to the metric sums
        `totals` of the `counted` updates since the last row; returns them and the means."""
        means = None  # no chunk when a stop was requested before the first
        while self.step < stop and not self._stop_requested():
            # The chunk's length is one argument of a program every process runs: process 0's pacer decides.
            start, updates = self.step, min(stop - self.step, self.placement.agreed(pacer.size()))
            began = time.monotonic()
            self.states, self.rngs, totals, first_bad = self.chunks.run(self.states, self.rngs, totals, self.dataset,
                                                                        updates, self._agent_step(), self.alive)
            first_bad, sums = self.placement.gather((first_bad, totals))
            seconds = time.monotonic() - began
            pacer.record(updates, seconds)
            self.step, counted = start + updates, counted + updates
            means = {k: v / counted for k, v in sums.items()}
            self._record_divergence(means, first_bad, start)
            progress.advanced(updates, seconds, {k: np.mean(v[self.alive]) for k, v in means.items()})
        return totals, counted, means

    def _agent_step(self) -> int:
        """The agents' step, from which their phase is derived: the step they started this run at
        plus the run's updates. Every member still training must hold it (each update adds one to
        `state.step`); one that does not means an update broke that contract, and training on would
        run phases by a step the agents do not have."""
        expected = self.first_agent_step + self.step
        steps = getattr(self.states, 'step', None)  # an agent state without a step counter: the run's
        if steps is None:
            return expected
        held = np.asarray(self.placement.gather(steps))[self.alive]
        if np.any(held != expected):
            raise RuntimeError(f'At update {self.step:,} of this run the agents hold step(s) '
                               f'{sorted(set(held.tolist()))} and should hold {expected:,}: '
                               f'{self.s.agent} does not add one to state.step per update.')
        return expected

    # -- online fine-tuning (flowrl.engine.online) ---------------------------------------------
    def _online_capacity(self) -> int:
        rows = pixels.num_transitions(self.dataset)
        return online_capacity(self.s.online_steps, rows, self.s.buffer_size, bool(self.s.balanced_sampling))

    def _abstract_online(self):
        """Shapes, dtypes and placement of the members' online buffers (nothing allocated)."""
        one = jax.eval_shape(lambda: replay.empty_like(self.dataset, self._online_capacity()))
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.placement.padded,) + x.shape, x.dtype,
                                                           sharding=self.placement.member_sharding), one)

    def _abstract_episodes(self):
        """Shapes, dtypes and placement of `_episodes` (the online environments must exist)."""
        record = dict(self.online_envs.record(),
                      next_actions=np.zeros(self.online_envs.actions_taken[:, 0].shape, np.float32))
        return {k: jax.ShapeDtypeStruct((self.placement.padded,) + v.shape[1:], v.dtype,
                                        sharding=self.placement.member_sharding) for k, v in record.items()}

    def _make_online_envs(self):
        """The environments of this process's members, made once."""
        if self.online_envs is None:
            seeds = [self.seeds[i] for i in self.placement.local_members]
            workers = min(eval_workers(self.s.eval_workers), len(seeds))
            self.online_envs = MemberEnvs(self.make_env, seeds, workers, self.task.reward_function(self.s),
                                          self.observation_dtype)

    def _start_episodes(self):
        """The members' environments start their first episodes (at the first online step); their
        first actions."""
        self._make_online_envs()
        if self.online is None:
            self.online = empty_buffers(self.dataset, self.placement.padded, self._online_capacity(),
                                        self.placement.member_sharding)
        observations = self.placement.put_local(self.online_envs.restart(self.step))
        self.rngs, actions = self.online_program.first_actions(self.states, self.rngs, observations)
        self.actions = np.asarray(self.placement.local(actions))

    def _online_until(self, stop: int, totals, counted: int, pacer, progress):
        """Online steps up to update `stop` (see `_train_until`): per step, the members' environments
        take the pending actions, then one compiled program appends, updates and acts."""
        update = phase_at(self.chunks.phases, self._agent_step())
        if totals is None:
            totals = jax.device_put(self.chunks.zero_totals(update, self.states, self.dataset),
                                    self.placement.member_sharding)
        if self.actions is None:
            self._start_episodes()
        means = None
        while self.step < stop and not self._stop_requested():
            # Every process makes the same gathers: process 0's pacer decides how many steps between them.
            start, steps, began = self.step, min(stop - self.step, self.placement.agreed(pacer.size())), time.monotonic()
            for _ in range(steps):
                # Each process steps its own members' environments; one small gather per step tells
                # every process which members diverged.
                transitions, observations = self.placement.put_local(self.online_envs.step(self.actions,
                                                                                           self.step + 1))
                self.states, self.rngs, totals, self.online, first_bad, actions = self.online_program.step(
                    update, self.states, self.rngs, totals, self.placement.put(self.alive), self.online, transitions,
                    observations, self.dataset)
                self.actions = np.asarray(jax.device_get(self.placement.local(actions)))
                first_bad = self.placement.gather(first_bad)
                self.step, counted = self.step + 1, counted + 1
                if np.any(first_bad >= 0):
                    self._record_divergence(self._means(totals, counted), first_bad, self.step - 1)
            seconds = time.monotonic() - began
            pacer.record(steps, seconds)
            means = self._means(totals, counted)
            progress.advanced(steps, seconds, {k: np.mean(v[self.alive]) for k, v in means.items()})
        return totals, counted, means

    def _means(self, totals, counted: int) -> dict:
        return {k: v / counted for k, v in self.placement.gather(totals).items()}

    def _validation(self) -> dict:
        """The update's metrics on a validation batch at the current states (no step taken), as
        the authors' code logs them; keys from (member seed, step), apart from training's."""
        if self.validation is None:
            return {}
        update = phase_at(self.chunks.phases, max(self.first_agent_step + self.step - 1, 0))
        held = self.placement.local_members  # each process validates its own members
        keys = member_keys([self.seeds[i] for i in held], self.step)
        metrics = jax.device_get(self.validation_metrics(update, self.placement.local(self.states), self.validation,
                                                         keys))
        return {f'validation/{k}': v for k, v in self.placement.gather(metrics).items()}

    def _exploration(self) -> dict:
        """Exploration statistics of the episodes ended since the last row (online runs only)."""
        if not self.s.online_steps:
            return {}
        if self.online_envs is None:
            return {k: np.full(self.placement.padded, np.nan) for k in EXPLORATION_KEYS}
        return self.placement.gather(self.online_envs.statistics())

    def train(self) -> dict:
        """Trains to the end (`_train`) and returns the results. A stop signal ends the run at the
        next safe point with a checkpoint (flowrl.stopping), a full disk with one sentence
        (flowrl.disk); either way the environments' workers end with it."""
        try:
            with stopping.at_safe_points(self._abandoned_line):
                return self._train()
        except disk.NoSpace as error:
            newest = checkpoints.newest_good_step(self.checkpoint_dir)
            raise disk.NoSpace(error.what, disk.run_no_space_line(error.what, self.step, newest, self.run_dir)) from error
        finally:
            self._close_environments()

    def _train(self) -> dict:
        s = self.s
        progress = Progress(self.total_steps, self.step, agent_name(s.agent), self.log,
                            interactive=None if self.placement.writes_files else False)
        pacer = ChunkPacer()
        if self._evaluation_due(self.step) and not self.placement.on_writer(
                lambda: any(int(r['step']) == self.step for r in self.eval_log.read())):
            # Resumed from the checkpoint saved just before an evaluation that did not finish.
            self._evaluate_and_show(progress)
        # Metric sums since the last train.csv row, kept on the device and added to in update
        # order, so a row does not depend on how the updates before it were cut into chunks.
        totals, counted = self._row_sums_at(self.step)  # those of a run stopped between two rows
        phase_starts = self.chunks.schedule_steps(self.first_agent_step, self.total_steps) + [s.offline_steps]
        for stop in chunk_boundaries(self.step, self.total_steps, (s.log_interval, s.eval_interval, s.save_interval),
                                     phase_starts):
            advance = self._train_until if stop <= s.offline_steps else self._online_until
            totals, counted, means = advance(stop, totals, counted, pacer, progress)
            if self.step < stop:  # a stop was requested
                self._stop(progress, totals, counted)
            evaluating = self._evaluation_due(stop)
            # A checkpoint before every evaluation: a crash while evaluating loses no training.
            saving = bool(s.save_interval and stop % s.save_interval == 0) or stop == self.total_steps or evaluating
            # Rows are also written at checkpoints, whose resumes start with empty sums.
            if stop % s.log_interval == 0 or saving:
                self._log_rows('train', self._rows({**means, **self._validation(), **self._exploration()}))
                progress.logged()
                totals, counted = None, 0
            if saving:
                self.save()
            if self._stop_requested():
                self._stop(progress, totals, counted)
            if evaluating:
                self._evaluate_and_show(progress)
        progress.close()
        self.loggers.close()
        self._close_environments()
        return self.write_results()

    # -- stops and a full disk (flowrl.stopping, flowrl.disk) ---------------------------
    def _stop(self, progress, totals, counted: int):
        """Ends the run at a stop request, between chunks: a checkpoint at this update (unless
        one was just saved) that also holds the metric sums since the last train.csv row, so the
        resumed run writes the rows an uninterrupted one would; then `Stopped` with its line."""
        if self.placement.on_writer(lambda: checkpoints.latest_step(self.checkpoint_dir)) != self.step:
            sums = run_files.row_sums_bytes(self.placement.gather(totals), counted) if counted else None
            self.save(attachments=None if sums is None else {run_files.ROW_SUMS_FILE: sums})
        progress.close()
        signum = self._stop_requested()
        raise stopping.Stopped(signum, stopping.stopped_line(signum, self.step, self.total_steps, self.checkpoint_dir,
                                                             self.run_dir))

    def _row_sums_at(self, step: int):
        """(metric sums, updates) since the last row, as saved with checkpoint `step` by a stop
        between two rows; (None, 0) otherwise."""
        data = checkpoints.attachment(self.checkpoint_dir, step, run_files.ROW_SUMS_FILE)
        if data is None:
            return None, 0
        sums, counted = run_files.read_row_sums(data)
        return self.placement.put(sums), counted

    def _stop_requested(self) -> int | None:
        """The stop signal received (flowrl.stopping), by any process of the run: every process
        makes the same calls, so all of them stop at the same boundary (one small gather per
        chunk with several processes)."""
        signum = stopping.requested() or 0
        if self.placement.multi_process:
            signum = int(np.max(self.placement.gather(np.asarray([signum], np.int64))))
        return signum or None

    def _abandoned_line(self, stop) -> str:
        return stopping.abandoned_line(stop, self.step, checkpoints.latest_step(self.checkpoint_dir), self.run_dir)

    def _require_disk_space(self, run_dir: str | None):
        """Refuses a run whose directory cannot hold its checkpoints, logs and report (flowrl.disk)."""
        # The episode records (actions up to the time limit per member) are small beside the buffers: left out.
        carry = self._carry(self.total_steps, self._abstract_online() if self.s.online_steps else None, None)
        size = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(carry))
        saved = [] if run_dir is None else checkpoints.steps(os.path.join(run_dir, run_files.CHECKPOINT_DIR))
        parts = disk.run_growth(self.s, self.total_steps, len(self.members.labels), size, saved,
                                checkpoints.MAX_TO_KEEP)
        disk.require_run_space(self.s, run_dir, parts)

    def _close_environments(self):
        """Ends the environments' worker processes (closing twice is harmless); the objects stay,
        so the shapes of the episode records can still be read."""
        if self.online_envs is not None:
            self.online_envs.close()
        if self.eval_envs is not None:
            self.eval_envs.pool.close()

    # -- results -------------------------------------------------------------------------
    def write_results(self) -> dict | None:
        """results.json and the report, by process 0 (which returns the results; the others None)."""
        self.placement.barrier('results')  # every process has finished training and evaluating
        if not self.placement.writes_files:
            return None
        results = summarize_results(self.eval_log.read(), self.members.labels, self.diverged, self.task.metric)
        results.update(env=self.task.name, agent=self.s.agent, steps=self.step, run_dir=self.run_dir,
                       **self.task.description(self.s))
        run_files.write_json(os.path.join(self.run_dir, run_files.RESULTS_FILE), results)
        for line in results_lines(results):
            self.log(line)
        if self.s.report:
            self._write_report()
        return results

    def _write_report(self):
        """RUN_DIR/report/: the run's table and plots. A failure here costs the report, not the run."""
        from flowrl.results.report import write_report

        try:
            paths = write_report([self.run_dir], os.path.join(self.run_dir, 'report'), log=self.log)
        except Exception as error:  # noqa: BLE001 -- the results are already written
            self.log(f'warning: no report written ({type(error).__name__}: {error}); '
                     f'python -m flowrl.results.report {self.run_dir} retries.')
            return
        self.log(f'Report: {paths["markdown"]} and {len(paths["plots"])} plot(s) in {os.path.dirname(paths["markdown"])}')


def restore_start(s: RunSettings, log=print) -> tuple:
    """(checkpoint of --restore_path to start from, agent step this run starts at). Without
    --restore_path: (None, 0). With it, the agents' saved step when --restore_schedule=continue
    (their step schedules go on from there), else 0 (they start over with the saved weights)."""
    if s.restore_path is None:
        return None, 0
    settings_from_run_dir(s.restore_path, 'start from')
    directory = os.path.join(s.restore_path, run_files.CHECKPOINT_DIR)
    checkpoint = checkpoints.pick_step(directory, s.restore_epoch, log)
    if s.restore_schedule == 'restart':
        return checkpoint, 0
    return checkpoint, saved_agent_step(s.restore_path, checkpoint)


def saved_agent_step(run_dir: str, checkpoint: int) -> int:
    """The step the agents of `checkpoint` in `run_dir` hold (read alone); 0 for an agent state
    without a step counter. Members at different steps (one diverged) cannot continue as one run."""
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    members, rows = len(description['members']), saved_rows(description)
    on_host_device = whole_array_sharding()
    like = dict(states=dict(step=jax.ShapeDtypeStruct((rows,), np.int32, sharding=on_host_device)))
    try:
        steps = whole_value(checkpoints.read_part(os.path.join(run_dir, run_files.CHECKPOINT_DIR), like,
                                                  checkpoint)['states']['step'])[:members]
    except (ValueError, KeyError, TypeError):
        return 0
    if len(set(steps.tolist())) > 1:
        raise UserError(f'The members of checkpoint {checkpoint} of {run_dir} are at different agent steps '
                        f'({", ".join(map(str, steps.tolist()))}; one diverged): pass --restore_schedule=restart to '
                        'start them all over at step 0.')
    return int(steps[0])


def saved_rows(description: dict) -> int:
    """Rows of the member-stacked arrays in the checkpoints of the run `description` (flags.json)
    describes: its members and the inactive ones that padded them (flowrl.engine.placement)."""
    return (description.get('placement') or {}).get('padded_members', len(description['members']))


def read_saved_agents(run_dir: str, like_states, step: int | None = None, log=print):
    """(agent states of the run's real members [members, ...], step) of checkpoint `step` of the
    run in `run_dir`, read as `like_states` (one row per member) is shaped; the rows of inactive
    members its checkpoints hold are dropped."""
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    members, rows = len(description['members']), saved_rows(description)
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((rows,) + x.shape[1:], x.dtype, sharding=x.sharding),
                        like_states)
    states, step = checkpoints.read_agents(os.path.join(run_dir, run_files.CHECKPOINT_DIR), like, step, log)
    return jax.tree.map(lambda x: whole_value(x)[:members], states), step


def starting_agents(run_dir: str, step: int | None, states, log=print, keep_step: bool = True,
                    num_members: int | None = None, members=None):
    """--restore_path/--restore_epoch: the agent states of checkpoint `step` (default: the newest
    good one) of the run in `run_dir`, in place of the fresh `states` (member-stacked). The saved run
    has as many members as this one, `num_members` (member i starts from its member i), or one (all
    start from it); its networks must have this run's shapes. Keys and buffers are not taken; the
    agents' step is kept (`keep_step`, --restore_schedule=continue: their step schedules go on) or
    set to 0. `members`: the member each row of `states` is (default: row i is member i; a process
    of a multi-process run holds its own members, and inactive ones start as member 0)."""
    saved = settings_from_run_dir(run_dir, 'start from')
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    rows = jax.tree.leaves(states)[0].shape[0]
    num_members = rows if num_members is None else num_members
    members = np.arange(rows) if members is None else np.asarray(members)
    saved_members = len(description['members'])
    if saved_members not in (1, num_members):
        raise UserError(f'{run_dir} trained {saved_members} members and this run has {num_members}: give each '
                        'member its own saved member (the same count) or one saved member to start all from.')
    on_host_device = whole_array_sharding()
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((saved_members,) + x.shape[1:], x.dtype,
                                                       sharding=on_host_device), states)
    try:
        restored, step = read_saved_agents(run_dir, like, step, log)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f'The checkpoint of {run_dir} does not hold agents shaped like this run\'s '
                        f'(agent {saved.agent}, {saved.env_name}); use the same agent, network sizes and '
                        f'environment ({type(error).__name__}: {str(error)[:200]}).') from None
    if not keep_step and hasattr(restored, 'step'):
        restored = restored.replace(step=np.zeros_like(restored.step))
    kept = f' at agent step {int(np.max(restored.step)):,}' if hasattr(restored, 'step') else ''
    log(f'Agents start from checkpoint {step:,} of {run_dir}{kept} (--restore_path, '
        f'--restore_schedule={"continue" if keep_step else "restart"}).')
    source = np.zeros_like(members) if saved_members == 1 else np.where(members < num_members, members, 0)
    return jax.tree.map(lambda x: np.asarray(x)[source], restored)


MEMBER_RESULT_KEYS = ('member', 'seed', 'final_score', 'evaluations', 'diverged_at_update', 'diverged_metrics')


def summarize_results(eval_rows: list[dict], labels: list[dict], diverged: dict | None = None,
                      metric: str = 'success') -> dict:
    """Per-member final score (mean score of the last 3 evaluations, `metric` naming what the score
    measures; None without evaluations or for a member that diverged, which gets the update and
    metrics instead) and, per sweep point, mean and std over the seeds that did not diverge and how
    many did."""
    diverged = diverged or {}
    members = []
    for label in labels:
        rows = sorted((r for r in eval_rows if int(r['member']) == label['member']), key=lambda r: int(r['step']))
        history = [run_files.row_score(r) for r in rows]
        score = None if label['member'] in diverged or not history else final_score(history)
        members.append(dict(**label, final_score=score, **diverged.get(label['member'], {}),
                            evaluations=[dict(step=int(r['step']), score=run_files.row_score(r), success=float(r['success']),
                                              episode_return=float(r['episode_return'])) for r in rows]))
    groups = {}
    for member in members:
        point = tuple((k, v) for k, v in member.items() if k not in MEMBER_RESULT_KEYS)
        groups.setdefault(point, []).append(member)
    aggregate = []
    for point, group in groups.items():
        scores = [m['final_score'] for m in group if m['final_score'] is not None]
        aggregate.append(dict(**dict(point), num_seeds=len(scores),
                              diverged=sum('diverged_at_update' in m for m in group),
                              mean=float(np.mean(scores)) if scores else None,
                              std=float(np.std(scores)) if scores else None))
    return dict(score=f'mean {metric} of the last 3 evaluations', metric=metric, members=members, aggregate=aggregate)


def require_same_data(run_dir: str, record: dict) -> None:
    """A resumed run reads the data it started with (same file hash, where the suite records one)."""
    saved = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE)).get('data') or {}
    if saved.get('sha256') and record.get('sha256') and saved['sha256'] != record['sha256']:
        raise UserError(f'{run_dir} was trained on data with sha256 {saved["sha256"][:12]}… but the data found now '
                        f'({record.get("file") or record.get("dataset_id")}) has {record["sha256"][:12]}…; put the '
                        'original data back to resume.')


def results_lines(results: dict) -> list[str]:
    unit = '%' if results.get('metric', 'success') == 'success' else ''  # a normalised return is not a rate
    lines = [f'Final score ({results["score"]}, x 100):']
    for m in results['members']:
        extra = ' '.join(f'{k}={v}' for k, v in m.items() if k not in MEMBER_RESULT_KEYS)
        if 'diverged_at_update' in m:
            outcome = f'diverged at update {m["diverged_at_update"]} ({", ".join(m["diverged_metrics"])})'
        else:
            outcome = 'not evaluated' if m['final_score'] is None else f'{100 * m["final_score"]:.1f}{unit}'
        lines.append(f'  seed {m["seed"]} {extra}: {outcome}')
    for a in results['aggregate']:
        extra = ' '.join(f'{k}={v}' for k, v in a.items() if k not in ('num_seeds', 'diverged', 'mean', 'std'))
        score = 'no score' if a['mean'] is None else f'{100 * a["mean"]:.1f} ± {100 * a["std"]:.1f}{unit}'
        diverged = f', {a["diverged"]} diverged' if a.get('diverged') else ''
        lines.append(f'  {extra or "all"}: {score} over {a["num_seeds"]} seed(s){diverged}')
    return lines


def settings_from_run_dir(run_dir: str, purpose: str = 'resume') -> RunSettings:
    path = os.path.join(run_dir, run_files.FLAGS_FILE)
    if not os.path.isfile(path):
        raise UserError(f'Cannot {purpose} {run_dir!r}: it is not a flowrl run directory (no {run_files.FLAGS_FILE}).')
    try:
        return RunSettings(**run_files.read_json(path)['settings'])
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UserError(f'{path} is unreadable or corrupt ({type(error).__name__}: {error}); it is written once '
                        'when a run starts, so restore it from a copy or start a new run.') from None



def refuse_changed_configs(run_dir: str, saved: list, configs: list) -> None:
    """A resumed run must train with the configs it started with; a schedule fitted to the run's
    length (QIPO's --agent.phase_scale=auto) would change with --offline_steps."""
    rebuilt = run_files.as_written([config.to_dict() for config in configs])
    changed = sorted({key for old, new in zip(saved, rebuilt) for key in old if old[key] != new.get(key)})
    if changed:
        raise UserError(f'{run_dir} would continue with other values of {", ".join(changed)} than it trained with '
                        '(a schedule fitted to the run\'s length changes with it); leave out --offline_steps.')


def resume(run_dir: str, changes: dict | None = None, log=print) -> dict:
    """Continues the run in `run_dir` from its latest good checkpoint, exactly as if
    uninterrupted. `changes` may set RESUME_CHANGES (kept in flags.json): --offline_steps sets
    a new total (to extend the run); the others do not change results."""
    settings = settings_from_run_dir(run_dir)
    changes = changes or {}
    unknown = sorted(set(changes) - set(RESUME_CHANGES))
    if unknown:
        raise UserError(f'--resume continues {run_dir} with its own settings; only '
                        f'{", ".join("--" + k for k in RESUME_CHANGES)} can change, not --{", --".join(unknown)}.')
    if settings.online_steps and 'offline_steps' in changes:
        raise UserError(f'{run_dir} fine-tunes online after {settings.offline_steps:,} offline updates; its phases '
                        'cannot change on resume, so leave out --offline_steps.')
    saved = checkpoints.latest_step(os.path.join(run_dir, run_files.CHECKPOINT_DIR))
    steps = changes.get('offline_steps', settings.offline_steps) + settings.online_steps
    if saved is not None and steps < saved:
        raise UserError(f'--offline_steps={steps} is below the checkpoint {run_dir} resumes from (update '
                        f'{saved:,}); pass at least {saved} to extend the run.')
    settings = dataclasses.replace(settings, **changes)
    run = Run(settings, run_dir=run_dir, log=log)
    description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
    refuse_changed_configs(run_dir, description['configs'], run.members.configs)
    run.restore()
    if changes and run.placement.writes_files:
        description['settings'] = dataclasses.asdict(settings)
        run_files.write_json(os.path.join(run_dir, run_files.FLAGS_FILE), description)
    run.log(f'Resumed {run_dir} at update {run.step:,} of {settings.offline_steps:,}.')
    return run.train()
