"""FlowQ's per-environment presets.

FlowQ was published on D4RL only, so there are no OGBench values of `lambda` to copy; it keeps its
default, which is scale-free (`normalize_grad`: lambda * kappa(1) is the RMS endpoint shift in
action units), so one value transfers across reward scales. What is set is the shared discount
of the long-horizon environments (configs/__init__.py).
"""

from flowrl.configs import with_shared

# The value its paper tunes per dataset (none is published): a run says so on its first screen
# (flowrl.registry.presets).
KEY_VALUES = ('lambda',)

PRESETS = with_shared({})
