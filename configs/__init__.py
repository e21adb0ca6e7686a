"""Per-environment presets: `configs/<agent>.py` holds `PRESETS`, a dict from an OGBench
environment family (the singletask name without '-singletask-...-v0', e.g. 'cube-double-play')
or a family plus task ('cube-double-play-task3') to the config values the paper used there.
A task key refines its family. Presets apply unless the user sets the key on the command
line; `flowrl.presets` does the lookup.
"""
