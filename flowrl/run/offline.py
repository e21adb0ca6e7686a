"""Offline training, one chunk at a time: a chunk of compiled updates
(flowrl.engine.training.ChunkRunner) for every member, its metric sums and first non-finite update
gathered once per chunk. The loop (flowrl.run.loop) decides how many updates and what follows.
With a sharded dataset the chunk's dataset is the stream's window (flowrl.run.stream), advanced
at the chunk's start by the swaps due (the position records where the stream is)."""

from flowrl.run.state import Position


class OfflineChunks:
    def __init__(self, chunks, dataset, placement, stream=None):
        """`chunks`: the ChunkRunner; `dataset`: the training split on the devices (replicated);
        `stream`: a flowrl.run.stream.ShardStream whose window replaces `dataset` (None: none)."""
        self.chunks, self.dataset, self.placement, self.stream = chunks, dataset, placement, stream

    def chunk(self, position: Position, updates: int, agent_step: int):
        """`updates` updates of every member alive, from agent step `agent_step` (the chunk must not
        cross a phase start, nor a swap of the stream). Returns (position, first_bad, sums): the
        position advanced, with the chunk's metrics added to its sums, and every member's first
        non-finite update in the chunk (-1: none) and metric sums, on the host of every process."""
        dataset = self.dataset
        if self.stream is not None:
            position = position.replace(stream=self.stream.state_at(position.stream, position.step))
            dataset = self.stream.window_for(position.stream)
        states, rngs, totals, first_bad = self.chunks.run(position.states, position.rngs, position.totals, dataset,
                                                          updates, agent_step, position.alive)
        first_bad, sums = self.placement.gather((first_bad, totals))
        position = position.replace(states=states, rngs=rngs, totals=totals, step=position.step + updates,
                                    counted=position.counted + updates)
        return position, first_bad, sums
