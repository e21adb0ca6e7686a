"""The run around the engine: from flags to a trained run directory.

It owns the settings and their flags (`settings`; `task_settings`, what the task reads of them),
how a command runs (`command`: its own flag registry, one sentence for bad input), config
overrides, sweeps and rules (`config_overrides`, `config_rules`; the presets of configs/ they
apply are read by flowrl.registry.presets), loggers (`loggers`), the progress line and chunk
pacing (`progress`); the order of a run (`loop`) over its explicit state (`state`: the Position)
and the parts it drives: offline chunks (`offline`, on a dataset in memory or on the window of
a stream of shards: `stream`), online steps (`online_steps`), evaluation and validation
(`evaluating`); the command's run (`runner.Run`, `runner.resume`: set-up from the settings)
and its record in the run directory (`record`, over `files`), the space the run needs there
(`space`), the lines that end a run with the command that continues it (`resume_lines`),
saved runs read back (`saved`); offline training as one Python call (`core.train`); plus
`evaluate_run` (a saved run at other dynamic hyperparameters). It is the top layer: it may import
every other one (base, kit, engine, suites, registry, making, results); nothing below imports it.
"""
