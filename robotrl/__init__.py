"""robotrl: one environment interface for sim and hardware, policies, RL fine-tuning, runtime."""

from robotrl.env import ActionSpec, CameraSpec, RobotEnv, RobotSpec
from robotrl.errors import RobotrlError
from robotrl.task_ids import register as _register_tasks

_register_tasks()  # gymnasium.make("robotrl/Lift-v0") works after `import robotrl` alone

__version__ = "0.1.0"
__all__ = ["ActionSpec", "CameraSpec", "RobotEnv", "RobotSpec", "RobotrlError", "make"]


def make(task: str, **kwargs) -> RobotEnv:
    """Make a task env by short name (`Lift`) or id (`robotrl/Lift-v0`). Imports MuJoCo lazily."""
    from robotrl.tasks import make as make_task

    return make_task(task, **kwargs)
