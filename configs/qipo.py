"""QIPO's per-environment presets.

QIPO was published on D4RL only; beta = 3 and M = 16 are its defaults everywhere (the weights
are measured in units of the per-state Q spread, `normalize_q`, so one beta transfers across
reward scales). Set here: the paper's larger critic support for antmaze (M = 32, ALGORITHMS.md),
and the discount, a property of the task's horizon: the values the FQL paper uses on the same
environments (ALGORITHMS.md, FQL table), so that comparisons with FQL are like for like.
"""

PRESETS = {
    'antmaze-large-navigate': dict(critic_support=32),  # QIPO: M = 32 on antmaze
    'antmaze-giant-navigate': dict(critic_support=32, discount=0.995),  # M = 32 on antmaze; FQL: 0.995
    'humanoidmaze-medium-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
    'humanoidmaze-large-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
    'antsoccer-arena-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
}
