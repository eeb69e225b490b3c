"""The tasks' gymnasium ids and where their classes live, as strings.

`import robotrl` registers `robotrl/<Name>-v0` with gymnasium from this table without importing
MuJoCo or the tasks: gymnasium imports a task's module the first time `gymnasium.make` asks for
it. `robotrl.tasks` reads the same table, so a task is named in one place.
"""

from __future__ import annotations

TASK_ENTRY_POINTS = {
    "Reach": "robotrl.tasks.reach:ReachEnv",
    "PushT": "robotrl.tasks.push_t:PushTEnv",
    "Lift": "robotrl.tasks.lift:LiftEnv",
    "PegInsert": "robotrl.tasks.peg_insert:PegInsertEnv",
}


def gym_id(name: str) -> str:
    return f"robotrl/{name}-v0"


def register() -> None:
    """Register every task with gymnasium (once; a second call changes nothing)."""
    import gymnasium as gym

    for name, entry in TASK_ENTRY_POINTS.items():
        if gym_id(name) not in gym.registry:
            gym.register(id=gym_id(name), entry_point=entry)
