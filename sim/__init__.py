"""MuJoCo simulation backend. Renders off-screen with EGL unless MUJOCO_GL says otherwise."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
