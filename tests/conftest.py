"""Test-session settings: run on the CPU (the tolerances and the CI machine are CPU ones) and
never touch the network for datasets. Set FLOWRL_TEST_PLATFORM=gpu to run the suite on a GPU."""

import os

os.environ.setdefault('JAX_PLATFORMS', os.environ.get('FLOWRL_TEST_PLATFORM', 'cpu'))
os.environ.setdefault('FLOWRL_NO_DOWNLOAD', '1')
