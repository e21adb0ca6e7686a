"""Optional loggers beside the CSVs: `--logger=csv,tensorboard,wandb`.

train.csv and eval.csv are always written and stay the source of truth (resume, reports).
TensorBoard (tensorboardX) writes one event directory per member, RUN_DIR/tensorboard/member_<i>;
W&B writes one run per member, grouped by the run directory, offline unless `--wandb_mode=online`.
A logger never stops a run: a missing package, a service that cannot be reached or any error
while logging costs one warning line, then that logger is off and the CSVs go on.
"""

import os
import time

from flowrl.errors import UserError
from flowrl.run_files import ROW_LABELS

LOGGERS = ('csv', 'tensorboard', 'wandb')
WANDB_MODES = ('offline', 'online', 'disabled')
EXTRAS = dict(tensorboard='tensorboardX', wandb='wandb')  # logger -> package (pyproject extra of the same name)
# What each logger writes under the run directory (wandb names its own: `wandb` under `dir`).
DIRECTORIES = dict(tensorboard='tensorboard', wandb='wandb')


def parse_loggers(text: str) -> list:
    """The optional loggers named in a --logger value ('csv' is always on)."""
    names = [name.strip() for name in text.split(',') if name.strip()]
    unknown = [name for name in names if name not in LOGGERS]
    if unknown:
        raise UserError(f'--logger takes a comma-separated list of {", ".join(LOGGERS)}; got {", ".join(unknown)}.')
    return [name for name in dict.fromkeys(names) if name != 'csv']


def scalars(row: dict, label_keys) -> dict:
    """The numbers of a CSV row that are metrics (not the step or the member's label)."""
    return {k: float(v) for k, v in row.items() if k not in ROW_LABELS and k not in label_keys
            and isinstance(v, (int, float))}


def member_name(label: dict) -> str:
    return '_'.join(f'{k}{v}' for k, v in label.items() if k != 'member')


class TensorBoardLogger:
    """One event file per member, written synchronously (tensorboardX's EventsWriter): every row
    is on disk when `log` returns, so TensorBoard follows a run live and a crash loses nothing.
    (tensorboardX's SummaryWriter hands events to a background thread, and its flush does not
    wait for that thread's queue: rows could reach the file late, or never.)"""

    def __init__(self, run_dir: str, labels: list, configs: list, settings: dict):
        from tensorboardX import event_file_writer  # the package first: ImportError when it is missing

        self.writers = {}
        for label in labels:
            directory = os.path.join(run_dir, DIRECTORIES['tensorboard'], f'member_{label["member"]}')
            os.makedirs(directory, exist_ok=True)
            self.writers[label['member']] = event_file_writer.EventsWriter(os.path.join(directory, 'events'))
        self.label_keys = set().union(*labels)

    def log(self, kind: str, rows: list) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        now = time.time()
        for row in rows:
            writer = self.writers[int(row['member'])]
            for name, value in scalars(row, self.label_keys).items():
                tag = name if kind == 'train' else f'{kind}/{name}'
                writer.write_event(Event(wall_time=now, step=int(row['step']), summary=scalar(tag, value)))
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class WandbLogger:
    def __init__(self, run_dir: str, labels: list, configs: list, settings: dict):
        import wandb

        group = os.path.basename(os.path.normpath(run_dir))
        self.runs, self.label_keys = {}, set().union(*labels)
        # Several runs in this process: no console capture, and instead of ~15 lines per run from
        # wandb, one from describe(). wandb also takes any top-level `agents` package (another
        # project's) for the OpenAI Agents SDK and advertises LLM tracing unless told not to.
        os.environ.setdefault('WANDB_DISABLE_WEAVE', 'true')
        quiet = wandb.Settings(console='off', silent=True)
        for label, config in zip(labels, configs):
            # One W&B run per member, several in this process: reinit='create_new' (wandb >= 0.19.10).
            self.runs[label['member']] = wandb.init(
                project='flowrl', group=group, name=f'{group}_{member_name(label)}',
                id=f'{group}-m{label["member"]}', resume='allow', dir=run_dir, mode=settings['wandb_mode'],
                config=dict(agent=config, settings=settings, member=label), reinit='create_new', settings=quiet)
        self.mode, self.group, self.directory = settings['wandb_mode'], group, os.path.join(run_dir, DIRECTORIES['wandb'])

    def describe(self) -> str | None:
        if self.mode == 'disabled':
            return None
        first = next(iter(self.runs.values()))
        where = (f'the first at {first.url}' if self.mode == 'online'  # .url warns in offline mode
                 else f'upload them with `wandb sync {self.directory}/offline-run-*`')
        return f'W&B: {len(self.runs)} {self.mode} run(s), group {self.group}, project {first.project}: {where}.'

    def log(self, kind: str, rows: list) -> None:
        for row in rows:
            values = scalars(row, self.label_keys)
            self.runs[int(row['member'])].log({(k if kind == 'train' else f'{kind}/{k}'): v for k, v in values.items()},
                                              step=int(row['step']))

    def close(self) -> None:
        for run in self.runs.values():
            run.finish()


BACKENDS = dict(tensorboard=TensorBoardLogger, wandb=WandbLogger)


class Loggers:
    """The run's optional loggers; each one that fails warns once and turns itself off."""

    def __init__(self, names: list, run_dir: str, labels: list, configs: list, settings: dict, log=print):
        self.log_line, self.active = log, {}
        for name in names:
            try:
                logger = BACKENDS[name](run_dir, labels, configs, settings)
                description = getattr(logger, 'describe', lambda: None)()
                self.active[name] = logger
                if description:
                    log(description)
            except ImportError:
                self._warn(name, f'the {EXTRAS[name]} package is not installed (pip install -e ".[{name}]")')
            except Exception as error:  # noqa: BLE001 -- an optional logger must never stop a run
                self._warn(name, f'it could not start ({type(error).__name__}: {error})')

    def _warn(self, name: str, cause: str) -> None:
        self.log_line(f'warning: --logger={name} is off: {cause}; train.csv and eval.csv are written as always.')

    def _each(self, call) -> None:
        for name, logger in list(self.active.items()):
            try:
                call(logger)
            except Exception as error:  # noqa: BLE001
                del self.active[name]
                self._warn(name, f'it failed ({type(error).__name__}: {error})')

    def log(self, kind: str, rows: list) -> None:
        """`rows` as written to `kind`.csv ('train' or 'eval')."""
        self._each(lambda logger: logger.log(kind, rows))

    def close(self) -> None:
        self._each(lambda logger: logger.close())
