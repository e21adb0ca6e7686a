"""What a training run shows while it runs: chunks cut by wall time, a bar or plain lines.

The compiled program runs a chunk of updates per dispatch and the console can only change
between chunks. Chunks used to end only at log/eval/save steps, so with the default
--log_interval a CPU run showed 0 % for minutes. `ChunkPacer` cuts the stretch between two
such steps into chunks of about `seconds` each, from the speed measured so far; the chunk
length is an argument of the one compiled program (flowrl.engine.training), so this costs no
compilation, and train.csv rows do not depend on where the cuts fall.

`Progress` draws a tqdm bar (updates/s, ETA, losses, last evaluation) on a terminal, and
without one (a log file, a batch job) prints one plain line per train.csv row instead of
carriage-return redraws. Once compiled, it says how long the updates left will take at the speed
measured, before the long wait. `console_line` is a run's default `log`: a line printed while the
bar is drawn goes above it, not onto its end.
"""

import sys
import time

import tqdm

SHOWN_METRICS = ('critic/loss', 'actor/loss')  # else the first two metrics named *loss


class ChunkPacer:
    """Chunk lengths that take about `seconds` each at the speed measured so far.

    The first chunk is short (it also compiles); each next one is at most `growth` times the
    last, so one slow measurement (compilation, a busy machine) is corrected within a few chunks."""

    def __init__(self, seconds: float = 2.0, first: int = 16, growth: float = 4.0):
        self.seconds, self.growth = seconds, growth
        self._size = first

    def size(self) -> int:
        return self._size

    def record(self, updates: int, seconds: float) -> None:
        """Learns from a chunk of `updates` updates that took `seconds`."""
        wanted = updates * self.seconds / seconds if seconds > 0 else float('inf')
        self._size = max(1, int(min(wanted, self.growth * max(updates, self._size))))


def console_line(message: str) -> None:
    """Prints one line; while a tqdm bar is on the terminal, above the bar (which is redrawn below
    it) instead of after the bar's text. Without a bar it is print()."""
    tqdm.tqdm.write(str(message), file=sys.stdout)
    sys.stdout.flush()


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class Progress:
    """The run's progress on the console; `interactive` (default: stderr is a terminal) picks
    the bar, otherwise plain lines go to `log`."""

    def __init__(self, total: int, initial: int, name: str, log=console_line, interactive: bool | None = None):
        self.total, self.initial, self.name, self.log = total, initial, name, log
        self.chunks = 0
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.step, self.started = initial, time.monotonic()
        self.train_updates, self.train_seconds = 0, 0.0  # since the last plain line
        self.shown, self.last_eval = {}, None
        self.bar = None
        if self.interactive:
            self.bar = tqdm.tqdm(total=total, initial=initial, unit='upd', dynamic_ncols=True, smoothing=0.1,
                                 desc=f'{name} (compiling)')

    def advanced(self, updates: int, seconds: float, metrics: dict) -> None:
        """After a chunk of `updates` that took `seconds`; `metrics`: means over the members so far."""
        self.step += updates
        self.train_updates += updates
        self.train_seconds += seconds
        self.chunks += 1
        if self.chunks == 2:  # the first chunk also compiled: the second is the first speed measured
            self.log(self.estimate(updates, seconds))
        names = [k for k in SHOWN_METRICS if k in metrics] or [k for k in metrics if k.endswith('loss')][:2]
        self.shown = {k.replace('/loss', ' loss').split('/')[-1]: float(metrics[k]) for k in names}
        if self.bar is not None:
            self.bar.set_description_str(self.name, refresh=False)
            self.bar.set_postfix(self._postfix(), refresh=False)
            self.bar.update(updates)

    def estimate(self, updates: int, seconds: float) -> str:
        """How long the updates left take at the speed of a chunk of `updates` in `seconds`."""
        rate = updates / max(seconds, 1e-9)
        left = self.total - self.step
        return (f'Speed once compiled: {rate:,.1f} updates/s on this machine; the {left:,} updates left take about '
                f'{format_duration(left / rate)} (h:mm:ss) at this speed, evaluations not included.')

    def evaluated(self, step: int, success: float) -> None:
        self.last_eval = (step, success)
        if self.bar is not None:
            self.bar.set_postfix(self._postfix())

    def logged(self) -> None:
        """A train.csv row was written: without a terminal, one plain line."""
        if self.bar is None:
            self.log(self.line())
            self.train_updates, self.train_seconds = 0, 0.0

    def line(self) -> str:
        parts = [f'{self.name} {self.step:,}/{self.total:,} ({100 * self.step / self.total:.1f}%)']
        if self.train_seconds > 0:
            parts.append(f'{self.train_updates / self.train_seconds:.1f} upd/s')
        elapsed = time.monotonic() - self.started
        if self.step > self.initial and elapsed > 0:
            # Wall time per update so far, evaluations included: they recur, so the ETA counts them.
            remaining = (self.total - self.step) * elapsed / (self.step - self.initial)
            parts.append(f'ETA {format_duration(remaining)}')
        if self.shown:
            parts.append(', '.join(f'{k} {v:.4g}' for k, v in self.shown.items()))
        if self.last_eval is not None:
            parts.append(f'last eval {100 * self.last_eval[1]:.1f}% at {self.last_eval[0]:,}')
        return ' | '.join(parts)

    def _postfix(self) -> dict:
        shown = {k: f'{v:.3g}' for k, v in self.shown.items()}
        if self.last_eval is not None:
            shown['eval'] = f'{100 * self.last_eval[1]:.1f}%@{self.last_eval[0]:,}'
        return shown

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
