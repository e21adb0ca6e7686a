"""The formats of a run directory that more than the run reads: the names of flags.json,
train.csv, eval.csv, results.json, diverged.json and checkpoints/, the rows' labels, the CSV logs,
and the atomic JSON and text writes that checkpoints and datasets use too. The results read runs
through it (flowrl.results); what only the run writes and reads (a stop's metric sums, the
directory's checks, the files a run writes) is flowrl.run.files.

JSON files are written to a temporary name and renamed, with null for non-finite numbers
(JSON has no NaN). CSVs are appended row by row while training; on resume they are rewritten
(atomically) without the rows past the checkpoint, so an interrupted and resumed run has
exactly the rows an uninterrupted one would. A write that fails (a full disk: flowrl.disk.NoSpace)
leaves the file as it was before it.
"""

import contextlib
import csv
import io
import json
import os
import tempfile

import numpy as np

from flowrl.disk import naming_no_space

FLAGS_FILE, TRAIN_CSV, EVAL_CSV, RESULTS_FILE, CHECKPOINT_DIR = (
    'flags.json', 'train.csv', 'eval.csv', 'results.json', 'checkpoints')
DIVERGED_FILE = 'diverged.json'  # members of a sweep that diverged: update and metrics
# The columns of a train.csv or eval.csv row that label it (which update, which member); every
# other column but a sweep's swept values is a metric (loggers, report plots).
ROW_LABELS = ('step', 'member', 'seed')
# train.csv: an update's metrics on the validation split are `<prefix><metric>` beside `<metric>`.
VALIDATION_PREFIX = 'validation/'


def _jsonable(value):
    """`value` with numpy scalars and arrays as Python ones and non-finite floats as None."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def temporary_prefix(name: str) -> str:
    """How the temporary files of `write_atomic` to the file `name` begin (one is left behind
    only by a process killed while writing)."""
    return '.' + name + '.'


def write_atomic(path: str, text: str | bytes) -> None:
    """Writes `text` (str, or bytes such as a PNG) to `path` through a temporary file in the
    same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    with naming_no_space(path):
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(os.path.basename(path)), dir=directory)
        try:
            with os.fdopen(fd, 'wb' if isinstance(text, bytes) else 'w') as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def as_written(data):
    """`data` as `write_json` writes it and `read_json` reads it back (tuples as lists, inf as None)."""
    return json.loads(json.dumps(_jsonable(data), allow_nan=False))


def write_json(path: str, data) -> None:
    write_atomic(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + '\n')


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def read_diverged(run_dir: str) -> dict:
    """{member index: dict(diverged_at_update, diverged_metrics)} of a run (empty if none)."""
    path = os.path.join(run_dir, DIVERGED_FILE)
    return {int(k): v for k, v in read_json(path).items()} if os.path.exists(path) else {}


def write_diverged(run_dir: str, diverged: dict) -> None:
    write_json(os.path.join(run_dir, DIVERGED_FILE), {str(k): v for k, v in sorted(diverged.items())})


class CsvLog:
    """Rows of dicts appended to a CSV; the header is fixed by the first row written.

    A crash while a row is appended leaves a partial last line: it is never read as a row, and
    `truncate_after` (run on resume) removes it, so the run continues on a clean file.
    """

    def __init__(self, path: str):
        self.path = path
        self.fields = None
        if os.path.exists(path):
            self.fields = next(csv.reader(io.StringIO(self._complete_text())), None)

    def _complete_text(self) -> str:
        """The file up to its last complete line (every row written ends with a line break)."""
        with open(self.path, newline='') as f:
            text = f.read()
        return text[:text.rfind('\n') + 1]

    def append(self, rows: list[dict]) -> None:
        """Appends `rows`; if that fails (a full disk), the file is cut back to what it held."""
        if not rows:
            return
        new_file = self.fields is None
        fields = list(rows[0].keys()) if new_file else self.fields
        size = os.path.getsize(self.path) if os.path.exists(self.path) else None
        with naming_no_space(self.path):
            try:
                with open(self.path, 'a', newline='') as f:
                    writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
                    if new_file:
                        writer.writeheader()
                    writer.writerows(rows)
            except BaseException:
                self._cut_back(size)
                raise
        self.fields = fields

    def _cut_back(self, size: int | None) -> None:
        """The file as it was before a failed append: `size` bytes long, or absent (None)."""
        if size is None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        elif os.path.exists(self.path):
            os.truncate(self.path, size)  # needs no space

    def read(self) -> list[dict]:
        """Complete rows only: a row with missing or extra fields is a damaged one."""
        if not os.path.exists(self.path):
            return []
        rows = csv.DictReader(io.StringIO(self._complete_text()))
        return [row for row in rows if None not in row and None not in row.values()]

    def truncate_after(self, step: int) -> None:
        """Drops rows logged after `step` (they belong to updates a resume will redo) and any
        damaged row, rewriting the file atomically."""
        if not os.path.exists(self.path):
            return
        rows = [r for r in self.read() if int(r['step']) <= step]
        buffer = io.StringIO()
        if self.fields is not None:
            writer = csv.DictWriter(buffer, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)
        write_atomic(self.path, buffer.getvalue())


def row_score(row: dict) -> float:
    """An eval.csv row's score (runs written before the score column scored success)."""
    return float(row['score'] if row.get('score') not in (None, '') else row['success'])
