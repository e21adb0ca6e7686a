"""Every command, repository path and link written in README.md and docs/*.md still exists.

Commands are read from fenced ```bash blocks and from inline code spans that start with `python`
or `bash`. `python main.py ...` is parsed with main.py's own absl flags (nothing runs): an unknown
flag or a bad value fails, `--agent=PATH` must be a file and every `--agent.KEY` (and swept key)
must be a key of that agent's get_config(). `python -m flowrl.X ...`, `python benchmarks/X.py ...`
and `bash benchmarks/X.sh` must name a file, and every `--flag` a module or script is given must be
defined in its text (argparse `add_argument('--flag'`, absl `DEFINE_*('flag'`) or in a flowrl module
it imports. Placeholders (`...`, `PATH/TO/fql`, `RUN_DIR`) are fine as values. Paths such as
`flowrl/x.py`, `agents/...`, `benchmarks/...`, `tests/...` and `docs/...` must exist, and relative
links must reach a file and, with `#anchor`, one of its headings: so moving a module or renaming a
section without updating the documents fails here.
"""

import copy
import functools
import importlib.util
import pathlib
import re
import shlex

import pytest
from absl import flags

from doc_commands import FENCED, commands_in, without_fences

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]

REPO_PATH = re.compile(r'(?<![\w./~<>-])((?:flowrl|agents|configs|benchmarks|tests|docs)/[\w./-]*\w)(?![\w<*{/-])')
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*#*\s*$', re.M)
ARGPARSE_NAMES = re.compile(r'add_argument\(\s*((?:[\'"][^\'"]+[\'"]\s*,?\s*)+)')
QUOTED = re.compile(r'[\'"]([^\'"]+)[\'"]')
ABSL_DEFINE = re.compile(r'DEFINE_\w+\(\s*[\'"](\w+)[\'"]')
FLOWRL_IMPORT = re.compile(r'^\s*(?:from\s+(flowrl(?:\.\w+)*)\s+import\s+([\w, ()]+)|import\s+(flowrl(?:\.\w+)*))', re.M)
PLACEHOLDERS = {'...', '&'}
ABSL_HELP = {'--help', '--helpshort', '--helpfull'}  # absl.app.run defines them (parsing them prints and exits)


# ----------------------------------------------------------------------------- reading documents

def repository_paths_in(text: str) -> list[str]:
    """Paths into this repository: under agents/, configs/, benchmarks/, tests/, docs/, or a file
    (with an extension) under flowrl/ (flowrl/<env>/<dataset>-v0 is a dataset id, not a path)."""
    paths = []
    for path in REPO_PATH.findall(text):
        path = path.rstrip('.')
        if path.startswith('flowrl/') and not re.search(r'\.\w+$', path):
            continue
        paths.append(path)
    return paths


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r'`|\*\*|\[([^\]]*)\]\([^)]*\)', r'\1', heading).lower()
    return re.sub(r'[^\w\- ]', '', heading).replace(' ', '-')


def anchors_of(path: pathlib.Path) -> set[str]:
    return {slug(heading) for heading in HEADING.findall(without_fences(path.read_text()))}


# ----------------------------------------------------------------------------- main.py

@functools.cache
def main_flags():
    """main.py's flags, as its command (flowrl.main) defines them, in a registry of their own
    (never absl's global one, which this process may already have parsed)."""
    from flowrl.main import LAUNCHER, command_flags

    return {flag.name: flag for flag in command_flags().get_flags_for_module(LAUNCHER)}


def fresh_main_flag_values() -> flags.FlagValues:
    values = flags.FlagValues()
    for name, flag in main_flags().items():
        values[name] = copy.deepcopy(flag)
        values[name].unparse()  # another test of this process may have parsed them
    return values


@functools.cache
def agent_module(path: str):
    spec = importlib.util.spec_from_file_location(f'test_docs_agent_{pathlib.Path(path).stem}', ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main_problems(arguments: list[str]) -> list[str]:
    agent_keys, rest = {}, []
    for token in arguments:
        if token.startswith('--agent.'):
            key, _, value = token[len('--agent.'):].partition('=')
            agent_keys[key] = value
        elif token not in PLACEHOLDERS | ABSL_HELP:
            rest.append(token)
    values = fresh_main_flag_values()
    try:
        leftover = values(['main.py', *rest])
    except flags.Error as error:
        return [f'main.py flags: {error}']
    if leftover[1:]:
        return [f'main.py takes no positional arguments: {leftover[1:]}']
    if values['resume'].present:
        return []
    agent_path = values['agent'].value
    if not (ROOT / agent_path).is_file():
        return [f'--agent={agent_path}: no such file']
    agent = agent_module(agent_path)
    config = agent.get_config()
    problems = [f'--agent.{key}: not a key of {agent_path} get_config()' for key in agent_keys if key not in config]
    for sweep in values['sweep'].value:
        key = sweep.partition('=')[0].removeprefix('agent.')
        if key not in agent.DYNAMIC_KEYS:
            problems.append(f'--sweep={sweep}: {key} is not a dynamic key of {agent_path}')
    return problems


# ----------------------------------------------------------------------------- modules and scripts

def module_file(name: str) -> pathlib.Path | None:
    base = ROOT / name.replace('.', '/')
    for candidate in (base.with_suffix('.py'), base / '__main__.py', base / '__init__.py'):
        if candidate.is_file():
            return candidate
    return None


def names_defined_in(text: str) -> set[str]:
    names = set(ABSL_DEFINE.findall(text))
    for group in ARGPARSE_NAMES.findall(text):
        names |= {name.lstrip('-') for name in QUOTED.findall(group) if name.startswith('--')}
    return names


@functools.cache
def defined_flags(path: pathlib.Path) -> frozenset[str]:
    """Flags defined in a file and in the flowrl modules it imports (one level: e.g. the start-up
    flags flowrl.run.evaluate_run takes from its placement module)."""
    text = path.read_text()
    names = names_defined_in(text)
    for package, imported, module in FLOWRL_IMPORT.findall(text):
        candidates = [module] if module else [package] + [f'{package}.{name.strip()}'
                                                          for name in imported.strip('()').split(',')]
        for candidate in filter(None, map(module_file, candidates)):
            if candidate != path:
                names |= names_defined_in(candidate.read_text())
    return frozenset(names)


def flag_names(arguments: list[str]) -> list[str]:
    tokens = [token.strip('[]') for token in arguments]
    return [token[2:].partition('=')[0] for token in tokens if token.startswith('--') and not token.startswith('--agent.')]


def script_problems(path: pathlib.Path, shown: str, arguments: list[str]) -> list[str]:
    if path is None or not path.is_file():
        return [f'{shown}: no such file']
    defined = defined_flags(path)
    problems = [f'{shown}: --{name} is not defined in {path.relative_to(ROOT)}'
                for name in flag_names(arguments) if name not in defined]
    agent_keys = [token[len('--agent.'):].partition('=')[0] for token in arguments if token.startswith('--agent.')]
    problems += [f'{shown}: --agent.{key} is no agent\'s dynamic key' for key in agent_keys
                 if key not in every_dynamic_key()]
    return problems


@functools.cache
def every_dynamic_key() -> frozenset[str]:
    """What `--agent.KEY=V1,V2` may set on a saved run (flowrl.run.evaluate_run): any agent's dynamic keys."""
    files = sorted((ROOT / 'agents').glob('[!_]*.py'))
    return frozenset().union(*(agent_module(f'agents/{path.name}').DYNAMIC_KEYS for path in files))


def command_problems(command: str) -> list[str]:
    tokens = shlex.split(command)
    while tokens and re.match(r'^[A-Z_][A-Z0-9_]*=', tokens[0]):
        tokens.pop(0)
    program, arguments = tokens[0], tokens[1:]
    if program == 'bash':
        return script_problems(ROOT / arguments[0], arguments[0], [])
    if arguments[:1] == ['main.py']:
        return main_problems(arguments[1:])
    if arguments[:1] == ['-m'] and arguments[1].split('.')[0] == 'flowrl':
        return script_problems(module_file(arguments[1]), f'python -m {arguments[1]}', arguments[2:])
    if arguments[:1] == ['-m']:  # a tool's module (pytest): installed, its flags its own
        return [] if importlib.util.find_spec(arguments[1]) else [f'python -m {arguments[1]}: not installed']
    if arguments and arguments[0].endswith('.py'):
        return script_problems(ROOT / arguments[0], arguments[0], arguments[1:])
    return [f'not a command form this test knows: {command}']


# ----------------------------------------------------------------------------- the documents

def document_problems(document: pathlib.Path, text: str | None = None) -> list[str]:
    text = document.read_text() if text is None else text
    problems = [f'`{command}`: {problem}' for command in commands_in(text) for problem in command_problems(command)]
    problems += [f'{path}: no such file or directory' for path in repository_paths_in(text)
                 if not (ROOT / path).exists()]
    for target in LINK.findall(without_fences(text)):
        if re.match(r'^[a-z]+:', target):
            continue
        file, _, anchor = target.partition('#')
        linked = (document.parent / file).resolve() if file else document
        if not linked.exists():
            problems.append(f'link {target}: no such file')
        elif anchor and linked.suffix == '.md' and anchor not in anchors_of(linked):
            problems.append(f'link {target}: no heading with that anchor')
    return problems


def test_the_documents_show_commands():
    assert len(commands_in((ROOT / 'README.md').read_text())) >= 4
    assert sum(len(commands_in(d.read_text())) for d in DOCUMENTS) >= 40


@pytest.mark.parametrize('document', DOCUMENTS, ids=lambda path: path.name)
def test_every_command_path_and_link_exists(document):
    assert document_problems(document) == []


def test_usage_lists_every_flag_of_main():
    usage = (ROOT / 'docs' / 'USAGE.md').read_text()
    names = set(main_flags())
    assert len(names) > 30
    assert sorted(name for name in names if f'--{name}`' not in usage) == []


def shell_lines(block: str) -> list[str]:
    return [line.split('  #')[0].strip() for line in block.splitlines() if line.strip() and not line.startswith('#')]


def test_readme_is_short_and_its_set_up_is_what_ci_runs():
    readme = (ROOT / 'README.md').read_text()
    assert len(readme.splitlines()) <= 150
    set_up = FENCED.findall(readme.split('## Set up', 1)[1])[0][1]
    ci = [line.replace('python -m pip', 'pip') for line in shell_lines((ROOT / '.ci' / 'run').read_text())
          if line.startswith('python')]
    assert shell_lines(set_up) == ci == ['pip install -e ".[dev]"', 'python -m pytest -n 2']
    assert 'python main.py --agent=agents/fql.py --env_name=cube-double-play\n' in readme


@pytest.mark.parametrize('text, problem', [
    ('`python main.py --agent=agents/fql.py --made_up_flag=3`', 'made_up_flag'),
    ('`python main.py --num_seeds=many`', 'num_seeds'),
    ('`python main.py --agent=agents/fql.py --agent.made_up_key=1`', 'made_up_key'),
    ('`python main.py --agent=agents/made_up.py`', 'no such file'),
    ('`python main.py --sweep=agent.actor_hidden_dims=1,2`', 'not a dynamic key'),
    ('```bash\npython -m flowrl.results.report exp/ --made_up_flag 1\n```', 'made_up_flag'),
    ('```bash\nsrun -N 2 python benchmarks/learning.py \\\n  --made_up_flag=1 &\n```', 'made_up_flag'),
    ('`python -m flowrl.made_up`', 'no such file'),
    ('`python benchmarks/made_up.py`', 'no such file'),
    ('see `flowrl/made_up.py`', 'flowrl/made_up.py'),
    ('[the design](DESIGN.md#made-up-section)', 'no heading'),
    ('[the design](MADE_UP.md)', 'no such file'),
    ('`python -m flowrl.run.evaluate_run --run_dir=RUN_DIR --agent.made_up_key=1,2`', 'made_up_key'),
])
def test_a_stale_command_path_or_link_is_found(text, problem):
    problems = document_problems(ROOT / 'docs' / 'ANY.md', text)
    assert problems and problem in problems[0], problems
