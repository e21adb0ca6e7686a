"""The package's layers (docs/DESIGN.md, "Layers"): every module of flowrl/, agents/ and configs/
imports only from its own layer and the layers below it, and the modules' import graph has no
cycle. Imports are read from the source (ast), function-level ones included: a cycle through a
lazy import is still a cycle of the design. So are imports by name at run time,
`importlib.import_module(...)` and `__import__(...)`, whose name is a string constant or begins
with one (an f-string or a `+`): `import_module(f'flowrl.agents.{name}')` is an edge to the
package flowrl.agents. A package's __init__ is a module of its own; importing a submodule is an
edge to the submodule, not to the package that Python also initialises."""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ('flowrl', 'agents', 'configs')  # and main.py
INTERNAL = ('flowrl', 'agents', 'configs', 'main')

# layer -> the layers it may import besides itself. The engine and the suites stand side by side;
# making (datasets made here) drives both.
MAY_IMPORT = {
    'base': set(),
    'kit': {'base'},
    'engine': {'base', 'kit'},
    'suites': {'base', 'kit'},
    'agents': {'base', 'kit'},
    'configs': {'base', 'kit', 'suites'},
    # Loads agents and their presets by name: above them, below what uses it.
    'registry': {'base', 'kit', 'suites', 'agents', 'configs'},
    'making': {'base', 'kit', 'engine', 'suites', 'registry'},
    'results': {'base', 'kit', 'suites', 'registry'},
    'run': {'base', 'kit', 'engine', 'suites', 'making', 'results', 'registry'},
    'top': {'base', 'kit', 'engine', 'suites', 'registry', 'making', 'results', 'run', 'agents', 'configs'},
}
SUBPACKAGE_LAYERS = ('kit', 'engine', 'suites', 'registry', 'making', 'results', 'run')
# The entry points and the test helpers: anything. `python -m flowrl.suites.data` is the dataset
# command's entry (flowrl.making.command), kept where users type it.
TOP_MODULES = ('main', 'flowrl.main', 'flowrl.testing', 'flowrl.suites.data.__main__')


def layer_of(module: str) -> str:
    parts = module.split('.')
    if module in TOP_MODULES:
        return 'top'
    if parts[0] in ('agents', 'configs'):
        return parts[0]
    if len(parts) > 1 and parts[1] in ('agents', 'configs'):  # installed as flowrl.agents / flowrl.configs
        return parts[1]
    if len(parts) > 1 and parts[1] in SUBPACKAGE_LAYERS:
        return parts[1]
    return 'base'  # flowrl itself and its top modules


def module_files(root: str = REPO) -> dict:
    """{module name: path} of every module of SOURCES and main.py."""
    found = {'main': os.path.join(root, 'main.py')}
    for source in SOURCES:
        for directory, _, files in os.walk(os.path.join(root, source)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(directory, name)
                    parts = os.path.relpath(path, root)[:-3].split(os.sep)
                    found['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return found


# Calls that import a module named by a string at run time.
IMPORT_CALLS = ('import_module', '__import__')


def constant_prefix(node) -> str | None:
    """The text a string expression surely begins with: a constant, an f-string's leading constant,
    the left end of a `+`; None when it begins with something only known at run time."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return constant_prefix(node.values[0])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return constant_prefix(node.left)
    return None


def imported_by_call(node) -> str | None:
    """The module an `import_module(...)` / `__import__(...)` call imports: its whole name when
    the name is a constant, else the package its constant beginning names (`'flowrl.agents.' +
    name`: flowrl.agents); None for other calls and for names with no constant beginning."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    function = node.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, 'id', None)
    if name not in IMPORT_CALLS:
        return None
    argument = node.args[0]
    prefix = constant_prefix(argument)
    if not prefix or prefix.startswith('.'):  # unknown, or relative to a package given apart
        return None
    whole = isinstance(argument, ast.Constant)
    return prefix if whole else prefix.rpartition('.')[0]  # the last part may be incomplete


def folder_name(target: str) -> str:
    """The module name of a file of agents/ or configs/ (how module_files names them) for its
    installed name: flowrl.agents.fql is agents.fql."""
    parts = target.split('.')
    return '.'.join(parts[1:]) if parts[:2] in (['flowrl', 'agents'], ['flowrl', 'configs']) else target


def imports_of(source: str, module: str, is_package: bool, known) -> set:
    """The internal modules `source` (module `module`) imports anywhere in its body."""
    found = set()
    package = module if is_package else module.rpartition('.')[0]
    for node in ast.walk(ast.parse(source)):
        called = imported_by_call(node)
        if called:
            targets = [called]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([node.module] if node.module else []))
            targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in known else base for alias in node.names]
        else:
            continue
        for target in map(folder_name, targets):
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition('.')[0]
            if target and target.split('.')[0] in INTERNAL:
                found.add(target)
    found.discard(module)
    return found


def import_graph(root: str = REPO) -> dict:
    files = module_files(root)
    graph = {}
    for module, path in files.items():
        with open(path, encoding='utf-8') as f:
            graph[module] = imports_of(f.read(), module, path.endswith('__init__.py'), files)
    return graph


def layer_violations(graph: dict) -> list:
    return sorted(f'{module} ({layer_of(module)}) imports {target} ({layer_of(target)})'
                  for module, targets in graph.items() for target in targets
                  if layer_of(target) != layer_of(module) and layer_of(target) not in MAY_IMPORT[layer_of(module)])


def find_cycle(graph: dict) -> list | None:
    """One import cycle [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(module):
        state[module], _ = 'open', stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[module], _ = 'done', stack.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


@pytest.fixture(scope='module')
def graph():
    return import_graph()


def test_the_layers_are_subpackages_and_every_module_has_one(graph):
    assert {layer_of(m) for m in graph} == set(MAY_IMPORT)
    for layer in SUBPACKAGE_LAYERS:
        assert f'flowrl.{layer}' in graph  # a package with a docstring that says what it owns
        assert ast.get_docstring(ast.parse(open(module_files()[f'flowrl.{layer}']).read()))
    assert 'flowrl.main' in graph['main'] and 'flowrl.run.runner' in graph['flowrl.main']
    assert 'flowrl.kit.agent_state' in graph['agents.fql']
    # Imports by name are edges too: the registry imports the agents and the configs.
    assert 'agents' in graph['flowrl.registry.agent_loading']
    assert 'configs' in graph['flowrl.registry.presets']


def test_no_module_imports_from_a_higher_layer(graph):
    assert layer_violations(graph) == []


def test_the_import_graph_has_no_cycle(graph):
    assert find_cycle(graph) is None


def test_the_checks_find_a_planted_violation_and_cycle():
    """The checks themselves: a kit module importing the run (at function level) and a cycle."""
    known = {'flowrl.kit.flow', 'flowrl.run.runner', 'flowrl.errors', 'flowrl.run'}
    source = 'import numpy\nfrom flowrl import errors\ndef f():\n    from flowrl.run import runner\n'
    edges = imports_of(source, 'flowrl.kit.flow', False, known)
    assert edges == {'flowrl.errors', 'flowrl.run.runner'}
    assert layer_violations({'flowrl.kit.flow': edges}) == [
        'flowrl.kit.flow (kit) imports flowrl.run.runner (run)']
    assert imports_of('from . import flow\n', 'flowrl.kit', True, known) == {'flowrl.kit.flow'}
    assert layer_violations({'agents.fql': {'flowrl.registry.presets'}, 'configs.fql': {'flowrl.registry'}}) == [
        'agents.fql (agents) imports flowrl.registry.presets (registry)',
        'configs.fql (configs) imports flowrl.registry (registry)']
    cyclic = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert find_cycle(cyclic) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None


def test_the_checks_follow_imports_by_name():
    """`importlib.import_module` and `__import__` of a constant name, or of a name that begins with
    one, are edges: an upward one from a kit module is a violation like an import statement."""
    known = {'flowrl.kit.flow', 'flowrl.run.runner', 'flowrl.run', 'agents', 'agents.fql', 'configs'}
    upward = 'import importlib\ndef f():\n    return importlib.import_module(\'flowrl.run.runner\')\n'
    edges = imports_of(upward, 'flowrl.kit.flow', False, known)
    assert edges == {'flowrl.run.runner'}
    assert layer_violations({'flowrl.kit.flow': edges}) == ['flowrl.kit.flow (kit) imports flowrl.run.runner (run)']
    by_name = ('from importlib import import_module\n'
               'a = import_module(f\'flowrl.agents.{name}\')\n'
               'b = __import__(\'flowrl.configs.\' + name)\n'
               'c = import_module(\'flowrl.ru\' + rest)\n'  # an incomplete last part: its package
               'd = import_module(name)\n'  # nothing known: no edge
               'e = import_module(\'.fql\', \'flowrl.agents\')\n')  # relative to a package given apart: no edge
    assert imports_of(by_name, 'flowrl.kit.flow', False, known) == {'agents', 'configs'}
    assert imports_of('import_module("flowrl.agents.fql")', 'flowrl.kit.flow', False, known) == {'agents.fql'}
    assert imports_of('import_module("flowrl.run" + x)', 'flowrl.kit.flow', False, known) == set()  # 'flowrl'
    assert imports_of('importlib.import_module(f"flowrl.run.{x}")', 'flowrl.kit.flow', False, known) == {'flowrl.run'}
