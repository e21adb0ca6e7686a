"""SAC's (the RLPD baseline's) per-environment values in the FQL paper's comparison: the shared
discount of the long-horizon environments (configs/__init__.py), which the FQL README's RLPD
command on humanoidmaze-medium passes (`--offline_steps=0 --online_steps=1000000
--agent=agents/sac.py --agent.discount=0.995 --balanced_sampling=1`). SAC has no other
per-environment value in that command.
"""

from flowrl.configs import with_shared

PRESETS = with_shared({})
