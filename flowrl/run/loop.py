"""The order of a run, in one place.

    for each boundary (a log, evaluation or save interval, a phase start, the end):
        offline chunks, or online steps, up to it        (parts: offline, online; divergence noted)
        a train.csv row at log intervals and before every checkpoint
        a checkpoint at save intervals and before every evaluation
        a stop request ends the run here, with a checkpoint
        an evaluation at eval intervals and at the end

Everything that changes as the run trains is one explicit value, the Position
(flowrl.run.state); the parts (flowrl.run.offline, flowrl.run.online_steps, flowrl.run.evaluating)
take it and return it changed. What the run does with files (rows, checkpoints, evaluations
written, the stop's checkpoint and line) is the `Recorder` a caller passes: the command's run
directory (flowrl.run.runner.Run), or anything else with those methods.
"""

import dataclasses
import time
from typing import Protocol

import numpy as np

from flowrl.engine.training import chunk_boundaries, phase_at
from flowrl.errors import TrainingDiverged
from flowrl.run.state import Position, describe_divergence, with_divergence


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When things happen, in updates counted from the run's start."""
    offline_steps: int
    total_steps: int  # offline updates + online steps
    log_interval: int
    eval_interval: int  # 0: never
    save_interval: int  # 0: only before evaluations and at the end
    evaluates: bool = True  # False: no evaluation episodes (--eval_episodes=0)
    chunk_ends: tuple = ()  # other updates a chunk must end at (phase starts, dataset work)
    swap_interval: int = 0  # a stream of shards swaps one at chunk starts at its multiples (0: no stream)

    def boundaries(self, start: int):
        """Updates after `start` at which a chunk must end, in increasing order: every multiple of
        each interval, each of `chunk_ends`, the switch from offline to online, and the end."""
        intervals = (self.log_interval, self.eval_interval, self.save_interval, self.swap_interval)
        return chunk_boundaries(start, self.total_steps, intervals,
                                (*self.chunk_ends, self.offline_steps))

    def evaluates_at(self, step: int) -> bool:
        return bool(self.evaluates and self.eval_interval and step > 0
                    and (step % self.eval_interval == 0 or step == self.total_steps))

    def saves_at(self, step: int) -> bool:
        """A checkpoint before every evaluation too: a crash while evaluating loses no training."""
        return bool(self.save_interval and step % self.save_interval == 0) or step == self.total_steps \
            or self.evaluates_at(step)

    def logs_at(self, step: int) -> bool:
        """Rows are also written at checkpoints, whose resumes start with empty sums."""
        return step % self.log_interval == 0 or self.saves_at(step)


class Recorder(Protocol):
    """What a run's loop asks of whoever keeps its record (flowrl.run.runner.Run for the command)."""

    def stop_requested(self) -> int | None: ...  # the stop signal every process agrees on, or None

    def stop(self, position: Position): ...  # saves what a resume needs, then raises stopping.Stopped

    def write_train_row(self, position: Position, values: dict) -> None: ...

    def save(self, position: Position) -> None: ...

    def evaluate(self, position: Position) -> dict: ...  # runs and records an evaluation

    def evaluated_at(self, step: int) -> bool: ...

    def record_divergence(self, position: Position, described: str, frozen_at: int) -> None: ...

    def checkpoint_note(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class Parts:
    """The units the loop drives, and the facts it needs about the members."""
    offline: object  # flowrl.run.offline.OfflineChunks
    phases: list  # [(first agent step, update)], flowrl.engine.training.update_phases
    placement: object  # flowrl.engine.placement.Placement
    labels: list  # the members' labels
    agent_path: str  # named when the agents break the step contract
    online: object = None  # flowrl.run.online_steps.OnlineSteps (None: no online steps)
    validation: object = None  # flowrl.run.evaluating.Validation (None: no validation split)

    def row_extras(self, position: Position) -> dict:
        """A train.csv row's columns besides the update's metrics: validation metrics and
        exploration statistics, where the run has them."""
        extras = {}
        if self.validation is not None:
            extras.update(self.validation.row(position.states, position.step, position.first_agent_step))
        if self.online is not None:
            extras.update(self.online.exploration())
        return extras


def train(position: Position, schedule: Schedule, parts: Parts, recorder: Recorder, progress, pacer) -> Position:
    """Runs from `position` to the schedule's end and returns the final position; a stop request
    ends it through `recorder.stop` at the next boundary, a run whose every member diverged with
    TrainingDiverged."""
    if schedule.evaluates_at(position.step) and not recorder.evaluated_at(position.step):
        # Resumed from the checkpoint saved just before an evaluation that did not finish.
        evaluate(position, recorder, progress)
    for stop in schedule.boundaries(position.step):
        advance = offline_until if stop <= schedule.offline_steps else online_until
        position, means = advance(position, stop, parts, recorder, progress, pacer)
        if position.step < stop:  # a stop was requested
            recorder.stop(position)
        if schedule.logs_at(stop):
            recorder.write_train_row(position, {**means, **parts.row_extras(position)})
            progress.logged()
            position = position.row_written()
        if schedule.saves_at(stop):
            recorder.save(position)
        if recorder.stop_requested():
            recorder.stop(position)
        if schedule.evaluates_at(stop):
            evaluate(position, recorder, progress)
    progress.close()
    return position


def evaluate(position: Position, recorder: Recorder, progress) -> None:
    stats = recorder.evaluate(position)
    progress.evaluated(position.step, float(np.nanmean(np.asarray(stats['score'])[position.alive])))


def offline_until(position: Position, stop: int, parts: Parts, recorder: Recorder, progress, pacer):
    """Chunks of about `pacer.seconds` each up to update `stop`; returns (position, the metric means
    of the row so far, or None when a stop came before the first chunk)."""
    means = None
    while position.step < stop and not recorder.stop_requested():
        # The chunk's length is one argument of a program every process runs: process 0's pacer decides.
        start, updates = position.step, min(stop - position.step, parts.placement.agreed(pacer.size()))
        began = time.monotonic()
        position, first_bad, sums = parts.offline.chunk(position, updates, agent_step(position, parts))
        seconds = time.monotonic() - began
        pacer.record(updates, seconds)
        means = {k: v / position.counted for k, v in sums.items()}
        position = note_divergence(position, means, first_bad, start, parts, recorder)
        progress.advanced(updates, seconds, alive_means(position, means))
    return position, means


def online_until(position: Position, stop: int, parts: Parts, recorder: Recorder, progress, pacer):
    """Online steps up to update `stop` (as `offline_until`); divergence is noted at the step it
    happens, so a member that diverged takes no further step."""
    update = phase_at(parts.phases, agent_step(position, parts))
    position = parts.online.start(position, update)
    means = None
    while position.step < stop and not recorder.stop_requested():
        # Every process makes the same gathers: process 0's pacer decides how many steps between them.
        steps, began = min(stop - position.step, parts.placement.agreed(pacer.size())), time.monotonic()
        for _ in range(steps):
            position, first_bad = parts.online.step(position, update)
            if np.any(first_bad >= 0):
                position = note_divergence(position, parts.online.means(position), first_bad, position.step - 1,
                                           parts, recorder)
        seconds = time.monotonic() - began
        pacer.record(steps, seconds)
        means = parts.online.means(position)
        progress.advanced(steps, seconds, alive_means(position, means))
    return position, means


def note_divergence(position: Position, means: dict, first_bad, chunk_start: int, parts: Parts,
                    recorder: Recorder) -> Position:
    """Members whose metrics turned non-finite: in a sweep they are recorded and frozen (the programs
    kept their pre-chunk states) and the others go on; when none is left the run ends."""
    position, new = with_divergence(position, means, first_bad, chunk_start)
    if not new:
        return position
    described = describe_divergence(position, new, parts.labels)
    if not position.alive.any():
        raise TrainingDiverged(f'Training diverged: {described}; {recorder.checkpoint_note()}.')
    recorder.record_divergence(position, described, chunk_start)
    return position


def alive_means(position: Position, means: dict) -> dict:
    return {k: np.mean(v[position.alive]) for k, v in means.items()}


def agent_step(position: Position, parts: Parts) -> int:
    """The agents' step, from which their phase is derived: the step they started this run at plus
    the run's updates. Every member still training must hold it (each update adds one to
    `state.step`); one that does not means an update broke that contract, and training on would
    run phases by a step the agents do not have."""
    expected = position.first_agent_step + position.step
    steps = getattr(position.states, 'step', None)  # an agent state without a step counter: the run's
    if steps is None:
        return expected
    held = np.asarray(parts.placement.gather(steps))[position.alive]
    if np.any(held != expected):
        raise RuntimeError(f'At update {position.step:,} of this run the agents hold step(s) '
                           f'{sorted(set(held.tolist()))} and should hold {expected:,}: '
                           f'{parts.agent_path} does not add one to state.step per update.')
    return expected
