"""Tasks: scene, reset distribution, reward, success and scripted expert for each.

Registered with gymnasium as `robotrl/<Name>-v0` by `import robotrl` (`robotrl.task_ids`, no
MuJoCo imported until a task is made). `make()` returns the bare env (so `env.robot` is at
hand); `gymnasium.make("robotrl/Lift-v0")` works too.
"""

from __future__ import annotations

import importlib

import robotrl.sim  # noqa: F401  (sets MUJOCO_GL before any task module imports mujoco)
from robotrl.errors import UnknownNameError
from robotrl.task_ids import TASK_ENTRY_POINTS, register

TASKS = TASK_ENTRY_POINTS
register()  # `import robotrl` has done it already; this keeps the module whole on its own


def task_name(name: str) -> str:
    """Accept `Lift`, `lift`, `robotrl/Lift-v0` or `sim:Lift`."""
    short = name.removeprefix("sim:").removeprefix("robotrl/").removesuffix("-v0")
    for task in TASKS:
        if task.lower() == short.lower():
            return task
    raise UnknownNameError(f"unknown task '{name}': choose {', '.join(TASKS)}")


def task_class(name: str):
    module, cls = TASKS[task_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)


def make(name: str, **kwargs):
    return task_class(name)(**kwargs)


def make_expert(env):
    """The task's scripted expert for `env` (uses privileged sim state)."""
    return env.unwrapped.make_expert()
