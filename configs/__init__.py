"""Per-environment presets: `configs/<agent>.py` holds `PRESETS`, a dict from an OGBench
environment family (the singletask name without '-singletask-...-v0', e.g. 'cube-double-play')
or a family plus task ('cube-double-play-task3') to the config values the paper used there.
A task key refines its family. Presets apply unless the user sets the key on the command
line; `flowrl.presets` does the lookup.

Only published values are preset, each with its source beside it. Still unknown here (the
agent's default applies; pass the value on the command line when you have it):
- IQL `alpha` and ReBRAC `alpha_actor`/`alpha_critic` everywhere but humanoidmaze-medium (the
  FQL paper's appendix has them; we could not read it). ReBRAC's defaults (0, 0) mean no BC
  penalty, which is not what the paper ran.
- IFQL `num_samples` on antmaze-giant, humanoidmaze-large, cube-single and puzzle-4x4.
- QFQL `guidance` on antmaze-giant, humanoidmaze, cube-single and puzzle.
- FlowQ `lambda` and QIPO `beta` and phase lengths: published on D4RL only, none for OGBench.
Published values that do not apply to flowrl: the FQL README's pixel-based (visual-*, image
encoder) and offline-to-online values, and its D4RL values.
"""
