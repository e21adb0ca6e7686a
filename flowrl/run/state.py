"""Where a run is, as one explicit value (`Position`) that the loop (flowrl.run.loop) hands from
part to part and each part returns changed: the member-stacked agent states and keys, the update
reached, the agent step the run started at, which members still train or diverged, the metric
sums since the last train.csv row, once online the members' replay buffers and action queues,
and with a sharded dataset where its stream is (which shards are in the window, the next one).
Nothing here changes in place: a part returns `position.replace(...)`."""

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Position:
    states: Any  # member-stacked agent states (on the devices)
    rngs: Any  # member-stacked training keys
    step: int  # updates (offline, then online steps) this run has made
    first_agent_step: int  # the agents' step at update 0 (a --restore_path run's offset)
    alive: np.ndarray  # [members] bool: still training (not diverged; inactive padding never)
    diverged: dict = dataclasses.field(default_factory=dict)  # member -> dict(diverged_at_update, diverged_metrics)
    totals: Any = None  # metric sums on the devices since the last train.csv row (None: none yet)
    counted: int = 0  # updates those sums hold
    buffers: Any = None  # member-stacked online replay buffers, from the first online step
    queues: Any = None  # this process's members' online action queues (flowrl.engine.action_queue.ActionQueues, host)
    stream: Any = None  # flowrl.run.stream.StreamState of a sharded dataset (None: the dataset is in memory)

    def replace(self, **changes) -> 'Position':
        return dataclasses.replace(self, **changes)

    def row_written(self) -> 'Position':
        """A train.csv row holds the sums so far: the next row starts from none."""
        return self.replace(totals=None, counted=0)

    def rows(self, labels: list, values: dict) -> list[dict]:
        """One log row per member still training (diverged members are no longer logged)."""
        return [dict(step=self.step, **label, **{k: float(v[i]) for k, v in values.items()})
                for i, label in enumerate(labels) if self.alive[i]]


def with_divergence(position: Position, means: dict, first_bad, chunk_start: int) -> tuple[Position, list]:
    """(position, newly diverged members): members whose metrics turned non-finite (`first_bad` >= 0
    at update `chunk_start` + first_bad + 1; the program kept their pre-chunk state) are recorded
    and no longer alive. What that means for the run (frozen while others go on, or the end of
    it) is the loop's decision."""
    bad = np.asarray(first_bad)
    new = [int(i) for i in np.nonzero(bad >= 0)[0] if position.alive[i]]
    if not new:
        return position, new
    diverged, alive = dict(position.diverged), position.alive.copy()
    for i in new:
        names = [k for k, v in means.items() if not np.isfinite(v[i])]
        diverged[i] = dict(diverged_at_update=chunk_start + int(bad[i]) + 1, diverged_metrics=names or ['metrics'])
    alive[new] = False
    return position.replace(diverged=diverged, alive=alive), new


def describe_divergence(position: Position, new: list, labels: list) -> str:
    return '; '.join(f'member {labels[i]} produced non-finite {", ".join(position.diverged[i]["diverged_metrics"])} '
                     f'at update {position.diverged[i]["diverged_at_update"]}' for i in new)
