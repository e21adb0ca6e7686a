"""The first screen of a run on a machine without a display holds no harmless-but-alarming
messages: no GLFW DISPLAY error, no gymnasium Box precision warning (stopped at their source:
flowrl/__init__.py picks headless rendering, flowrl.envs.gym_make keeps a float32 action space)."""

import ctypes.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_AND_STEP = ("from flowrl.envs import make_env, parse_env_name\n"
                  "env = make_env(parse_env_name('cube-single-play'))\n"
                  "env.reset(seed=0)\n"
                  "env.step(env.action_space.sample())\n"
                  "print(env.action_space.dtype, os.environ.get('MUJOCO_GL'))\n")


def run_python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY', 'MUJOCO_GL')}
    env.update(env_changes)
    return subprocess.run([sys.executable, '-c', 'import os\n' + code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_environment_builds_and_steps_without_display_errors_or_box_warnings():
    result = run_python(BUILD_AND_STEP)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'precision lowered' not in result.stderr
    if not (ctypes.util.find_library('EGL') or ctypes.util.find_library('OSMesa')):
        pytest.skip('no headless OpenGL library on this machine: GLFW is all MuJoCo can try')
    assert 'GLFWError' not in result.stderr and 'DISPLAY' not in result.stderr
    assert result.stdout.split()[0] == 'float32'


def test_a_rendering_backend_the_user_chose_is_kept():
    result = run_python("import flowrl\nprint(os.environ['MUJOCO_GL'])", MUJOCO_GL='osmesa')
    assert result.stdout.strip() == 'osmesa'
    result = run_python("import flowrl\nprint(os.environ.get('MUJOCO_GL'))", DISPLAY=':0')
    assert result.stdout.strip() == 'None'  # a display: MuJoCo's own choice stands
