"""Loads an agent module from a file path (`--agent=agents/fql.py`) and checks its contract."""

import ast
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
    check_source(path)
    name = agent_name(path)
    repo_agents = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'agents')  # flowrl/kit/ -> repo
    if os.path.samefile(os.path.dirname(os.path.abspath(path)), repo_agents):
        module = importlib.import_module(f'agents.{name}')
    else:
        spec = importlib.util.spec_from_file_location(f'flowrl_user_agent_{name}', path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise UserError(_missing_message(path, missing))
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
    missing = [attr for attr in REQUIRED if attr not in names]
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
