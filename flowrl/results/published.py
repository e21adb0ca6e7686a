"""Published final scores to put beside a run's: success (%) on OGBench's default tasks after
1M offline updates, mean (± std where the source gives it) over seeds, with each number's source.

Only numbers that docs/ALGORITHMS.md quotes from the papers are here; "flow BC ~0 on most"
is not turned into numbers. The FQL paper ran ogbench 1.1.0, which computed success after the
step (`--success_timing=post`); ogbench >= 1.2 computes it before the step by default.
"""

import dataclasses

from flowrl.suites.ogbench_envs import DEFAULT_TASKS

FQL_PAPER = 'FQL paper (Park, Li, Levine 2025, "Flow Q-Learning"), offline results, default tasks'
QFQL_PAPER = 'QFQL paper, Table 2 (offline, default tasks)'
QFQL_D4RL = 'QFQL paper, Table 1 (D4RL antmaze v2, offline; 100 x success)'
TIMING_NOTE = ('the FQL paper ran ogbench 1.1.0 (success counted after the step, --success_timing=post); '
               'ogbench >= 1.2 counts it before the step by default')

@dataclasses.dataclass(frozen=True)
class Published:
    mean: float  # success, %
    std: float | None
    source: str


def _table():
    table = {}
    fql = {'antmaze-large-navigate': (80, 8), 'humanoidmaze-medium-navigate': (19, 12),
           'humanoidmaze-large-navigate': (7, 6), 'antsoccer-arena-navigate': (39, 6), 'cube-single-play': (97, 2),
           'cube-double-play': (36, 6), 'scene-play': (76, 9), 'puzzle-3x3-play': (16, 5), 'puzzle-4x4-play': (11, 3)}
    for family, (mean, std) in fql.items():
        table[family, 'fql'] = Published(mean, std, FQL_PAPER)
    without_std = {
        'qfql': ({'antmaze-large-navigate': 84, 'antsoccer-arena-navigate': 44, 'cube-double-play': 8,
                  'scene-play': 62, 'puzzle-3x3-play': 0}, QFQL_PAPER),
        'iql': ({'antmaze-large-navigate': 48, 'cube-double-play': 1, 'scene-play': 12, 'puzzle-3x3-play': 2},
                FQL_PAPER),
        'ifql': ({'antmaze-large-navigate': 24, 'cube-double-play': 9, 'scene-play': 0, 'puzzle-3x3-play': 0},
                 FQL_PAPER),
    }
    for agent, (scores, source) in without_std.items():
        for family, mean in scores.items():
            table[family, agent] = Published(mean, None, source)
    # D4RL antmaze (keys: D4RL names without the version). 'bc' is the paper's Gaussian BC, which
    # flowrl does not have; it is kept so the table is the paper's.
    d4rl = {'antmaze-umaze-diverse': dict(bc=(47, None), ifql=(62, 12), fql=(89, 5), qfql=(94, None)),
            'antmaze-medium-diverse': dict(bc=(1, None), ifql=(60, 25), fql=(71, 13), qfql=(50, None)),
            'antmaze-large-diverse': dict(bc=(0, None), ifql=(64, 8), fql=(83, 4), qfql=(52, None))}
    for family, scores in d4rl.items():
        for agent, (mean, std) in scores.items():
            table[family, agent] = Published(mean, std, QFQL_D4RL)
    return table


PUBLISHED = _table()


def published_score(family: str, task: int | None, agent: str) -> Published | None:
    """The published score of `agent` on (`family`, `task`; None = the default task), if any."""
    if task is not None and task != DEFAULT_TASKS.get(family):
        return None
    return PUBLISHED.get((family, agent))
