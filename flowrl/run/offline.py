"""Offline training of a run between two boundaries: chunks of compiled updates
(flowrl.engine.training.ChunkRunner) of about the pacer's length, their metric sums gathered once
per chunk, divergence recorded, the progress line advanced."""

import time

import numpy as np


class OfflineChunks:
    def __init__(self, chunks, dataset, placement, now, divergence, stop_requested, agent_path: str):
        """`now`: the run's RunState (flowrl.run.state), advanced in place; `divergence`: its
        Divergence; `stop_requested()`: the stop signal every process agrees on, or None."""
        self.chunks, self.dataset, self.placement, self.now = chunks, dataset, placement, now
        self.divergence, self.stop_requested, self.agent_path = divergence, stop_requested, agent_path

    def until(self, stop: int, totals, counted: int, pacer, progress):
        """Chunks of about `pacer.seconds` each up to update `stop`, adding to the metric sums
        `totals` of the `counted` updates since the last row; returns them and the means."""
        now, placement = self.now, self.placement
        means = None  # no chunk when a stop was requested before the first
        while now.step < stop and not self.stop_requested():
            # The chunk's length is one argument of a program every process runs: process 0's pacer decides.
            start, updates = now.step, min(stop - now.step, placement.agreed(pacer.size()))
            began = time.monotonic()
            now.states, now.rngs, totals, first_bad = self.chunks.run(
                now.states, now.rngs, totals, self.dataset, updates, now.agent_step(placement, self.agent_path),
                now.alive)
            first_bad, sums = placement.gather((first_bad, totals))
            seconds = time.monotonic() - began
            pacer.record(updates, seconds)
            now.step, counted = start + updates, counted + updates
            means = {k: v / counted for k, v in sums.items()}
            self.divergence(means, first_bad, start)
            progress.advanced(updates, seconds, {k: np.mean(v[now.alive]) for k, v in means.items()})
        return totals, counted, means
