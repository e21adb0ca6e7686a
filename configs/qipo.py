"""QIPO's per-environment presets.

QIPO was published on D4RL only; beta = 3 and M = 16 are its defaults everywhere. The weights are
softmax(beta Q) on the critic's raw Q, as in the paper, so beta = 3 was not tuned for OGBench's
reward scale (rewards in {-k, ..., 0} per step); `normalize_q=True` measures Q in units of its
per-state spread instead. No OGBench value of beta is published. Set here: the paper's larger
critic support for antmaze (M = 32, docs/ALGORITHMS.md), beside the shared discount of the
long-horizon environments (configs/__init__.py).
"""

from flowrl.configs import with_shared

# The phase lengths K1, K2 are not published for any dataset: a run says so on its first screen
# (flowrl.registry.presets). beta is not listed: the paper gives 3 (but no per-dataset values).
KEY_VALUES = ('bc_steps', 'critic_steps')

ANTMAZE = dict(critic_support=32)  # QIPO: M = 32 on antmaze

PRESETS = with_shared({
    'antmaze-large-navigate': ANTMAZE,
    'antmaze-giant-navigate': ANTMAZE,
})
