"""IQL's per-environment values in the FQL paper's comparison, beside the shared discount of the
long-horizon environments (configs/__init__.py).

Source of every value below (unless its comment says otherwise): the FQL paper (Park, Li & Levine,
"Flow Q-Learning", ICML 2025, arXiv:2502.02538v2), Appendix E.2, Table 6 ("Task-specific
hyperparameters for offline RL", column "IQL alpha"); docs/ALGORITHMS.md says how it was read.
The paper tunes alpha (the AWR inverse temperature; sweep {0.3, 1, 3, 10}, expectile fixed at 0.9)
on each environment's default task and uses it on all five tasks; pixel-based (visual-*) values
are its task1 rows. Its Table 7 (offline-to-online: humanoidmaze-medium, antsoccer, cube-double,
scene, puzzle-4x4) repeats the offline values, so there is no ONLINE_PRESETS.

Network size: "IQL tends to overfit on state-based OGBench manipulation tasks, and thus [we] use
smaller [256, 256, 256, 256]-sized MLPs for these state-based tasks (but not for pixel-based
tasks)" (Appendix E.2, IQL): set on cube, scene and puzzle below; 4 x 512 (the default) elsewhere.

Still unknown here: alpha on D4RL. Table 6 has "-" there: the paper's D4RL IQL numbers are taken
from prior work (Tarasov et al., 2023b), which ran its own implementation. The default alpha 10
applies, and a run says so on its first screen (KEY_VALUES).
"""

from flowrl.configs import with_shared

# The values the paper tunes per task; a run on a task without one says so (flowrl.registry.presets).
KEY_VALUES = ('alpha',)

# Appendix E.2 (IQL): 4 x 256 MLPs on state-based manipulation.
_SMALL = dict(actor_hidden_dims=(256, 256, 256, 256), value_hidden_dims=(256, 256, 256, 256))

PRESETS = with_shared({
    'antmaze-large-navigate': dict(alpha=10.0),  # FQL paper, Table 6
    'antmaze-giant-navigate': dict(alpha=10.0),  # FQL paper, Table 6
    # FQL paper, Table 6; also the FQL README's command: python main.py
    #   --env_name=humanoidmaze-medium-navigate-singletask-v0 --agent=agents/iql.py --agent.discount=0.995
    #   --agent.alpha=10
    'humanoidmaze-medium-navigate': dict(alpha=10.0),
    'humanoidmaze-large-navigate': dict(alpha=10.0),  # FQL paper, Table 6
    'antsoccer-arena-navigate': dict(alpha=1.0),  # FQL paper, Table 6
    'cube-single-play': dict(alpha=1.0, **_SMALL),  # FQL paper, Table 6 and Appendix E.2
    'cube-double-play': dict(alpha=0.3, **_SMALL),  # FQL paper, Table 6 and Appendix E.2
    'scene-play': dict(alpha=10.0, **_SMALL),  # FQL paper, Table 6 and Appendix E.2
    'puzzle-3x3-play': dict(alpha=10.0, **_SMALL),  # FQL paper, Table 6 and Appendix E.2
    'puzzle-4x4-play': dict(alpha=3.0, **_SMALL),  # FQL paper, Table 6 and Appendix E.2
    # FQL paper, Table 6; also the FQL README's command: python main.py
    #   --env_name=visual-cube-single-play-singletask-task1-v0 --agent=agents/iql.py --agent.alpha=1
    #   --agent.encoder=impala_small --p_aug=0.5 --frame_stack=3
    'visual-cube-single-play': dict(alpha=1.0),
    'visual-cube-double-play': dict(alpha=0.3),  # FQL paper, Table 6
    'visual-scene-play': dict(alpha=10.0),  # FQL paper, Table 6
    'visual-puzzle-3x3-play': dict(alpha=10.0),  # FQL paper, Table 6
    'visual-puzzle-4x4-play': dict(alpha=3.0),  # FQL paper, Table 6
})
