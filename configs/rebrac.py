"""ReBRAC's per-environment values in the FQL paper's comparison, where a source gives them.

- discount 0.995 on the long-horizon environments (antmaze-giant, humanoidmaze, antsoccer): the
  value the FQL paper uses there for every method (docs/ALGORITHMS.md, FQL table; 0.99 elsewhere).
- humanoidmaze-medium-navigate: alpha_actor 0.01, alpha_critic 0.01 from the FQL README's ReBRAC
  command.

Still unknown here: the FQL paper's alpha_actor and alpha_critic for every other environment (its
appendix has them; we could not read it). The defaults (0, 0: no BC penalty) apply there, which is
not what the paper ran: pass them with --agent.alpha_actor and --agent.alpha_critic.
"""

LONG_HORIZON = dict(discount=0.995)  # FQL paper: 0.995 on these environments, for every method

PRESETS = {
    'antmaze-giant-navigate': LONG_HORIZON,
    # FQL README: python main.py --env_name=humanoidmaze-medium-navigate-singletask-v0 --agent=agents/rebrac.py
    #   --agent.discount=0.995 --agent.alpha_actor=0.01 --agent.alpha_critic=0.01
    'humanoidmaze-medium-navigate': dict(LONG_HORIZON, alpha_actor=0.01, alpha_critic=0.01),
    'humanoidmaze-large-navigate': LONG_HORIZON,
    'antsoccer-arena-navigate': LONG_HORIZON,
}
