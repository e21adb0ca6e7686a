"""QFQL's per-environment values, beside the shared discount of the long-horizon environments
(configs/__init__.py; the QFQL paper compares against FQL, which uses it).

- guidance beta: the seed paper's Table 2 choices from its sweep over {0.3, 1, 3, 10, 30, 100}
  (docs/ALGORITHMS.md, "QFQL"): antmaze-large 1, antsoccer-arena 1, cube-double 0.3, scene 0.3. Its
  D4RL antmaze value (0.3) has no OGBench family here.

Still unknown here: beta for antmaze-giant, humanoidmaze, cube-single and puzzle (the paper gives
none; QFQL scores 0 on puzzle-3x3), where the default 1 applies. Guidance only acts at
inference: a trained run can be re-evaluated at other values (python -m flowrl.run.evaluate_run).
"""

from flowrl.configs import with_shared

# The value the paper tunes per task; a run on a task without one says so (flowrl.registry.presets).
KEY_VALUES = ('guidance',)

PRESETS = with_shared({
    'antmaze-large-navigate': dict(guidance=1.0),  # QFQL paper, Table 2
    'antsoccer-arena-navigate': dict(guidance=1.0),  # QFQL paper, Table 2
    'cube-double-play': dict(guidance=0.3),  # QFQL paper, Table 2
    'scene-play': dict(guidance=0.3),  # QFQL paper, Table 2
})

# D4RL antmaze: the QFQL paper's Table 2 (beta 0.3 on all three).
D4RL_PRESETS = {f'antmaze-{maze}': dict(guidance=0.3) for maze in ('umaze-diverse', 'medium-diverse', 'large-diverse')}
