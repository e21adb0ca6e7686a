"""The record a run of the command keeps in its run directory while the loop (flowrl.run.loop)
trains: train.csv rows, checkpoints of the Position (and, online, of the members' running
episodes; with a sharded dataset, where its stream is), evaluations and their eval.csv rows,
diverged members, and the checkpoint and line of a stop. It is the loop's Recorder; a checkpoint read back is a Position again (`restored`)."""

import numpy as np

from flowrl import stopping
from flowrl.engine import checkpoints
from flowrl.run.files import ROW_SUMS_FILE, row_sums_bytes
from flowrl.run.resume_lines import stopped_line
from flowrl.run.state import Position
from flowrl.run.stream import StreamState


class RunRecord:
    def __init__(self, files, placement, labels: list, offline_steps: int, total_steps: int, evaluation, online,
                 log=print):
        """`files`: the run's RunFiles; `evaluation`, `online`: the run's Evaluation and OnlineSteps parts
        (an evaluation's episodes; the running episodes a checkpoint holds; None without online steps)."""
        self.files, self.placement, self.labels, self.log = files, placement, labels, log
        self.offline_steps, self.total_steps = offline_steps, total_steps
        self.evaluation, self.online = evaluation, online
        self.checkpoint_dir = files.checkpoint_dir
        self.progress = None  # the progress line, while the loop runs (a stop closes it)

    # -- checkpoints -----------------------------------------------------------------------
    def carry(self, position: Position, step: int, online, episodes) -> dict:
        """What a checkpoint at `step` holds: states and keys, and once online transitions exist the
        online buffers and the members' running episodes (OnlineSteps.episodes), which go on across
        checkpoints and evaluations as in the authors' loop."""
        carry = dict(states=position.states, rngs=position.rngs)
        if position.stream is not None:  # where a sharded dataset's stream is: one row per member, all equal
            carry['stream'] = self.placement.put(np.tile(position.stream.as_row(), (self.placement.padded, 1)))
        if step > self.offline_steps:
            carry.update(online=online, episodes=episodes)
        return carry

    def save(self, position: Position, attachments=None) -> None:
        step = position.step
        episodes = self.online.episodes(position) if step > self.offline_steps else None
        checkpoints.save(self.checkpoint_dir, step, self.carry(position, step, position.buffers, episodes),
                         attachments, writes_manifest=self.placement.writes_files)
        self.placement.barrier(f'saved {step}')  # the manifest is written before anyone goes on

    def restored(self, like: Position) -> Position:
        """The position of the newest checkpoint that passes verification (setting newer, damaged
        ones aside; `like`: a position of the same shapes), with the members diverged by then; the
        log rows written after it are dropped."""
        files, online = self.files, self.online
        # Process 0 checks the checkpoints and sets damaged ones aside; every process reads its choice.
        step = self.placement.on_writer(lambda: checkpoints.pick_step(self.checkpoint_dir, log=self.log,
                                                                      set_aside=True))
        is_online = step > self.offline_steps
        if is_online:
            online.make_envs()
        shapes = self.carry(like, step, online.abstract_buffers() if is_online else None,
                            online.abstract_episodes() if is_online else None)
        tree = checkpoints.read(self.checkpoint_dir, shapes, step)
        diverged = files.diverged_by(step)
        files.rewind(step, diverged)
        alive = self.placement.active.copy()
        alive[list(diverged)] = False
        position = like.replace(states=tree['states'], rngs=tree['rngs'], step=step, diverged=diverged, alive=alive,
                                buffers=tree.get('online'))
        if 'stream' in tree:
            row = np.asarray(self.placement.gather(tree['stream']))[0]  # every member's row is the same
            position = position.replace(stream=StreamState.from_row(row))
        if is_online:
            position = online.restored(position, tree['episodes'])
        steps = np.asarray(self.placement.gather(getattr(position.states, 'step', np.zeros(0))))[alive]
        if steps.size:  # the agents' own count says where their schedules are (a --restore_path run's offset)
            position = position.replace(first_agent_step=int(steps.max()) - step)
        sums, counted = files.row_sums_at(step)  # those of a run stopped between two rows
        if sums is not None:
            position = position.replace(totals=self.placement.put(sums), counted=counted)
        return position

    # -- the loop's Recorder (flowrl.run.loop) ---------------------------------------------
    def write_train_row(self, position: Position, values: dict) -> None:
        self.files.log_rows('train', position.rows(self.labels, values))

    def evaluate(self, position: Position) -> dict:
        """Evaluates every member (flowrl.run.evaluating) and logs eval.csv rows; returns the statistics."""
        stats = self.evaluation.episodes(position.states, position.step, position.alive)
        self.files.log_rows('eval', position.rows(self.labels, stats))
        return stats

    def evaluated_at(self, step: int) -> bool:
        return self.files.evaluated_at(step)

    def record_divergence(self, position: Position, described: str, frozen_at: int) -> None:
        """Members frozen (at update `frozen_at`) while the others go on: diverged.json and one line."""
        self.files.write_diverged(position.diverged)
        self.log(f'Diverged: {described}; frozen at update {frozen_at:,} and left out of evaluations and results, '
                 f'the other {int(position.alive.sum())} member(s) go on.')

    def checkpoint_note(self) -> str:
        return self.files.checkpoint_note()

    def stop_requested(self) -> int | None:
        """The stop signal received (flowrl.stopping), by any process of the run: every process
        makes the same calls, so all of them stop at the same boundary (one small gather per
        chunk with several processes)."""
        signum = stopping.requested() or 0
        if self.placement.multi_process:
            signum = int(np.max(self.placement.gather(np.asarray([signum], np.int64))))
        return signum or None

    def stop(self, position: Position):
        """Ends the run at a stop request, between chunks: a checkpoint at this update (unless
        one was just saved) that also holds the metric sums since the last train.csv row, so the
        resumed run writes the rows an uninterrupted one would; then `Stopped` with its line."""
        step = position.step
        if self.placement.on_writer(lambda: checkpoints.latest_step(self.checkpoint_dir)) != step:
            sums = row_sums_bytes(self.placement.gather(position.totals), position.counted) if position.counted else None
            self.save(position, attachments=None if sums is None else {ROW_SUMS_FILE: sums})
        if self.progress is not None:
            self.progress.close()
        signum = self.stop_requested()
        raise stopping.Stopped(signum, stopped_line(signum, step, self.total_steps, self.checkpoint_dir,
                                                    self.files.run_dir))
