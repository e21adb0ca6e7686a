"""FQL's per-environment hyperparameters (Park, Li & Levine 2025; the FQL README's commands for
state-based OGBench; docs/ALGORITHMS.md). All five tasks of an environment share them; none is unknown.
The discount 0.995 of the long-horizon environments is the shared one (configs/__init__.py).
ONLINE_PRESETS holds the README's offline-to-online values (`--online_steps` > 0), which refine
PRESETS. The pixel-based (visual-*) alphas are the README's visual commands (with the shared
encoder 'impala_small'; the commands' --p_aug=0.5 --frame_stack=3 are run flags, not presets)."""

from flowrl.configs import with_shared

# "The most important hyperparameter is the BC coefficient" (the FQL paper, Section 5.2): a run on a
# task without one says so on its first screen (flowrl.registry.presets).
KEY_VALUES = ('alpha',)

PRESETS = with_shared({
    'antmaze-large-navigate': dict(alpha=10.0, discount=0.99, q_agg='min'),
    'antmaze-giant-navigate': dict(alpha=10.0, q_agg='min'),
    'humanoidmaze-medium-navigate': dict(alpha=30.0),
    'humanoidmaze-large-navigate': dict(alpha=30.0),
    'antsoccer-arena-navigate': dict(alpha=10.0),
    'cube-single-play': dict(alpha=300.0),
    'cube-double-play': dict(alpha=300.0),
    'scene-play': dict(alpha=300.0),
    'puzzle-3x3-play': dict(alpha=1000.0),
    'puzzle-4x4-play': dict(alpha=1000.0),
    'visual-cube-single-play': dict(alpha=300.0),
    'visual-cube-double-play': dict(alpha=100.0),
    'visual-scene-play': dict(alpha=100.0),
    'visual-puzzle-3x3-play': dict(alpha=300.0),
    'visual-puzzle-4x4-play': dict(alpha=300.0),
})

# The FQL README's offline-to-online commands (--online_steps=1000000).
ONLINE_PRESETS = {
    'humanoidmaze-medium-navigate': dict(alpha=100.0, discount=0.995),
    'antsoccer-arena-navigate': dict(alpha=30.0, discount=0.995),
    'cube-double-play': dict(alpha=300.0),
    'scene-play': dict(alpha=300.0),
    'puzzle-4x4-play': dict(alpha=1000.0),
}

# D4RL (flowrl.suites.d4rl; keys are D4RL names without the version): the FQL README's D4RL commands,
# which all also pass --offline_steps=500000 (a run flag, not a preset).
_ADROIT_ALPHA = {'pen-human': 10000.0, 'pen-cloned': 10000.0, 'pen-expert': 3000.0, 'door-human': 30000.0,
                 'door-cloned': 30000.0, 'door-expert': 30000.0, 'hammer-human': 30000.0, 'hammer-cloned': 10000.0,
                 'hammer-expert': 30000.0, 'relocate-human': 10000.0, 'relocate-cloned': 30000.0,
                 'relocate-expert': 30000.0}
D4RL_PRESETS = {
    **{f'antmaze-{maze}': dict(alpha=10.0) for maze in ('umaze', 'umaze-diverse', 'medium-play', 'medium-diverse')},
    **{f'antmaze-{maze}': dict(alpha=3.0) for maze in ('large-play', 'large-diverse')},
    **{task: dict(alpha=alpha, q_agg='min') for task, alpha in _ADROIT_ALPHA.items()},
}

# The FQL README's D4RL offline-to-online commands (--online_steps=1000000): antmaze as offline,
# the cloned adroit tasks with their own alpha.
D4RL_ONLINE_PRESETS = {
    'pen-cloned': dict(alpha=1000.0, q_agg='min'), 'door-cloned': dict(alpha=1000.0, q_agg='min'),
    'hammer-cloned': dict(alpha=1000.0, q_agg='min'), 'relocate-cloned': dict(alpha=10000.0, q_agg='min'),
}
