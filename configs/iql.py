"""IQL's per-environment values in the FQL paper's comparison, where a source gives them, beside
the shared discount of the long-horizon environments (configs/__init__.py).

- humanoidmaze-medium-navigate: alpha 10 from the FQL README's IQL command
  (`--agent.discount=0.995 --agent.alpha=10`).

Still unknown here: the FQL paper's IQL alpha (AWR temperature) for every other environment (its
appendix has them; we could not read it). The default alpha 10 applies there: pass the paper's
value with --agent.alpha when you have it.
"""

from flowrl.configs import with_shared

PRESETS = with_shared({
    # FQL README: python main.py --env_name=humanoidmaze-medium-navigate-singletask-v0 --agent=agents/iql.py
    #   --agent.discount=0.995 --agent.alpha=10
    'humanoidmaze-medium-navigate': dict(alpha=10.0),
    # FQL README: python main.py --env_name=visual-cube-single-play-singletask-task1-v0 --agent=agents/iql.py
    #   --agent.alpha=1 --agent.encoder=impala_small --p_aug=0.5 --frame_stack=3
    'visual-cube-single-play': dict(alpha=1.0),
})
