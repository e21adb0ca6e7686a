"""Published final scores to put beside a run's: success (%) on OGBench's default tasks, mean
(± std where the source gives it) over seeds, with each number's source and the protocol that
source trained and evaluated with (`Protocol`, one per source: its rows share it), so that the
report can say where a run departs from it (flowrl.results.departures).

Only numbers that docs/ALGORITHMS.md quotes from the papers are here; "flow BC ~0 on most"
is not turned into numbers. The FQL paper ran ogbench 1.1.0, which computed success after the
step (`--success_timing=post`); ogbench >= 1.2 computes it before the step by default.
"""

import dataclasses

from flowrl.suites.data.protocol import find_spec
from flowrl.suites.ogbench_envs import DEFAULT_TASKS

FQL_PAPER = 'FQL paper (Park, Li, Levine 2025, "Flow Q-Learning"), offline results, default tasks'
QFQL_PAPER = 'QFQL paper, Table 2 (offline, default tasks)'
QFQL_D4RL = 'QFQL paper, Table 1 (D4RL antmaze v2, offline; 100 x success)'
TIMING_NOTE = ('the FQL paper ran ogbench 1.1.0 (success counted after the step, --success_timing=post); '
               'ogbench >= 1.2 counts it before the step by default')



@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a source trained and evaluated the runs behind its numbers; None where it does not say."""
    offline_updates: int | None = None
    online_steps: int | None = None  # 0: offline results
    hidden_dims: tuple | None = None  # of every MLP
    dataset: str | None = None  # the data, in words; its size per environment: `full_dataset_episodes`
    eval_episodes: int | None = None  # per evaluation and seed
    eval_interval: int | None = None  # updates between evaluations (the score: mean of the last three)
    success_timing: str | None = None  # 'pre' / 'post' (flowrl.suites.ogbench_envs), OGBench only

    @property
    def known(self) -> bool:
        return any(value is not None for value in dataclasses.astuple(self))


# The FQL paper's protocol, from the authors' code (github.com/seohongpark/fql, read at HEAD):
FQL_PROTOCOL = Protocol(
    offline_updates=1_000_000,  # main.py: --offline_steps default; the README's state-based OGBench commands pass none
    online_steps=0,  # main.py: --online_steps default (offline results)
    hidden_dims=(512, 512, 512, 512),  # agents/{fql,iql,ifql}.py: actor_hidden_dims and value_hidden_dims
    dataset="OGBench's full dataset",  # envs/env_utils.py: ogbench.make_env_and_datasets(env_name), no size option
    eval_episodes=50,  # main.py: --eval_episodes default
    eval_interval=100_000,  # main.py: --eval_interval default (docs/ALGORITHMS.md: every 100k, last three averaged)
    success_timing='post',  # README and requirements.txt: ogbench == 1.1.0, which counted success after the step
)
# IQL on state-based OGBench manipulation (cube, scene, puzzle): the FQL paper's Appendix E.2, "IQL tends to overfit on
# state-based OGBench manipulation tasks, and thus [we] use smaller [256, 256, 256, 256]-sized MLPs" (configs/iql.py).
FQL_PAPER_IQL_MANIPULATION = FQL_PAPER + '; IQL on state-based manipulation with 4×256 MLPs (Appendix E.2)'
FQL_PROTOCOL_IQL_MANIPULATION = dataclasses.replace(FQL_PROTOCOL, hidden_dims=(256, 256, 256, 256))
# The QFQL paper gives no updates, network sizes, seeds or evaluation counts (docs/ALGORITHMS.md, QFQL): nothing to
# compare a run with. That holds for its D4RL antmaze Table 1 too: the FQL README's own D4RL commands pass
# --offline_steps=500000, but nothing says the table's FQL column was run that way.
QFQL_PROTOCOL = Protocol()


@dataclasses.dataclass(frozen=True)
class Published:
    mean: float  # success, %
    std: float | None
    source: str
    protocol: Protocol = Protocol()


def _table():
    table = {}
    fql = {'antmaze-large-navigate': (80, 8), 'humanoidmaze-medium-navigate': (19, 12),
           'humanoidmaze-large-navigate': (7, 6), 'antsoccer-arena-navigate': (39, 6), 'cube-single-play': (97, 2),
           'cube-double-play': (36, 6), 'scene-play': (76, 9), 'puzzle-3x3-play': (16, 5), 'puzzle-4x4-play': (11, 3)}
    for family, (mean, std) in fql.items():
        table[family, 'fql'] = Published(mean, std, FQL_PAPER, FQL_PROTOCOL)
    without_std = [  # (agent, {family: mean}, source, protocol)
        ('qfql', {'antmaze-large-navigate': 84, 'antsoccer-arena-navigate': 44, 'cube-double-play': 8,
                  'scene-play': 62, 'puzzle-3x3-play': 0}, QFQL_PAPER, QFQL_PROTOCOL),
        ('iql', {'antmaze-large-navigate': 48}, FQL_PAPER, FQL_PROTOCOL),
        ('iql', {'cube-double-play': 1, 'scene-play': 12, 'puzzle-3x3-play': 2}, FQL_PAPER_IQL_MANIPULATION,
         FQL_PROTOCOL_IQL_MANIPULATION),
        ('ifql', {'antmaze-large-navigate': 24, 'cube-double-play': 9, 'scene-play': 0, 'puzzle-3x3-play': 0},
         FQL_PAPER, FQL_PROTOCOL),
    ]
    for agent, scores, source, protocol in without_std:
        for family, mean in scores.items():
            table[family, agent] = Published(mean, None, source, protocol)
    # D4RL antmaze (keys: D4RL names without the version). 'bc' is the paper's Gaussian BC, which
    # flowrl does not have; it is kept so the table is the paper's.
    d4rl = {'antmaze-umaze-diverse': dict(bc=(47, None), ifql=(62, 12), fql=(89, 5), qfql=(94, None)),
            'antmaze-medium-diverse': dict(bc=(1, None), ifql=(60, 25), fql=(71, 13), qfql=(50, None)),
            'antmaze-large-diverse': dict(bc=(0, None), ifql=(64, 8), fql=(83, 4), qfql=(52, None))}
    for family, scores in d4rl.items():
        for agent, (mean, std) in scores.items():
            table[family, agent] = Published(mean, std, QFQL_D4RL, QFQL_PROTOCOL)
    return table


PUBLISHED = _table()
SOURCE_PROTOCOLS = {published.source: published.protocol for published in PUBLISHED.values()}


def published_score(family: str, task: int | None, agent: str) -> Published | None:
    """The published score of `agent` on (`family`, `task`; None = the default task), if any."""
    if task is not None and task != DEFAULT_TASKS.get(family):
        return None
    return PUBLISHED.get((family, agent))


def full_dataset_episodes(family: str) -> int | None:
    """Episodes in OGBench's published training dataset of `family` (docs/DATA.md, through
    flowrl.suites.data.protocol's table); None where the table does not hold it (navigate datasets
    collected with expert policies, D4RL)."""
    spec = find_spec(f'{family}-v0')
    return None if spec is None else spec.episodes
