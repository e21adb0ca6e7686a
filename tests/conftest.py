"""Test-session settings: run on the CPU (the tolerances and the CI machine are CPU ones), never
touch the network for datasets, and compile each XLA program once per session. Set
FLOWRL_TEST_PLATFORM=gpu to run the suite on a GPU."""

import os
import shutil
import tempfile

os.environ.setdefault('JAX_PLATFORMS', os.environ.get('FLOWRL_TEST_PLATFORM', 'cpu'))
os.environ.setdefault('FLOWRL_NO_DOWNLOAD', '1')


def _share_compiled_programs() -> str | None:
    """Points JAX's persistent compilation cache at a fresh directory for this session and returns
    it (None where the environment already names one: the user's, or the controller's when this
    is an xdist worker). The same program is compiled in many processes: both xdist workers (which
    inherit this environment) and the commands tests start as users type them (main.py's tiny
    FQL run of tests/test_main.py four times, the fake world's runs); with the cache, the first
    compiles it and the others read it. A fresh directory per session, so no session reads
    programs another one compiled from other code. Programs that compile in under 0.2 s are not
    worth a file."""
    if 'JAX_COMPILATION_CACHE_DIR' in os.environ:
        return None
    directory = tempfile.mkdtemp(prefix='flowrl-tests-xla-cache-')
    os.environ['JAX_COMPILATION_CACHE_DIR'] = directory
    os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
    return directory


_SESSION_CACHE = _share_compiled_programs()

import socket  # noqa: E402

import pytest  # noqa: E402


# Modules whose single tests are the longest of the default run (`--durations=0`: each 40-180 s on
# the loaded 2-core machine). pytest-xdist hands out work in collection order (after the
# xdist_group groups, largest first), so these start first and the short tests even out the end
# instead of one long test running alone on one core while the other waits.
LONG_TESTS_FIRST = ('test_training.py', 'test_qipo.py', 'test_pixels.py', 'test_flowq.py', 'test_contract.py',
                    'test_locomotion_recipe.py', 'test_readme_commands.py', 'test_fql.py', 'test_baselines.py')


def pytest_collection_modifyitems(session, config, items):
    """Puts the modules of LONG_TESTS_FIRST first, in that order, each module's tests in their own."""
    def rank(item):
        name = item.path.name
        return LONG_TESTS_FIRST.index(name) if name in LONG_TESTS_FIRST else len(LONG_TESTS_FIRST)

    items.sort(key=rank)


def pytest_unconfigure(config):
    """The process that made the session's compilation cache removes it."""
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture
def no_network(monkeypatch):
    """No dataset downloads, and any attempt to open a connection anyway fails the test."""
    monkeypatch.setenv('FLOWRL_NO_DOWNLOAD', '1')

    def refuse_connection(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket, 'create_connection', refuse_connection)
