"""One training run from settings to results: the library behind main.py.

    settings -> agent, task (flowrl.suites), config (presets + overrides), members (sweep grid x seeds)
             -> dataset on the device -> stacked member states
             -> chunks of scanned updates | evaluation | checkpoints | CSV logs
             -> results.json (final score = mean score of the last three evaluations: success on
                OGBench, D4RL's normalised return on D4RL)

`Run` is the command's shell around the loop: it sets a run up (members, placement, data, the
compiled programs and the parts that run them: offline chunks (flowrl.run.offline), online steps
(flowrl.run.online_steps), evaluation and validation (flowrl.run.evaluating)), keeps its record
in the run directory (flowrl.run.files; saved runs read back: flowrl.run.saved) and writes the
results. The order of the run is flowrl.run.loop's, over an explicit Position (flowrl.run.state).
"""

import dataclasses
import os

import jax
import numpy as np

from flowrl import disk, run_files, stopping, suites
from flowrl.engine import checkpoints
from flowrl.engine.evaluation import make_diagnostics, make_policy
from flowrl.engine.online import OnlineProgram
from flowrl.engine.replay import online_capacity
from flowrl.engine.placement import Placement, tell_checkpoints_with
from flowrl.engine.training import ChunkRunner, dataset_work, init_members, resolve_member_execution
from flowrl.errors import UserError
from flowrl.kit import chunking, contract, pixels
from flowrl.making.ogbench import loaded_with_making
from flowrl.results.scores import results_lines, summarize_results
from flowrl.run.evaluating import Evaluation, Validation
from flowrl.registry.agent_loading import agent_name, load_agent
from flowrl.registry.presets import default_config
from flowrl.run.files import RunFiles, new_run_dir, require_writable_dir
from flowrl.run.loggers import parse_loggers
from flowrl.run.offline import OfflineChunks
from flowrl.run.online_steps import OnlineSteps
from flowrl.run.progress import ChunkPacer, Progress, console_line
from flowrl.run.resume_lines import abandoned_line, no_space_line
from flowrl.run.saved import (example_record, refuse_changed_configs, require_same_data, require_same_padding,
                              restore_start, settings_from_run_dir, starting_agents)
from flowrl.run.settings import (RESUME_CHANGES, Members, RunSettings,  # noqa: F401 (re-exported)
                                 check_settings, fit_schedules, resolve_members, task_settings)
from flowrl.run.space import require_run_space, run_growth
from flowrl.run import loop
from flowrl.run.loop import Parts, Schedule
from flowrl.run.record import RunRecord
from flowrl.run.state import Position
from flowrl.run.stream import open_stream, shard_reader


def eval_workers(requested: int) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def load_dataset(s: RunSettings, task, log=console_line) -> suites.LoadedData:
    """Where data enters a run: the task's data as stored, with the task's reward rule applied
    once (the same rule the online transitions get) and checked once (both splits)."""
    # A dataset flowrl makes (generated, rendered) is made here when the task reports it missing.
    settings = task_settings(s)
    data = suites.with_run_rewards(loaded_with_making(lambda: task.load(settings, log), log),
                                   task.reward_function(settings))
    observation_shape, action_dim = data.env_shapes or (None, None)
    for split, name in zip(data[:2], ('training', 'validation')):
        if split is not None:
            suites.check_transitions(split, f'The {name} data of {data.source}', observation_shape, action_dim)
    validation = '' if data.val is None else f' (validation: {len(data.val["actions"]):,})'
    log(f'Dataset: {data.source}; {len(data.train["actions"]):,} transitions{validation}.')
    return data._replace(record=dict(data.record, **data_size(data.train)))


def load_shards(s: RunSettings, task, log=console_line):
    """The task's dataset as shards to stream (flowrl.suites.data.shards.Shards: --dataset_dir
    holds OGBench's sharded layout), or None: the dataset is read whole (`load_dataset`)."""
    return task.shards(task_settings(s), log)


def data_size(train: dict) -> dict:
    """The training data's size as flags.json records it (the report compares it with the papers')."""
    return dict(transitions=len(train['actions']), episodes=int(np.sum(train['terminals'])))


def env_factory(s: RunSettings, task, data_record: dict):
    """A picklable () -> evaluation environment for the data the run read."""
    return task.env_factory(task_settings(s), data_record)


class Run:
    """A run of the command: sets everything up from the settings (members, placement, data, the
    compiled programs and the parts that run them, the run directory), keeps the run's record
    (the Recorder of flowrl.run.loop: rows, checkpoints, evaluations, stops) and writes the
    results; `train()` hands the order of the run to flowrl.run.loop."""

    def __init__(self, settings: RunSettings, run_dir: str | None = None, log=console_line):
        check_settings(settings)
        # Every process of a multi-process run prints its placement line; process 0 alone the rest.
        self.placement = None
        writes = jax.process_index() == 0
        self.s, self.log = settings, log if writes else (lambda *_: None)
        self.execution = resolve_member_execution(settings.member_execution)
        self.agent = load_agent(settings.agent)
        self.task = suites.resolve(settings.env_name)
        self.total_steps = settings.offline_steps + settings.online_steps
        self._resolve_members()
        if run_dir is not None:
            refuse_changed_configs(run_dir, run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))['configs'],
                                   self.members.configs)
        self.placement = Placement.build(len(self.members.configs))
        self.stream = None  # flowrl.run.stream.ShardStream with a sharded dataset
        self._print_config()
        self._require_writable(run_dir)
        dataset, validation = self._load_data(run_dir)
        states, rngs = self._start_states(dataset)
        self.position = Position(states, rngs, 0, self.first_agent_step, self.placement.active.copy(),
                                 stream=None if self.stream is None else self.stream.first())
        self.parts = self._make_parts(dataset, validation)
        self.schedule = Schedule(settings.offline_steps, self.total_steps, settings.log_interval,
                                 settings.eval_interval, settings.save_interval, evaluates=bool(settings.eval_episodes),
                                 swap_interval=0 if self.stream is None else self.stream.interval,
                                 chunk_ends=tuple(self.parts.offline.chunks.schedule_steps(self.first_agent_step,
                                                                                           self.total_steps)))
        self._require_disk_space(run_dir)
        self.run_dir = run_dir or self.placement.on_writer(lambda: new_run_dir(settings, self.task))
        self.files = RunFiles(self.run_dir, self.placement, self.log)
        self.checkpoint_dir = self.files.checkpoint_dir
        self.record = RunRecord(self.files, self.placement, self.members.labels, settings.offline_steps,
                                self.total_steps, self.evaluation, self.online, self.log)
        # A resumed run stopped before its first checkpoint starts over; decided before its loggers start.
        self.starts_over = run_dir is not None and self._start_over_unless_saved()
        tell_checkpoints_with(self.files.checkpoint_note)
        self._print_phases()
        # flags.json: a resumed run keeps its own; one that starts over writes it as a new run would.
        description = self._description() if run_dir is None or self.starts_over else None
        self.files.open(description, settings.logger, self.members.labels,
                        [c.to_dict() for c in self.members.configs], dataclasses.asdict(self.s))

    # -- set-up ---------------------------------------------------------------------------
    def _resolve_members(self):
        """The members (sweep grid x seeds) with their configs, schedules fitted to the agent steps
        this run trains (from a --restore_path checkpoint's step, if any)."""
        s, log = self.s, self.log
        self.restore_checkpoint, self.first_agent_step = restore_start(s, log)
        members = resolve_members(s, self.agent, self.task, log)
        self.members = fit_schedules(self.agent, members, self.first_agent_step,
                                     self.first_agent_step + self.total_steps, log)
        suites.check_settings(self.task, task_settings(s), self.members.configs)

    def _require_writable(self, run_dir: str | None):
        s = self.s
        if run_dir is None:
            where = os.path.join(os.path.expanduser(s.save_dir), s.run_group)
            require_writable_dir(where, f'--save_dir {s.save_dir!r}')
        else:
            require_writable_dir(run_dir, f'The run directory {run_dir!r}')

    def _load_data(self, run_dir: str | None):
        """(training split, validation split or None) as the agent prepares them, on the host; the
        environment factory for the data read, and the observation dtype policies are compiled for.
        A sharded dataset is streamed (`_open_stream`): the training split is then its first window,
        on the devices."""
        shards = load_shards(self.s, self.task, self.log)
        if shards is not None:
            return self._open_stream(shards, run_dir)
        data = load_dataset(self.s, self.task, self.log)
        dataset, validation, source, self.data_record = data.train, data.val, data.source, data.record
        self.placement.require_same_data(dataset, source)
        if run_dir is not None:
            require_same_data(run_dir, self.data_record)
        self.make_env = env_factory(self.s, self.task, self.data_record)
        # Optional contract hook: fields an agent derives once from the whole dataset (ReBRAC's next_actions).
        prepare = contract.hook(self.agent, 'prepare_dataset')
        dataset = prepare(dataset)
        self.example = pixels.gather_transitions(dataset, np.arange(2))
        self.observation_dtype = self.example['observations'].dtype  # what the policy is compiled for everywhere
        return dataset, None if validation is None else prepare(validation)

    def _open_stream(self, shards, run_dir: str | None):
        """(the stream's first window on the devices, the validation split or None): the shards
        streamed within the memory bound (flowrl.run.stream); the window chosen (K) is written into
        the settings, so a resume streams the same window whatever memory it finds."""
        s, log = self.s, self.log
        if dataset_work(self.agent, self.members.configs[0]) is not None:
            raise UserError(f'{s.agent} does work over its whole dataset (the dataset_work hook), which a stream of '
                            'shards does not hold at once; pass a single dataset file.')
        prepare = contract.hook(self.agent, 'prepare_dataset')
        observation_shape, action_dim = shards.env_shapes or (None, None)
        rewards = self.task.reward_function(task_settings(s))
        read = shard_reader(shards, rewards, prepare, observation_shape, action_dim)
        self.stream = open_stream(shards, read, self.placement, s.seed, s.shard_window, s.dataset_replace_interval,
                                  s.offline_steps, log)
        self.s = dataclasses.replace(s, shard_window=self.stream.window)
        rows, count = self.stream.rows, len(shards.files)
        self.data_record = dict(shards.record, shard_window=self.stream.window, shard_transitions=rows,
                                transitions=rows * count, episodes=self.stream.first_episodes * count)
        if run_dir is not None:
            require_same_data(run_dir, self.data_record)
        self.make_env = env_factory(s, self.task, self.data_record)
        self.example = self.stream.example
        self.observation_dtype = self.example['observations'].dtype
        validation = None
        if shards.val is not None:
            val = suites.with_run_rewards(suites.LoadedData(shards.val, None, shards.source, {}), rewards).train
            suites.check_transitions(val, f'The validation data of {shards.source}', observation_shape, action_dim)
            validation = prepare(val)
        log(f'Dataset: {shards.source}; {rows * count:,} transitions in {count} shards of {rows:,}'
            + ('' if validation is None else f' (validation: {len(validation["actions"]):,})') + '.')
        return self.stream.window_for(self.stream.first()), validation

    def _start_states(self, dataset):
        """(states, rngs) of this process's members, placed: fresh, or a --restore_path checkpoint's
        agents. Each process makes the states of its own members (inactive ones: copies of member 0's)."""
        placement, s = self.placement, self.s
        held = placement.local_members
        configs, self.seeds = placement.padded_list(self.members.configs), placement.padded_list(self.members.seeds)
        states, rngs = init_members(self.agent, [configs[i] for i in held], [self.seeds[i] for i in held],
                                    self.example, rows=pixels.num_transitions(dataset), log=self.log)
        if s.restore_path is not None:
            states = starting_agents(s.restore_path, self.restore_checkpoint, states, self.log,
                                     keep_step=s.restore_schedule == 'continue',
                                     num_members=len(self.members.labels), members=held)
        return placement.put_local(states), placement.put_local(rngs)

    def _make_parts(self, dataset, validation) -> Parts:
        """The compiled programs and the units that run them: offline chunks, online steps (`self.online`,
        None without --online_steps), evaluation and validation (`self.evaluation`)."""
        s, placement = self.s, self.placement
        dataset = jax.device_put(dataset, placement.replicated)
        batch_size = self.members.configs[0].batch_size
        chunks = ChunkRunner(self.agent, batch_size, self.execution, self.members.configs[0], p_aug=s.p_aug or 0.0,
                             placement=placement)
        program = OnlineProgram(self.agent, batch_size, self.execution, bool(s.balanced_sampling), s.buffer_size,
                                placement=placement, horizon=chunks.sampler.horizon)
        workers = eval_workers(s.eval_workers)
        acting = chunking.action_horizon(self.agent, self.members.configs[0])  # actions per sampled chunk
        capacity = (online_capacity(s.online_steps, pixels.num_transitions(dataset), s.buffer_size,
                                    bool(s.balanced_sampling)) if s.online_steps else None)
        online = OnlineSteps(program, chunks, dataset, placement, self.make_env, self.seeds,
                             self.task.reward_function(task_settings(s)), self.observation_dtype, workers, capacity,
                             acting)
        self.evaluation = Evaluation(self.task, placement, self.make_env, self.seeds, self.observation_dtype,
                                     make_policy(self.agent, self.execution), make_diagnostics(self.agent, self.execution),
                                     workers, s.eval_episodes, s.eval_envs, self.log, acting)
        self.online = online if s.online_steps else None
        if self.stream is not None and self.online is not None:  # online steps go on with the window in memory
            self.stream.listeners.append(lambda window: setattr(self.online, 'dataset', window))
        offline = OfflineChunks(chunks, dataset, placement, self.stream)
        return Parts(offline, chunks.phases, placement, self.members.labels, s.agent, online=self.online,
                     validation=None if validation is None else Validation.of_split(validation, placement, self.seeds, chunks))

    def _start_over_unless_saved(self) -> bool:
        """For a resumed run: removes the saves cut short (a process killed while saving), and
        when no complete checkpoint is left (the run was stopped before its first save) clears
        what the stopped run wrote, so that it trains again from update 0 (`RunFiles.start_over`).
        Process 0 looks and clears; every process gets its answer."""
        def look_and_clear() -> bool:
            for name in checkpoints.remove_unfinished(self.checkpoint_dir):
                self.log(f'Removed {name} from {self.checkpoint_dir}: a checkpoint whose save was cut short.')
            if checkpoints.steps(self.checkpoint_dir):
                return False
            self.files.start_over()
            return True

        return self.placement.on_writer(look_and_clear)

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
        phases = self.parts.phases
        if len(phases) == 1:
            return
        first, last = self.first_agent_step, self.first_agent_step + self.total_steps
        self.log('Phases start at agent step ' + ', '.join(f'{start:,} ({update.__name__})' for start, update in phases)
                 + f'; this run trains agent steps {first:,} to {last:,}.')

    def _description(self) -> dict:
        return dict(settings=dataclasses.asdict(self.s), env=self.task.name, members=self.members.labels,
                    configs=[c.to_dict() for c in self.members.configs], default_config=self._default_config(),
                    jax_backend=jax.default_backend(),
                    data=self.data_record, placement=self._placement_record(), example=example_record(self.example),
                    **self.task.description(task_settings(self.s)))

    def _placement_record(self) -> dict:
        """How the members were laid out: a checkpoint's arrays hold `padded_members` rows."""
        return dict(processes=self.placement.process_count, devices=int(self.placement.mesh.devices.size),
                    padded_members=self.placement.padded)

    def _default_config(self) -> dict:
        """The agent's defaults with the task's presets: what the report names changes from."""
        return default_config(self.agent, self.s.agent, self.task, self.s.online_steps > 0).to_dict()

    def _require_disk_space(self, run_dir: str | None):
        """Refuses a run whose directory cannot hold its checkpoints, logs and report (flowrl.run.space)."""
        # The episode records (actions up to the time limit per member) are small beside the buffers: left out.
        carry = dict(states=self.position.states, rngs=self.position.rngs)
        if self.online is not None:
            carry.update(online=self.online.abstract_buffers())
        size = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(carry))
        saved = [] if run_dir is None else checkpoints.steps(os.path.join(run_dir, run_files.CHECKPOINT_DIR))
        parts = run_growth(self.s, self.total_steps, len(self.members.labels), size, saved,
                           checkpoints.MAX_TO_KEEP, log_copies=len(parse_loggers(self.s.logger)))
        require_run_space(self.s, run_dir, parts)

    def restore(self):
        """Continues from the newest checkpoint that passes verification (flowrl.run.record)."""
        require_same_padding(self.run_dir, self.placement)
        self.position = self.record.restored(self.position)
        if self.stream is not None:  # the window the checkpoint's stream holds (online steps read it too)
            self.stream.window_for(self.position.stream)

    # -- training --------------------------------------------------------------------------
    def train(self) -> dict:
        """Trains to the end (flowrl.run.loop) and returns the results. A stop signal ends the run at
        the next safe point with a checkpoint (flowrl.stopping), a full disk with one sentence
        (flowrl.disk); either way the environments' workers end with it."""
        record = self.record
        try:
            with stopping.at_safe_points(self._abandoned_line):
                record.progress = Progress(self.total_steps, self.position.step, agent_name(self.s.agent), self.log,
                                           interactive=None if self.placement.writes_files else False)
                self.position = loop.train(self.position, self.schedule, self.parts, record, record.progress,
                                           ChunkPacer())
                self.files.loggers.close()
                self._close_environments()
                return self.write_results()
        except disk.NoSpace as error:
            newest = checkpoints.newest_good_step(self.checkpoint_dir)
            raise disk.NoSpace(error.what, no_space_line(error.what, self._step_reached(), newest, self.run_dir)) from error
        finally:
            self._close_environments()

    def _step_reached(self) -> int:
        """The update the loop has reached (the progress line counts it), for the lines of a run
        that ends in the middle of it."""
        progress = self.record.progress
        return self.position.step if progress is None else progress.step

    def _abandoned_line(self, stop) -> str:
        return abandoned_line(stop, self._step_reached(), checkpoints.latest_step(self.checkpoint_dir), self.run_dir)

    def _close_environments(self):
        """Ends the environments' worker processes (closing twice is harmless); the objects stay,
        so the shapes of the episode records can still be read."""
        if self.online is not None:
            self.online.close()
        self.evaluation.close()
        if self.stream is not None:
            self.stream.close()

    # -- results ---------------------------------------------------------------------------
    def write_results(self) -> dict | None:
        """results.json and the report, by process 0 (which returns the results; the others None)."""
        self.placement.barrier('results')  # every process has finished training and evaluating
        if not self.placement.writes_files:
            return None
        results = summarize_results(self.files.eval_log.read(), self.members.labels, self.position.diverged,
                                    self.task.metric)
        results.update(env=self.task.name, agent=self.s.agent, steps=self.position.step, run_dir=self.run_dir,
                       **self.task.description(task_settings(self.s)))
        self.files.write_results(results)
        for line in results_lines(results):
            self.log(line)
        if self.s.report:
            self.files.write_report()
        return results


def resume(run_dir: str, changes: dict | None = None, log=console_line) -> dict:
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
    if not run.starts_over:
        run.restore()
    if changes and run.placement.writes_files:
        description = run_files.read_json(os.path.join(run_dir, run_files.FLAGS_FILE))
        description['settings'] = dataclasses.asdict(settings)
        run_files.write_json(os.path.join(run_dir, run_files.FLAGS_FILE), description)
    if run.starts_over:
        run.log(f'{run_dir} has no checkpoint yet (stopped before the first save): starting it over from update 0 '
                'with its saved settings.')
    else:
        run.log(f'Resumed {run_dir} at update {run.position.step:,} of {run.total_steps:,}.')
    return run.train()
