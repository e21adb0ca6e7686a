"""MuJoCo's rendering backend on a Linux machine without a display, chosen when flowrl is imported.

With MUJOCO_GL unset, dm_control (which OGBench's manipulation environments import) and MuJoCo's
Renderer try GLFW, which prints "GLFWError: X11: The DISPLAY environment variable is missing" in
every process that builds such an environment, and cannot render there anyway. So without a
display we set MUJOCO_GL, before anything imports dm_control, to the first backend that works:

- egl, when a headless EGL display initialises (Mesa or a GPU driver). A loadable libEGL is not
  enough: glvnd's dispatcher is often installed without any vendor library, and dm_control,
  imported with MUJOCO_GL=egl, raises ImportError when no display initialises, which would make
  every manipulation environment fail;
- osmesa, when libOSMesa loads (dm_control fails at import without it);
- disable otherwise: no rendering, as before, but no GLFW error.

A backend that PYOPENGL_PLATFORM (which PyOpenGL reads and which must agree with MUJOCO_GL) rules
out is skipped, and a MUJOCO_GL the user set is never changed. It is an environment variable, so
the worker processes of evaluation and dataset generation inherit it.
"""

import ctypes
import os
import sys

EGL_PLATFORM_DEVICE_EXT = 0x313F
MAX_EGL_DEVICES = 64
NO_RENDERING = 'disable'


def has_display(environ) -> bool:
    return bool(environ.get('DISPLAY') or environ.get('WAYLAND_DISPLAY'))


def library_loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        return False


def egl_display_initialises() -> bool:
    """Whether a headless EGL display initialises on some device: the check dm_control makes
    when it is imported with MUJOCO_GL=egl (dm_control/_render/pyopengl/egl_renderer.py)."""
    c = ctypes
    try:
        egl = c.CDLL('libEGL.so.1')
    except OSError:
        return False
    egl.eglGetProcAddress.restype, egl.eglGetProcAddress.argtypes = c.c_void_p, [c.c_char_p]
    query_devices = egl.eglGetProcAddress(b'eglQueryDevicesEXT')
    platform_display = egl.eglGetProcAddress(b'eglGetPlatformDisplayEXT')
    if not query_devices or not platform_display:
        return False
    query_devices = c.CFUNCTYPE(c.c_uint, c.c_int, c.c_void_p, c.POINTER(c.c_int))(query_devices)
    platform_display = c.CFUNCTYPE(c.c_void_p, c.c_uint, c.c_void_p, c.c_void_p)(platform_display)
    egl.eglInitialize.restype, egl.eglInitialize.argtypes = c.c_uint, [c.c_void_p, c.c_void_p, c.c_void_p]
    egl.eglTerminate.argtypes = [c.c_void_p]
    devices, count = (c.c_void_p * MAX_EGL_DEVICES)(), c.c_int(0)
    if not query_devices(MAX_EGL_DEVICES, devices, c.byref(count)):
        return False
    for device in devices[:count.value]:
        display = platform_display(EGL_PLATFORM_DEVICE_EXT, device, None)
        if display and egl.eglInitialize(display, None, None):
            egl.eglTerminate(display)
            return True
    return False


def headless_backend(environ, egl_works=egl_display_initialises, loads=library_loads) -> str:
    platform = environ.get('PYOPENGL_PLATFORM', '').lower()
    if platform in ('', 'egl') and egl_works():
        return 'egl'
    if platform in ('', 'osmesa') and (loads('libOSMesa.so.8') or loads('libOSMesa.so')):
        return 'osmesa'
    return NO_RENDERING


def choose_mujoco_backend(environ=os.environ, platform=sys.platform, backend=headless_backend) -> str | None:
    """Sets MUJOCO_GL on a Linux machine without a display unless it is set; returns what it set
    (None when it left the environment alone)."""
    if 'MUJOCO_GL' in environ or not platform.startswith('linux') or has_display(environ):
        return None
    environ['MUJOCO_GL'] = backend(environ)
    return environ['MUJOCO_GL']
