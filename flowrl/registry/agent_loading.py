"""Loads an agent module from a file path (`--agent=agents/fql.py`) and checks its contract."""

import ast
import importlib
import importlib.util
import os
import sys

from flowrl.errors import UserError
from flowrl.kit.contract import missing_names

# flowrl's own agents: the checkout's agents/ folder, or flowrl/agents in an installed copy.
# Found from the package's spec, without importing it: the agent modules are imported one by one,
# when a run names them (`load_agent`).
AGENTS_DIR = os.path.abspath(importlib.util.find_spec('flowrl.agents').submodule_search_locations[0])


def agent_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def own_agent_names() -> list[str]:
    """flowrl's own agents (file stems), sorted."""
    return sorted(agent_name(file) for file in os.listdir(AGENTS_DIR)
                  if file.endswith('.py') and not file.startswith('_'))


def resolve_agent_path(path: str) -> str:
    """The file `--agent` names: `path` as given (against the current directory) if it is a file,
    else a relative `agents/<file>` as a file of flowrl's own agents, so that
    `--agent=agents/fql.py` (and a saved run's recorded setting) works from any directory, with
    a checkout or an installed copy. Anything else comes back as given."""
    if os.path.isfile(path) or os.path.isabs(path):
        return path
    folder, _, rest = os.path.normpath(path).partition(os.sep)
    own = os.path.join(AGENTS_DIR, rest)
    return own if folder == 'agents' and rest and os.path.isfile(own) else path


def load_agent(path: str):
    """Imports the agent file `path` names (`resolve_agent_path`). flowrl's own agents import as
    `flowrl.agents.X`, the module `from flowrl.agents import X` gives, so that each agent is one
    module object in a process (compiled programs and caches are keyed by it)."""
    file = resolve_agent_path(path)
    if not os.path.isfile(file):
        raise UserError(f'Agent file {path!r} does not exist; flowrl\'s agents are '
                        + ', '.join(f'agents/{name}.py' for name in own_agent_names()) + '.')
    check_source(file)
    name = agent_name(file)
    if os.path.samefile(os.path.dirname(os.path.abspath(file)), AGENTS_DIR):
        module = importlib.import_module(f'flowrl.agents.{name}')
    else:
        spec = importlib.util.spec_from_file_location(f'flowrl_user_agent_{name}', file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    missing = missing_names(dir(module))
    if missing:
        raise UserError(_missing_message(file, missing))
    return module


def _missing_message(path: str, missing) -> str:
    return f'Agent file {path!r} is missing {", ".join(missing)} required by the agent contract.'


def check_source(path: str) -> None:
    """Refuses, without running it, a file that cannot be an agent: not Python source, or a
    module whose top level does not bind every name of the contract (e.g. --agent=main.py, a
    script that would run or redefine flags if imported). `from x import *` defers the check
    to import time."""
    if not path.endswith('.py'):
        raise UserError(f'Agent file {path!r} is not a Python file; pass an agent module such as '
                        '--agent=agents/fql.py.')
    try:
        with open(path, 'rb') as f:
            tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, ValueError) as error:
        raise UserError(f'Agent file {path!r} is not valid Python ({error}).') from None
    names = _top_level_names(tree)
    if '*' in names:
        return
    missing = missing_names(names)
    if missing:
        raise UserError(_missing_message(path, missing))


def _top_level_names(tree: ast.Module) -> set:
    """Names a module binds at import time, including inside top-level if/try/with blocks."""
    names, statements = set(), list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            statements.extend(child for field in ('body', 'orelse', 'finalbody') for child in getattr(node, field, []))
            statements.extend(child for handler in getattr(node, 'handlers', []) for child in handler.body)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split('.')[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names
