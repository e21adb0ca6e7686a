"""A run's directory and what is written to it while it trains (flowrl.run_files holds the
formats that the results read too): the directory itself and its check (`require_writable_dir`),
flags.json, the train.csv and eval.csv rows and the loggers' copies, diverged.json, the metric
sums a stop saves beside its checkpoint (their format: `row_sums_bytes`), results.json and the
report. Process 0 alone writes (`placement.writes_files`); every process may read."""

import io
import os
import shutil
import tempfile
import time

import numpy as np

from flowrl import run_files
from flowrl.engine import checkpoints
from flowrl.errors import UserError
from flowrl.registry.agent_loading import agent_name
from flowrl.run.loggers import DIRECTORIES, Loggers, parse_loggers

# What a run writes to its directory besides flags.json and its checkpoints: a run that starts
# over (`RunFiles.start_over`) removes what it finds of them.
WRITTEN_FILES = (run_files.TRAIN_CSV, run_files.EVAL_CSV, run_files.DIVERGED_FILE, run_files.RESULTS_FILE)
WRITTEN_DIRECTORIES = ('report', *DIRECTORIES.values())

# Beside a checkpoint saved between two train.csv rows (a stop): the metric sums of the updates
# since the last row, so that the resumed run writes the rows an uninterrupted one would.
ROW_SUMS_FILE = 'flowrl_row_sums.npz'
_SUM = 'sum:'


def row_sums_bytes(sums: dict, counted: int) -> bytes:
    """ROW_SUMS_FILE's content: the metric sums (arrays, kept exactly) of `counted` updates."""
    buffer = io.BytesIO()
    np.savez(buffer, counted=np.int64(counted), **{_SUM + name: np.asarray(v) for name, v in sums.items()})
    return buffer.getvalue()


def read_row_sums(data: bytes) -> tuple[dict, int]:
    """(metric sums, updates) from ROW_SUMS_FILE's content."""
    with np.load(io.BytesIO(data)) as saved:
        sums = {name[len(_SUM):]: saved[name] for name in saved.files if name.startswith(_SUM)}
        return sums, int(saved['counted'])


def require_writable_dir(path: str, what: str) -> None:
    """Refuses, before any expensive work, a directory that cannot be created or written;
    `what` names it in the message (e.g. "--save_dir 'exp/'").

    Probes by creating (and removing) a temporary directory in `path` or in its nearest
    existing ancestor, since permission bits lie for root and on special filesystems (/proc).
    """
    existing = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f'{what} cannot be created: {existing!r} is a file, not a directory.')
    try:
        os.rmdir(tempfile.mkdtemp(prefix='.flowrl-write-test-', dir=existing))
    except OSError as error:
        raise UserError(f'{what} is not writable ({error.strerror} in {existing!r}); '
                        'pass a directory you can write to.') from None


def new_run_dir(s, task) -> str:
    """SAVE_DIR/RUN_GROUP/<agent>_<task>_sd<seed>_<time>, made (with a suffix if it exists)."""
    stamp = time.strftime('%Y%m%d_%H%M%S')
    name = f'{agent_name(s.agent)}_{task.short_name}_sd{s.seed:03d}_{stamp}'
    path = os.path.join(os.path.expanduser(s.save_dir), s.run_group, name)
    suffix = 0
    while os.path.exists(path if not suffix else f'{path}_{suffix}'):
        suffix += 1
    path = path if not suffix else f'{path}_{suffix}'
    os.makedirs(path)
    return path


class RunFiles:
    """The files of the run in `run_dir` (made before: `new_run_dir`, or the resumed run's)."""

    def __init__(self, run_dir: str, placement, log=print):
        self.run_dir, self.placement, self.log = run_dir, placement, log
        self.checkpoint_dir = os.path.join(run_dir, run_files.CHECKPOINT_DIR)
        self.train_log = run_files.CsvLog(os.path.join(run_dir, run_files.TRAIN_CSV))
        self.eval_log = run_files.CsvLog(os.path.join(run_dir, run_files.EVAL_CSV))
        self.loggers = None  # started by `open`

    def open(self, description: dict | None, logger: str, labels: list, configs: list, settings: dict) -> None:
        """Writes flags.json (`description`; None: a resumed run keeps its own) and starts the loggers."""
        if description is not None and self.placement.writes_files:
            run_files.write_json(os.path.join(self.run_dir, run_files.FLAGS_FILE), description)
        self.loggers = Loggers(parse_loggers(logger) if self.placement.writes_files else [], self.run_dir, labels,
                               configs, settings, self.log)

    def log_rows(self, kind: str, rows: list) -> None:
        """train.csv or eval.csv rows and the loggers' copies, written by process 0 alone."""
        if self.placement.writes_files:
            (self.train_log if kind == 'train' else self.eval_log).append(rows)
            self.loggers.log(kind, rows)

    def start_over(self) -> None:
        """A run resumed without a checkpoint (stopped before its first save) trains again from
        update 0: what the stopped run wrote besides flags.json (log rows, a row cut short, the
        loggers' files, a temporary file of an interrupted write) is removed first, so that the
        run writes its files afresh, as an uninterrupted one (its loggers are not started yet).
        Process 0 alone removes them."""
        if not self.placement.writes_files:
            return
        names = [name for name in sorted(os.listdir(self.run_dir)) if self._written_by_a_run(name)]
        for name in names:
            path = os.path.join(self.run_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        self.train_log, self.eval_log = (run_files.CsvLog(log.path) for log in (self.train_log, self.eval_log))

    @staticmethod
    def _written_by_a_run(name: str) -> bool:
        written = (*WRITTEN_FILES, *WRITTEN_DIRECTORIES)
        leftovers = tuple(run_files.temporary_prefix(file) for file in (*WRITTEN_FILES, run_files.FLAGS_FILE))
        return name in written or name.startswith(leftovers)

    def evaluated_at(self, step: int) -> bool:
        """Whether eval.csv holds rows of update `step` (process 0 reads; every process gets its answer)."""
        return self.placement.on_writer(lambda: any(int(r['step']) == step for r in self.eval_log.read()))

    def write_diverged(self, diverged: dict) -> None:
        if self.placement.writes_files:
            run_files.write_diverged(self.run_dir, diverged)

    def diverged_by(self, step: int) -> dict:
        """The members diverged.json records as diverged at or before update `step`."""
        return {i: record for i, record in run_files.read_diverged(self.run_dir).items()
                if record['diverged_at_update'] <= step}

    def rewind(self, step: int, diverged: dict) -> None:
        """A resume from checkpoint `step`: the log rows written after it are dropped, and
        diverged.json keeps the members diverged by then."""
        if self.placement.writes_files:
            self.train_log.truncate_after(step)
            self.eval_log.truncate_after(step)
            run_files.write_diverged(self.run_dir, diverged)

    def checkpoint_note(self) -> str:
        step = checkpoints.latest_step(self.checkpoint_dir)
        if step is None:
            return 'no checkpoint was saved before it'
        return f'the latest checkpoint is update {step:,} in {self.checkpoint_dir}'

    def row_sums_at(self, step: int):
        """(metric sums as host arrays, updates) since the last train.csv row, as saved with
        checkpoint `step` by a stop between two rows; (None, 0) otherwise."""
        data = checkpoints.attachment(self.checkpoint_dir, step, ROW_SUMS_FILE)
        if data is None:
            return None, 0
        return read_row_sums(data)

    def write_results(self, results: dict) -> None:
        """results.json (process 0 alone)."""
        if self.placement.writes_files:
            run_files.write_json(os.path.join(self.run_dir, run_files.RESULTS_FILE), results)

    def write_report(self):
        """RUN_DIR/report/: the run's table and plots. A failure here costs the report, not the run."""
        from flowrl.results.report import write_report

        try:
            paths = write_report([self.run_dir], os.path.join(self.run_dir, 'report'), log=self.log)
        except Exception as error:  # noqa: BLE001 -- the results are already written
            self.log(f'warning: no report written ({type(error).__name__}: {error}); '
                     f'python -m flowrl.results.report {self.run_dir} retries.')
            return
        self.log(f'Report: {paths["markdown"]} and {len(paths["plots"])} plot(s) in {os.path.dirname(paths["markdown"])}')
