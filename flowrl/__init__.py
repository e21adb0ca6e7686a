"""flowrl: offline RL with flow-matching policies in JAX/Flax."""

__version__ = "0.1.0"


def _headless_rendering() -> None:
    """Chooses MuJoCo's EGL (or OSMesa) rendering on a Linux machine without a display, before
    anything imports dm_control: left to itself it tries GLFW first, which prints
    "GLFWError: X11: The DISPLAY environment variable is missing" in every process that builds an
    OGBench manipulation environment. Set in the environment, so worker processes inherit it;
    a MUJOCO_GL the user set is never changed."""
    import os
    import sys

    if sys.platform != 'linux' or 'MUJOCO_GL' in os.environ or os.environ.get('DISPLAY') \
            or os.environ.get('WAYLAND_DISPLAY'):
        return
    import ctypes.util

    for backend, library in (('egl', 'EGL'), ('osmesa', 'OSMesa')):
        if ctypes.util.find_library(library):
            os.environ['MUJOCO_GL'] = backend
            return


_headless_rendering()
