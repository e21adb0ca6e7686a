"""IQL's per-environment values in the FQL paper's comparison, where a source gives them.

- discount 0.995 on the long-horizon environments (antmaze-giant, humanoidmaze, antsoccer): the
  value the FQL paper uses there for every method (docs/ALGORITHMS.md, FQL table; 0.99 elsewhere).
- humanoidmaze-medium-navigate: alpha 10 from the FQL README's IQL command
  (`--agent.discount=0.995 --agent.alpha=10`).

Still unknown here: the FQL paper's IQL alpha (AWR temperature) for every other environment (its
appendix has them; we could not read it). The default alpha 10 applies there: pass the paper's
value with --agent.alpha when you have it.
"""

LONG_HORIZON = dict(discount=0.995)  # FQL paper: 0.995 on these environments, for every method

PRESETS = {
    'antmaze-giant-navigate': LONG_HORIZON,
    # FQL README: python main.py --env_name=humanoidmaze-medium-navigate-singletask-v0 --agent=agents/iql.py
    #   --agent.discount=0.995 --agent.alpha=10
    'humanoidmaze-medium-navigate': dict(LONG_HORIZON, alpha=10.0),
    'humanoidmaze-large-navigate': LONG_HORIZON,
    'antsoccer-arena-navigate': LONG_HORIZON,
}
