"""The first screen of a run on a machine without a display holds no harmless-but-alarming
messages: no GLFW DISPLAY error, no gymnasium Box precision warning (stopped at their source:
flowrl.headless picks the rendering backend, flowrl.suites.ogbench_envs.gym_make keeps a float32 action space)."""

import os
import subprocess
import sys

from flowrl import headless

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_AND_STEP = ("from flowrl.suites.ogbench_envs import make_env, parse_env_name\n"
                  "env = make_env(parse_env_name('cube-single-play'))\n"
                  "env.reset(seed=0)\n"
                  "env.step(env.action_space.sample())\n"
                  "print(env.action_space.dtype, os.environ.get('MUJOCO_GL'))\n")


def run_python(code, **env_changes):
    display_settings = ('DISPLAY', 'WAYLAND_DISPLAY', 'MUJOCO_GL', 'PYOPENGL_PLATFORM')
    env = {k: v for k, v in os.environ.items() if k not in display_settings}
    env.update(env_changes)
    return subprocess.run([sys.executable, '-c', 'import os\n' + code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_environment_builds_and_steps_without_display_errors_or_box_warnings():
    result = run_python(BUILD_AND_STEP)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'precision lowered' not in result.stderr
    assert 'GLFWError' not in result.stderr and 'DISPLAY' not in result.stderr
    assert result.stdout.split()[0] == 'float32'


def test_an_egl_library_without_a_working_display_does_not_break_environments():
    # glvnd's libEGL loads but finds no vendor library: dm_control, imported with MUJOCO_GL=egl,
    # would raise ImportError ("Cannot initialize a headless EGL display") in every manipulation env.
    result = run_python(BUILD_AND_STEP, __EGL_VENDOR_LIBRARY_DIRS=os.path.join(REPO, 'no-such-dir'))
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'GLFWError' not in result.stderr and result.stdout.split()[1] != 'egl', result.stdout


def test_the_headless_backend_is_the_first_that_works_and_agrees_with_pyopengl():
    works, fails = (lambda *_: True), (lambda *_: False)
    assert headless.headless_backend({}, egl_works=works, loads=works) == 'egl'
    assert headless.headless_backend({}, egl_works=fails, loads=works) == 'osmesa'
    assert headless.headless_backend({}, egl_works=fails, loads=fails) == 'disable'  # no GLFW error either
    # PyOpenGL's platform must agree with MuJoCo's: a user's PYOPENGL_PLATFORM=osmesa rules out EGL.
    assert headless.headless_backend({'PYOPENGL_PLATFORM': 'osmesa'}, egl_works=works, loads=works) == 'osmesa'
    assert headless.headless_backend({'PYOPENGL_PLATFORM': 'osmesa'}, egl_works=works, loads=fails) == 'disable'
    environ = {}
    assert headless.choose_mujoco_backend(environ, 'linux', lambda env: 'egl') == 'egl' == environ['MUJOCO_GL']
    assert headless.choose_mujoco_backend({}, 'darwin', lambda env: 'egl') is None


def test_a_rendering_backend_the_user_chose_is_kept():
    result = run_python("import flowrl\nprint(os.environ['MUJOCO_GL'])", MUJOCO_GL='osmesa')
    assert result.stdout.strip() == 'osmesa'
    result = run_python("import flowrl\nprint(os.environ.get('MUJOCO_GL'))", DISPLAY=':0')
    assert result.stdout.strip() == 'None'  # a display: MuJoCo's own choice stands
