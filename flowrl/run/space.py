"""The space a run needs in its directory, checked before it starts (flowrl.disk.require_space
refuses it in one sentence): the checkpoints it will save and keep, its logs and its report."""

import os

from flowrl.disk import format_bytes, require_space
from flowrl.run.settings import RunSettings

ROW_BYTES = 2048  # one member's train.csv or eval.csv row, generously (FQL's online rows: ~1 KB)
REPORT_BYTES = 4 * 2**20  # report/: a table and a few plots


def save_points(s: RunSettings, total_steps: int, after: int = 0) -> set:
    """The updates after `after` at which a run with settings `s` saves a checkpoint: every
    --save_interval, before every evaluation, at the end."""
    points = {total_steps}
    for interval in (s.save_interval, s.eval_interval if s.eval_episodes else 0):
        if interval:
            points.update(range(interval, total_steps + 1, interval))
    return {point for point in points if point > after}


def run_growth(s: RunSettings, total_steps: int, members: int, checkpoint_bytes: int, saved_steps: list,
               max_to_keep: int, log_copies: int = 0) -> dict:
    """What a run with settings `s` adds to its directory at most, {description: bytes}: the
    checkpoints it will save, up to `max_to_keep` kept and one being written (less those already
    there, `saved_steps`), and its logs (with `log_copies` loggers writing a copy of each row) and report."""
    to_come = len(save_points(s, total_steps, after=saved_steps[-1] if saved_steps else 0))
    count = max(0, min(to_come, max_to_keep + 1 - len(saved_steps)))
    rows = total_steps // s.log_interval + len(save_points(s, total_steps))
    rows += total_steps // s.eval_interval if s.eval_interval and s.eval_episodes else 0
    logs = rows * members * ROW_BYTES * (1 + log_copies)
    return {f'{count} checkpoint(s) of {format_bytes(checkpoint_bytes)}': count * checkpoint_bytes,
            'logs and report': logs + (REPORT_BYTES if s.report else 0)}


def require_run_space(s: RunSettings, run_dir: str | None, parts: dict) -> None:
    """`require_space` for a new run under --save_dir (`run_dir` None) or a resumed one."""
    if run_dir is None:
        where = os.path.join(os.path.expanduser(s.save_dir), s.run_group)
        require_space(where, parts, f'--save_dir {s.save_dir!r}', 'free some space or pass another --save_dir')
    else:
        require_space(run_dir, parts, f'The run directory {run_dir!r}', 'free some space first')
