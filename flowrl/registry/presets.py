"""Applies the papers' per-environment hyperparameters from configs/<agent>.py (see
configs/__init__.py for the format). Keys the user set on the command line or sweeps win."""

import importlib

from flowrl.registry.agent_loading import agent_name


def _presets_module(agent_name: str):
    """configs/<agent_name>.py, or configs/__init__.py (the values every agent shares) for an agent
    without a file of its own."""
    try:
        return importlib.import_module(f'flowrl.configs.{agent_name}')
    except ModuleNotFoundError:
        return importlib.import_module('flowrl.configs')


def presets_for(agent_name: str, task, online: bool = False) -> dict:
    """The preset values for this agent on this task: the task's suite names the tables it reads
    (flowrl.suites: OGBench's PRESETS, D4RL's D4RL_PRESETS; with `online`, the matching
    offline-to-online table refines them) and the keys (a task key refines its family key)."""
    module = _presets_module(agent_name)
    values = {}
    for name in task.preset_tables(online):
        # configs/__init__.py (the module of an agent without a file of its own) holds the shared values.
        table = getattr(module, name, getattr(module, 'SHARED_' + name, {}))
        for key in task.preset_keys:
            values.update(table.get(key, {}))
    return values


def unpublished_key_values(agent_name: str, task, online: bool = False) -> tuple:
    """The agent's key values (its presets file's KEY_VALUES: the config keys whose per-task value
    should come from its paper) that no preset gives on this task: there the agent's default stands
    in for a value the paper ran."""
    presets = presets_for(agent_name, task, online)
    return tuple(key for key in getattr(_presets_module(agent_name), 'KEY_VALUES', ()) if key not in presets)


def apply_presets(config, presets: dict, keep: set) -> dict:
    """Writes `presets` into `config` (in place) except keys in `keep`; returns what it applied."""
    applied = {k: v for k, v in presets.items() if k not in keep and k in config}
    for key, value in applied.items():
        config[key] = value
    return applied


def presets_name(config, agent_path: str) -> str:
    """Whose presets (configs/<name>.py) a run gets: the config's `agent_name`, so that a copy of
    agents/fql.py saved as my_fql.py keeps FQL's; the file's name only for a config without one."""
    return config.get('agent_name') or agent_name(agent_path)


def default_config(agent, agent_path: str, task, online: bool):
    """The config a run of `agent` on `task` gets without --agent overrides or sweeps: the agent's
    defaults with the task's presets (the papers' values). flags.json records it, so that the report
    can name what a run changed from it."""
    config = agent.get_config()
    apply_presets(config, presets_for(presets_name(config, agent_path), task, online=online), set())
    return config
