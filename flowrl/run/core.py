"""Offline training as one Python call, for a user's own dataset and configs:

    from flowrl.agents import fql
    from flowrl.run.core import train

    config = fql.get_config()
    trained = train(fql, dataset, [config, config], seeds=[0, 1], steps=10_000, log_interval=1_000)
    trained.states      # member-stacked agent states: fql.sample_actions on index(trained.states, i)
    trained.rows        # train.csv's rows: dict(step, member, seed, <metric means>) per member and row

The same loop (flowrl.run.loop), parts and compiled programs as `main.py`, which is one caller of
it; here the record is kept in memory (no run directory, checkpoints, evaluation episodes or
stop handling) and the dataset is used as given (no suite, no reward rule: the caller's).
Member i equals a single run with seed i, and the rows are the bits `main.py` would write to
train.csv for the same data, configs and seeds.
"""

import dataclasses

import jax
import ml_collections
import numpy as np

from flowrl.engine.placement import Placement
from flowrl.engine.training import ChunkRunner, init_members, resolve_member_execution
from flowrl.errors import UserError
from flowrl.kit import contract, pixels
from flowrl.run import loop
from flowrl.run.evaluating import Validation
from flowrl.run.offline import OfflineChunks
from flowrl.run.progress import ChunkPacer, Progress
from flowrl.run.state import Position


@dataclasses.dataclass(frozen=True)
class Trained:
    states: object  # member-stacked agent states
    rngs: object  # member-stacked training keys (a continuation would start from them)
    rows: list  # dict(step, member, seed, **metric means) per member still training, every log_interval
    diverged: dict  # member -> dict(diverged_at_update, diverged_metrics)


class MemoryRecord:
    """The loop's Recorder (flowrl.run.loop) for a run kept in memory: rows in a list; no
    checkpoints, evaluation episodes or stop signals."""

    def __init__(self, labels: list):
        self.labels, self.rows = labels, []

    def write_train_row(self, position: Position, values: dict) -> None:
        self.rows += position.rows(self.labels, values)

    def save(self, position: Position) -> None:
        pass  # nothing is kept but what `train` returns

    def evaluate(self, position: Position) -> dict:
        raise AssertionError('flowrl.run.core.train schedules no evaluation')

    def evaluated_at(self, step: int) -> bool:
        return True

    def stop_requested(self) -> None:
        return None

    def stop(self, position: Position):
        raise AssertionError('flowrl.run.core.train is never asked to stop')

    def record_divergence(self, position: Position, described: str, frozen_at: int) -> None:
        pass  # the returned `diverged` says which members stopped, and where

    def checkpoint_note(self) -> str:
        return 'flowrl.run.core.train keeps no checkpoint'


def require_one_program(agent, configs: list) -> None:
    """Members share one compiled program: their configs may differ only in the agent's dynamic keys."""
    dynamic = set(agent.DYNAMIC_KEYS)
    first = {k: v for k, v in configs[0].items() if k not in dynamic}
    for i, config in enumerate(configs[1:], 1):
        differ = sorted(k for k, v in config.items() if k not in dynamic and first.get(k) != v)
        if differ or set(config) != set(configs[0]):
            raise UserError(f'Member {i}\'s config differs from member 0\'s in {", ".join(differ) or "its keys"}, '
                            f'which decide the compiled program; members may differ only in {sorted(dynamic)}.')


def train(agent, dataset: dict, configs: list, seeds: list, steps: int, *, log_interval: int = 1000,
          validation: dict | None = None, labels: list | None = None, member_execution: str = 'auto',
          p_aug: float = 0.0, log=None) -> Trained:
    """`steps` updates of one member per (config, seed) on `dataset` (a dict of host arrays in the
    transition format, flowrl.suites.transitions; pixels: flowrl.kit.pixels), rows every
    `log_interval` updates and at the end (with `validation/<metric>` columns when a `validation`
    split is given). `labels`: a dict per member that begins its rows (default: member index and
    seed). `log`: where progress lines go (None: nowhere)."""
    if len(configs) != len(seeds) or not configs:
        raise UserError(f'train needs one seed per config: got {len(configs)} config(s) and {len(seeds)} seed(s).')
    configs = [ml_collections.ConfigDict(c) for c in configs]
    require_one_program(agent, configs)
    prepare = contract.hook(agent, 'prepare_dataset')
    dataset = prepare(dataset)
    placement = Placement.build(len(configs))
    padded_configs, padded_seeds = placement.padded_list(configs), placement.padded_list(list(seeds))
    held = placement.local_members
    states, rngs = init_members(agent, [padded_configs[i] for i in held], [padded_seeds[i] for i in held],
                                pixels.gather_transitions(dataset, np.arange(2)), rows=pixels.num_transitions(dataset),
                                log=log or (lambda *_: None))
    chunks = ChunkRunner(agent, configs[0].batch_size, resolve_member_execution(member_execution), configs[0],
                         p_aug=p_aug, placement=placement)
    labels = labels or [dict(member=i, seed=int(seed)) for i, seed in enumerate(seeds)]
    validation = None if validation is None else Validation.of_split(prepare(validation), placement, padded_seeds, chunks)
    parts = loop.Parts(OfflineChunks(chunks, jax.device_put(dataset, placement.replicated), placement), chunks.phases,
                       placement, labels, getattr(agent, '__name__', 'agent'), validation=validation)
    schedule = loop.Schedule(steps, steps, log_interval, eval_interval=0, save_interval=0, evaluates=False,
                             chunk_ends=tuple(chunks.schedule_steps(0, steps)))
    record = MemoryRecord(labels)
    start = Position(placement.put_local(states), placement.put_local(rngs), 0, 0, placement.active.copy())
    progress = Progress(steps, 0, getattr(agent, '__name__', 'agent'), log or (lambda *_: None), interactive=False)
    end = loop.train(start, schedule, parts, record, progress, ChunkPacer())  # TrainingDiverged if every member does
    return Trained(end.states, end.rngs, record.rows, end.diverged)
