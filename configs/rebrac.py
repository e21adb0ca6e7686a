"""ReBRAC's per-environment values in the FQL paper's comparison, where a source gives them,
beside the shared discount of the long-horizon environments (configs/__init__.py).

- humanoidmaze-medium-navigate: alpha_actor 0.01, alpha_critic 0.01 from the FQL README's ReBRAC
  command.

Still unknown here: the FQL paper's alpha_actor and alpha_critic for every other environment (its
appendix has them; we could not read it). The defaults (0, 0: no BC penalty) apply there, which is
not what the paper ran: pass them with --agent.alpha_actor and --agent.alpha_critic.
"""

from flowrl.configs import with_shared

PRESETS = with_shared({
    # FQL README: python main.py --env_name=humanoidmaze-medium-navigate-singletask-v0 --agent=agents/rebrac.py
    #   --agent.discount=0.995 --agent.alpha_actor=0.01 --agent.alpha_critic=0.01
    'humanoidmaze-medium-navigate': dict(alpha_actor=0.01, alpha_critic=0.01),
    # FQL README: python main.py --env_name=visual-cube-single-play-singletask-task1-v0 --agent=agents/rebrac.py
    #   --agent.alpha_actor=1 --agent.alpha_critic=0 --agent.encoder=impala_small --p_aug=0.5 --frame_stack=3
    'visual-cube-single-play': dict(alpha_actor=1.0, alpha_critic=0.0),
})
