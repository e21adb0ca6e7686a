"""ReBRAC's per-environment values in the FQL paper's comparison, beside the shared discount of the
long-horizon environments (configs/__init__.py).

Source of every value below (unless its comment says otherwise): the FQL paper (Park, Li & Levine,
"Flow Q-Learning", ICML 2025, arXiv:2502.02538v2), Appendix E.2, Table 6 ("Task-specific
hyperparameters for offline RL", column "ReBRAC (alpha1, alpha2)" = (alpha_actor, alpha_critic));
docs/ALGORITHMS.md says how it was read. The paper sweeps alpha_actor over {0.003, 0.01, 0.03, 0.1,
0.3, 1} without critic penalty, then alpha_critic over {0, 0.001, 0.01, 0.1}, on each environment's
default task, and uses the result on all five tasks; pixel-based (visual-*) values are its task1
rows. Its Table 7 (offline-to-online) repeats the offline values, so there is no ONLINE_PRESETS.

Still unknown here: alpha_actor and alpha_critic on D4RL. Table 6 has "-" there: the paper's D4RL
ReBRAC numbers are taken from prior work (Tarasov et al., 2023b), which ran its own
implementation. The defaults (0, 0: no BC penalty) apply, which is not what any paper ran, and a
run says so on its first screen (KEY_VALUES).
"""

from flowrl.configs import with_shared

# The values the paper tunes per task; a run on a task without them says so (flowrl.registry.presets).
KEY_VALUES = ('alpha_actor', 'alpha_critic')


def _bc(actor: float, critic: float) -> dict:
    return dict(alpha_actor=actor, alpha_critic=critic)


PRESETS = with_shared({
    'antmaze-large-navigate': _bc(0.003, 0.01),  # FQL paper, Table 6
    'antmaze-giant-navigate': _bc(0.003, 0.01),  # FQL paper, Table 6
    # FQL paper, Table 6; also the FQL README's command: python main.py
    #   --env_name=humanoidmaze-medium-navigate-singletask-v0 --agent=agents/rebrac.py --agent.discount=0.995
    #   --agent.alpha_actor=0.01 --agent.alpha_critic=0.01
    'humanoidmaze-medium-navigate': _bc(0.01, 0.01),
    'humanoidmaze-large-navigate': _bc(0.01, 0.01),  # FQL paper, Table 6
    'antsoccer-arena-navigate': _bc(0.01, 0.01),  # FQL paper, Table 6
    'cube-single-play': _bc(1.0, 0.0),  # FQL paper, Table 6
    'cube-double-play': _bc(0.1, 0.0),  # FQL paper, Table 6
    'scene-play': _bc(0.1, 0.01),  # FQL paper, Table 6
    'puzzle-3x3-play': _bc(0.3, 0.01),  # FQL paper, Table 6
    'puzzle-4x4-play': _bc(0.3, 0.01),  # FQL paper, Table 6
    # FQL paper, Table 6; also the FQL README's command: python main.py
    #   --env_name=visual-cube-single-play-singletask-task1-v0 --agent=agents/rebrac.py --agent.alpha_actor=1
    #   --agent.alpha_critic=0 --agent.encoder=impala_small --p_aug=0.5 --frame_stack=3
    'visual-cube-single-play': _bc(1.0, 0.0),
    'visual-cube-double-play': _bc(0.1, 0.0),  # FQL paper, Table 6
    'visual-scene-play': _bc(0.1, 0.01),  # FQL paper, Table 6
    'visual-puzzle-3x3-play': _bc(0.3, 0.01),  # FQL paper, Table 6
    'visual-puzzle-4x4-play': _bc(0.3, 0.01),  # FQL paper, Table 6
})
