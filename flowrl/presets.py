"""Applies the papers' per-environment hyperparameters from configs/<agent>.py (see
configs/__init__.py for the format). Keys the user set on the command line or sweeps win."""

import importlib

from flowrl.envs import EnvSpec


def presets_for(agent_name: str, spec: EnvSpec, online: bool = False) -> dict:
    """The preset values for this agent on this environment (task keys refine family keys); with
    `online`, the table ONLINE_PRESETS (offline-to-online runs) refines them in turn."""
    try:
        module = importlib.import_module(f'configs.{agent_name}')
    except ModuleNotFoundError:
        module = importlib.import_module('configs')  # no table of its own: the values every agent shares
    shared = getattr(module, 'SHARED_PRESETS', {})
    values = {}
    for table in [getattr(module, 'PRESETS', shared)] + ([getattr(module, 'ONLINE_PRESETS', {})] if online else []):
        values.update(table.get(spec.family, {}))
        if spec.task is not None:
            values.update(table.get(f'{spec.family}-task{spec.task}', {}))
    return values


def apply_presets(config, presets: dict, keep: set) -> dict:
    """Writes `presets` into `config` (in place) except keys in `keep`; returns what it applied."""
    applied = {k: v for k, v in presets.items() if k not in keep and k in config}
    for key, value in applied.items():
        config[key] = value
    return applied
