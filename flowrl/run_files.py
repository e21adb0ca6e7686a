"""Files of a run directory: flags.json, train.csv, eval.csv, results.json, checkpoints/.

JSON files are written to a temporary name and renamed. CSVs are appended row by row while
training; on resume they are rewritten (atomically) without the rows past the checkpoint, so
an interrupted and resumed run has exactly the rows an uninterrupted one would.
"""

import csv
import json
import os
import tempfile

import numpy as np

FLAGS_FILE, TRAIN_CSV, EVAL_CSV, RESULTS_FILE, CHECKPOINT_DIR = (
    'flags.json', 'train.csv', 'eval.csv', 'results.json', 'checkpoints')


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=_jsonable) + '\n')


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


class CsvLog:
    """Rows of dicts appended to a CSV; the header is fixed by the first row written."""

    def __init__(self, path: str):
        self.path = path
        self.fields = None
        if os.path.exists(path):
            with open(path, newline='') as f:
                self.fields = next(csv.reader(f), None)

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        new_file = self.fields is None
        if new_file:
            self.fields = list(rows[0].keys())
        with open(self.path, 'a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction='ignore')
            if new_file:
                writer.writeheader()
            writer.writerows(rows)

    def read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline='') as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Drops rows logged after `step` (they belong to updates a resume will redo)."""
        rows = [r for r in self.read() if int(r['step']) <= step]
        if self.fields is None:
            return
        import io
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fields)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, buffer.getvalue())
