"""Tasks: scene, reset distribution, reward, success and scripted expert for each.

Registered with gymnasium as `robotrl/<Name>-v0` on import. `make()` returns the bare env (so
`env.robot` is at hand); `gymnasium.make("robotrl/Lift-v0")` works too.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

import robotrl.sim  # noqa: F401  (sets MUJOCO_GL before any task module imports mujoco)
from robotrl.errors import UnknownNameError

TASKS = {
    "Reach": "robotrl.tasks.reach:ReachEnv",
    "PushT": "robotrl.tasks.push_t:PushTEnv",
    "Lift": "robotrl.tasks.lift:LiftEnv",
    "PegInsert": "robotrl.tasks.peg_insert:PegInsertEnv",
}

for _name, _entry in TASKS.items():
    if f"robotrl/{_name}-v0" not in gym.registry:
        gym.register(id=f"robotrl/{_name}-v0", entry_point=_entry)


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
