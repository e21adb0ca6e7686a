"""IFQL's per-environment values in the FQL paper's comparison, beside the shared discount of the
long-horizon environments (configs/__init__.py).

Source of every value below (unless its comment says otherwise): the FQL paper (Park, Li & Levine,
"Flow Q-Learning", ICML 2025, arXiv:2502.02538v2), Appendix E.2, Table 6 ("Task-specific
hyperparameters for offline RL", column "IFQL N" = num_samples, swept over {32, 64, 128}) and
Table 7 (offline-to-online); docs/ALGORITHMS.md says how it was read. On OGBench the paper tunes N
on each environment's default task and uses it on all five tasks; pixel-based (visual-*) values are
its task1 rows. The QFQL paper's Table 2 quotes the same N ("taken from the original FQL paper") for
antmaze-large, antsoccer, cube-double, scene, puzzle-3x3 and D4RL antmaze-*-diverse. The expectile
is IQL's 0.9 everywhere ("the same default hyperparameters as IQL", Appendix E.2).

Every environment the paper ran has its N here; elsewhere (D4RL locomotion and kitchen) the default
32 applies, and a run says so on its first screen (KEY_VALUES).
"""

from flowrl.configs import with_shared

# The value the paper tunes per task; a run on a task without one says so (flowrl.registry.presets).
KEY_VALUES = ('num_samples',)

PRESETS = with_shared({
    'antmaze-large-navigate': dict(num_samples=32),  # FQL paper, Table 6
    'antmaze-giant-navigate': dict(num_samples=32),  # FQL paper, Table 6
    # FQL paper, Table 6; also the FQL README's command: python main.py
    #   --env_name=humanoidmaze-medium-navigate-singletask-v0 --agent=agents/ifql.py --agent.discount=0.995
    #   --agent.num_samples=32
    'humanoidmaze-medium-navigate': dict(num_samples=32),
    'humanoidmaze-large-navigate': dict(num_samples=32),  # FQL paper, Table 6
    'antsoccer-arena-navigate': dict(num_samples=64),  # FQL paper, Tables 6 and 7
    'cube-single-play': dict(num_samples=32),  # FQL paper, Table 6
    'cube-double-play': dict(num_samples=32),  # FQL paper, Table 6
    'scene-play': dict(num_samples=32),  # FQL paper, Table 6
    'puzzle-3x3-play': dict(num_samples=32),  # FQL paper, Table 6
    'puzzle-4x4-play': dict(num_samples=32),  # FQL paper, Table 6
    # FQL paper, Table 6; also the FQL README's command: python main.py
    #   --env_name=visual-cube-single-play-singletask-task1-v0 --agent=agents/ifql.py --agent.num_samples=32
    #   --agent.encoder=impala_small --p_aug=0.5 --frame_stack=3
    'visual-cube-single-play': dict(num_samples=32),
    'visual-cube-double-play': dict(num_samples=32),  # FQL paper, Table 6
    'visual-scene-play': dict(num_samples=32),  # FQL paper, Table 6
    'visual-puzzle-3x3-play': dict(num_samples=32),  # FQL paper, Table 6
    'visual-puzzle-4x4-play': dict(num_samples=32),  # FQL paper, Table 6
})

# D4RL (keys: D4RL names without the version): the FQL paper's Table 6, offline.
_D4RL_N = {
    **{f'antmaze-{maze}': 32 for maze in ('umaze', 'umaze-diverse', 'medium-play', 'medium-diverse', 'large-play',
                                          'large-diverse')},
    'pen-human': 32, 'pen-cloned': 32, 'pen-expert': 32, 'door-human': 32, 'door-cloned': 128, 'door-expert': 32,
    'hammer-human': 32, 'hammer-cloned': 32, 'hammer-expert': 32, 'relocate-human': 128, 'relocate-cloned': 32,
    'relocate-expert': 32,
}
D4RL_PRESETS = {task: dict(num_samples=n) for task, n in _D4RL_N.items()}

# The FQL paper's Table 7, offline-to-online: N 128 on the four cloned adroit tasks (antmaze: 32, as offline).
D4RL_ONLINE_PRESETS = {task: dict(num_samples=128)
                       for task in ('pen-cloned', 'door-cloned', 'hammer-cloned', 'relocate-cloned')}
