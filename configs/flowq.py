"""FlowQ's per-environment presets.

FlowQ was published on D4RL only, so there are no OGBench values of `lambda` to copy; it keeps its
default, which is scale-free (`normalize_grad`: lambda * kappa(1) is the RMS endpoint shift in
action units), so one value transfers across reward scales. What is set here is the discount,
a property of the task's horizon rather than of the algorithm: the values the FQL paper uses
on the same environments (docs/ALGORITHMS.md, FQL table), so that comparisons with FQL are like for like.
"""

PRESETS = {
    'antmaze-giant-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
    'humanoidmaze-medium-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
    'humanoidmaze-large-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
    'antsoccer-arena-navigate': dict(discount=0.995),  # long horizon (FQL: 0.995)
}
