"""Q-chunking's per-task hyperparameters (Li, Zhou & Levine 2025; the Q-chunking README's commands,
github.com/ColinQiyangLi/qc). The README gives one task's commands, cube-triple-play-singletask-task2-v0:
alpha 100 for QC-FQL, FQL-n and FQL (`--agent.alpha=100`), 32 best-of-n samples for QC and 4 for
BFN-n and BFN (`--agent.actor_num_samples`, not a per-task value: pass it with the actor type), and
`--sparse=True` on scene and puzzle-3x3 (a run flag). The paper's appendix tunes alpha per domain; its
values are not readable here, so every other task says so on its first screen (KEY_VALUES) and
runs at the agent's default, the README's 100. The shared discount and encoder (configs/__init__.py)
apply as for every agent."""

from flowrl.configs import with_shared

KEY_VALUES = ('alpha',)

PRESETS = with_shared({
    'cube-triple-play-task2': dict(alpha=100.0),  # the Q-chunking README's QC-FQL / FQL-n / FQL commands
})
