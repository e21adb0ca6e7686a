"""Offline training, one chunk at a time: a chunk of compiled updates
(flowrl.engine.training.ChunkRunner) for every member, its metric sums and first non-finite update
gathered once per chunk. The loop (flowrl.run.loop) decides how many updates and what follows."""

from flowrl.run.state import Position


class OfflineChunks:
    def __init__(self, chunks, dataset, placement):
        """`chunks`: the ChunkRunner; `dataset`: the training split on the devices (replicated)."""
        self.chunks, self.dataset, self.placement = chunks, dataset, placement

    def chunk(self, position: Position, updates: int, agent_step: int):
        """`updates` updates of every member alive, from agent step `agent_step` (the chunk must not
        cross a phase start). Returns (position, first_bad, sums): the position advanced, with the
        chunk's metrics added to its sums, and every member's first non-finite update in the chunk
        (-1: none) and metric sums, on the host of every process."""
        states, rngs, totals, first_bad = self.chunks.run(position.states, position.rngs, position.totals, self.dataset,
                                                          updates, agent_step, position.alive)
        first_bad, sums = self.placement.gather((first_bad, totals))
        position = position.replace(states=states, rngs=rngs, totals=totals, step=position.step + updates,
                                    counted=position.counted + updates)
        return position, first_bad, sums
