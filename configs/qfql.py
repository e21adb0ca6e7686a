"""QFQL's per-environment values: the guidance beta of ALGORITHMS.md, "QFQL" (the seed paper's
choices from its sweep over {0.3, 1, 3, 10, 30, 100}), and the environment's discount as in the
FQL comparison (0.995 for antsoccer). Environments without an entry use the agent defaults
(guidance 1, discount 0.99). The paper's D4RL antmaze value (0.3) has no OGBench family here.
Guidance only acts at inference: a trained run can be re-evaluated at other values."""

PRESETS = {
    'antmaze-large-navigate': dict(guidance=1.0),
    'antsoccer-arena-navigate': dict(guidance=1.0, discount=0.995),
    'cube-double-play': dict(guidance=0.3),
    'scene-play': dict(guidance=0.3),
}
