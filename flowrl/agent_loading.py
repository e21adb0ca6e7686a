"""Loads an agent module from a file path (`--agent=agents/fql.py`) and checks its contract."""

import importlib.util
import os
import sys

from flowrl.errors import UserError

REQUIRED = ('get_config', 'init', 'update', 'sample_actions', 'DYNAMIC_KEYS')


def agent_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def load_agent(path: str):
    """Imports the agent file at `path`; files inside this repo's agents/ import as `agents.X`
    so that pickled/compiled references agree with `from agents import X` in user code."""
    if not os.path.isfile(path):
        raise UserError(f'Agent file {path!r} does not exist; pass e.g. --agent=agents/fql.py.')
    name = agent_name(path)
    repo_agents = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'agents')
    if os.path.samefile(os.path.dirname(os.path.abspath(path)), repo_agents):
        module = importlib.import_module(f'agents.{name}')
    else:
        spec = importlib.util.spec_from_file_location(f'flowrl_user_agent_{name}', path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise UserError(f'Agent file {path!r} is missing {", ".join(missing)} required by the agent contract.')
    return module
