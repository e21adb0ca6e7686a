"""Test-session settings: run on the CPU (the tolerances and the CI machine are CPU ones) and
never touch the network for datasets. Set FLOWRL_TEST_PLATFORM=gpu to run the suite on a GPU."""

import os

os.environ.setdefault('JAX_PLATFORMS', os.environ.get('FLOWRL_TEST_PLATFORM', 'cpu'))
os.environ.setdefault('FLOWRL_NO_DOWNLOAD', '1')

import socket  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def no_network(monkeypatch):
    """No dataset downloads, and any attempt to open a connection anyway fails the test."""
    monkeypatch.setenv('FLOWRL_NO_DOWNLOAD', '1')

    def refuse_connection(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket, 'create_connection', refuse_connection)
