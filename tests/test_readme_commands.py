"""The README's training commands, run exactly as a newcomer copies them.

Every `python main.py ...` command of README.md (and of docs/USAGE.md's first section, the
run a newcomer reads next) runs verbatim from the repository root in a fresh HOME, with no data
and no internet, and every flag it does not write at its default. Each must get to real work (a
missing dataset is generated with OGBench's oracles: the first generated episode's progress line)
and then stop cleanly on Ctrl-C: exit status 130 and the stop line that says nothing was saved.
Nothing else is waited for, so each command costs seconds. (The same commands' flags are parsed
by tests/test_docs.py; the README's report command runs on a real run in tests/test_main.py.)
"""

import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from doc_commands import commands_in

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKING = re.compile(r'^\S+: 1/\d+ episodes \(0%\), [\d,]+ steps/s$', re.M)  # generate.Progress's first line
DEADLINE_S = 240


def training_commands() -> list[str]:
    readme = (ROOT / 'README.md').read_text()
    usage = (ROOT / 'docs' / 'USAGE.md').read_text()
    usage_first_section = usage.split('\n## ')[1]  # "A run and what it writes"
    commands = [c for c in commands_in(readme) + commands_in(usage_first_section) if c.startswith('python main.py ')]
    return list(dict.fromkeys(commands))


def test_the_readme_has_training_commands():
    commands = training_commands()
    assert commands[0] == 'python main.py --agent=agents/fql.py --env_name=cube-double-play'  # the main command
    assert len(commands) >= 3, commands


def fresh_home_environment(home: pathlib.Path) -> dict:
    """A newcomer's environment: a new HOME and none of flowrl's, D4RL's or Minari's variables. No
    internet: FLOWRL_NO_DOWNLOAD stands for the machine's missing network (a CI machine may have
    one, and the official files are gigabytes)."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(('FLOWRL_', 'D4RL_', 'MINARI_', 'XLA_', 'JAX_', 'TF_', 'PYTEST_'))}
    return dict(keep, HOME=str(home), FLOWRL_NO_DOWNLOAD='1', JAX_PLATFORMS='cpu')


def run_until_working_then_ctrl_c(command: str, home: pathlib.Path) -> tuple[int, str]:
    """Runs `command` (python = this interpreter) in its own process group, as a terminal does;
    once its output shows it working, sends SIGINT to the whole group, as Ctrl-C does."""
    argv = shlex.split(command)
    argv[0] = sys.executable
    process = subprocess.Popen(argv, cwd=ROOT, env=fresh_home_environment(home), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output, deadline = [], time.monotonic() + DEADLINE_S
    try:
        for line in process.stdout:
            output.append(line)
            if WORKING.search(line.rstrip('\n')):
                os.killpg(process.pid, signal.SIGINT)
                break
            assert time.monotonic() < deadline, f'{command}: not working after {DEADLINE_S} s:\n' + ''.join(output)
        output.append(process.communicate(timeout=120)[0])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, ''.join(output)


@pytest.mark.parametrize('command', training_commands())
def test_a_readme_command_works_as_written_in_a_fresh_home(command, tmp_path):
    status, output = run_until_working_then_ctrl_c(command, tmp_path)
    assert 'Traceback' not in output, output
    assert WORKING.search(output), output
    # The stop came while the dataset was being made: nothing of the run exists yet, and half a
    # dataset is never left under the official name.
    lines = [line for line in output.splitlines() if line.strip()]
    assert status == 130, output
    assert lines[-1] == 'Stopped by Ctrl-C (SIGINT) before training started; nothing was saved.', output
    data = tmp_path / '.ogbench' / 'data'
    assert data.is_dir() and not list(data.glob('*.npz')), sorted(data.iterdir())
