"""Per-environment presets (the package `flowrl.configs`, kept in the repository's configs/ folder):
`configs/<agent_name>.py` (the `agent_name` of the agent's config, not
its file's name) holds `PRESETS`, a dict from an OGBench
environment family (the singletask name without '-singletask-...-v0', e.g. 'cube-double-play')
or a family plus task ('cube-double-play-task3') to the config values the paper used there.
A task key refines its family. Presets apply unless the user sets the key on the command
line; `flowrl.registry.presets` does the lookup. An agent may also hold `ONLINE_PRESETS`, the values of
offline-to-online runs (`--online_steps` > 0), which refine `PRESETS`.

Values every agent shares are held once here, and an agent's table extends them
(`PRESETS = with_shared({...})`):
- discount 0.995 on the long-horizon environments (antmaze-giant, humanoidmaze, antsoccer): the
  value the FQL paper uses there for every method (docs/ALGORITHMS.md, FQL table; 0.99 elsewhere).
  For FlowQ and QIPO (published on D4RL only) it is a property of the task's horizon rather than
  of the algorithm, set so that comparisons with FQL are like for like.
- encoder 'impala_small' on every pixel-based (visual-*) environment: the encoder of every
  visual command in the FQL README, for every method (pixel observations need one). An agent
  without a table of its own (flow BC) gets these shared values too.

Only published values are preset, each with its source beside it. An agent's file may name its
key values, `KEY_VALUES`: the config keys whose per-task value should come from its paper. A run
on a task where no preset gives one says so on its first screen
(flowrl.registry.presets.unpublished_key_values), since the agent's default then stands in. Still unknown here (the agent's default
applies; pass the value on the command line when you have it):
- IQL `alpha` and ReBRAC `alpha_actor`/`alpha_critic` on D4RL (the FQL paper took those numbers
  from prior work and lists no values); every OGBench environment has the FQL paper's (Table 6).
- IFQL `num_samples` on D4RL locomotion and kitchen (the FQL paper did not run them).
- QFQL `guidance` on antmaze-giant, humanoidmaze, cube-single and puzzle.
- FlowQ `lambda`, QIPO `beta` and phase lengths: no published per-dataset values.
- Every value on the OGBench datasets the FQL paper did not use (antmaze-medium, pointmaze,
  stitch, explore, noisy, ...).
D4RL tasks read their own tables, `D4RL_PRESETS` and `D4RL_ONLINE_PRESETS`, keyed by the D4RL name
without its version ('antmaze-large-play', 'pen-human'), so the two suites' names never meet in
one table (flowrl.suites: each task names the tables and keys it reads).
"""

from flowrl.suites.ogbench_envs import DATASET_FAMILIES, is_visual

# One module object per preset file (as in agents/__init__.py): not a second copy named `configs`.
if __name__ != 'flowrl.configs':
    raise ImportError(f'flowrl\'s presets are the package flowrl.configs, not {__name__}: '
                      'write `from flowrl.configs import fql`.')

LONG_HORIZON_FAMILIES = ('antmaze-giant-navigate', 'humanoidmaze-medium-navigate', 'humanoidmaze-large-navigate',
                         'antsoccer-arena-navigate')
VISUAL_FAMILIES = tuple(family for family in DATASET_FAMILIES if is_visual(family))

SHARED_PRESETS = {
    **{family: dict(discount=0.995) for family in LONG_HORIZON_FAMILIES},  # FQL paper, for every method
    **{family: dict(encoder='impala_small') for family in VISUAL_FAMILIES},  # FQL README, visual commands
}


def with_shared(own: dict) -> dict:
    """SHARED_PRESETS extended by an agent's `own` table (its values win, key by key)."""
    return {key: {**SHARED_PRESETS.get(key, {}), **own.get(key, {})} for key in {**SHARED_PRESETS, **own}}
