"""QIPO's per-environment presets.

QIPO was published on D4RL only; beta = 3 and M = 16 are its defaults everywhere. The weights are
softmax(beta Q) on the critic's raw Q, as in the paper, so beta = 3 was not tuned for OGBench's
reward scale (rewards in {-k, ..., 0} per step); `normalize_q=True` measures Q in units of its
per-state spread instead. No OGBench value of beta is published. Set here: the paper's larger
critic support for antmaze (M = 32, docs/ALGORITHMS.md), and the discount, a property of the task's
horizon: the values the FQL paper uses on the same environments (docs/ALGORITHMS.md, FQL table), so
that comparisons with FQL are like for like.
"""

PRESETS = {
    'antmaze-large-navigate': dict(critic_support=32),  # QIPO: M = 32 on antmaze
    'antmaze-giant-navigate': dict(critic_support=32, discount=0.995),  # M = 32 on antmaze; FQL: 0.995
    'humanoidmaze-medium-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
    'humanoidmaze-large-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
    'antsoccer-arena-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
}
