"""QFQL's per-environment values.

- guidance beta: the seed paper's Table 2 choices from its sweep over {0.3, 1, 3, 10, 30, 100}
  (docs/ALGORITHMS.md, "QFQL"): antmaze-large 1, antsoccer-arena 1, cube-double 0.3, scene 0.3. Its
  D4RL antmaze value (0.3) has no OGBench family here.
- discount 0.995 on the long-horizon environments (antmaze-giant, humanoidmaze, antsoccer): the
  value the FQL paper uses there for every method (the QFQL paper compares against it).

Still unknown here: beta for antmaze-giant, humanoidmaze, cube-single and puzzle (the paper gives
none; QFQL scores 0 on puzzle-3x3), where the default 1 applies. Guidance only acts at
inference: a trained run can be re-evaluated at other values (python -m flowrl.evaluate).
"""

LONG_HORIZON = dict(discount=0.995)  # FQL paper: 0.995 on these environments, for every method

PRESETS = {
    'antmaze-large-navigate': dict(guidance=1.0),  # QFQL paper, Table 2
    'antmaze-giant-navigate': LONG_HORIZON,
    'humanoidmaze-medium-navigate': LONG_HORIZON,
    'humanoidmaze-large-navigate': LONG_HORIZON,
    'antsoccer-arena-navigate': dict(LONG_HORIZON, guidance=1.0),  # beta: QFQL paper, Table 2
    'cube-double-play': dict(guidance=0.3),  # QFQL paper, Table 2
    'scene-play': dict(guidance=0.3),  # QFQL paper, Table 2
}
