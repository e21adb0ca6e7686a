"""SAC's (the RLPD baseline's) per-environment values in the FQL paper's comparison.

- discount 0.995 on the long-horizon environments (antmaze-giant, humanoidmaze, antsoccer): the
  value the FQL paper uses there for every method (docs/ALGORITHMS.md, FQL table; 0.99 elsewhere),
  and the FQL README's RLPD command on humanoidmaze-medium passes it
  (`--offline_steps=0 --online_steps=1000000 --agent=agents/sac.py --agent.discount=0.995
  --balanced_sampling=1`). SAC has no other per-environment value in that command.
"""

LONG_HORIZON = dict(discount=0.995)  # FQL paper: 0.995 on these environments, for every method

PRESETS = {
    'antmaze-giant-navigate': LONG_HORIZON,
    'humanoidmaze-medium-navigate': LONG_HORIZON,
    'humanoidmaze-large-navigate': LONG_HORIZON,
    'antsoccer-arena-navigate': LONG_HORIZON,
}
