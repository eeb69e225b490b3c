"""`import robotrl` alone registers the tasks with gymnasium, as the README shows, without
importing MuJoCo (gymnasium imports a task's module when `make` first asks for it)."""

import subprocess
import sys

SCRIPT = """
import sys
import gymnasium
import robotrl

assert "mujoco" not in sys.modules and "robotrl.tasks" not in sys.modules
ids = sorted(i for i in gymnasium.registry if i.startswith("robotrl/"))
env = gymnasium.make("robotrl/Lift-v0")
obs, info = env.reset(seed=0)
assert env.unwrapped.robot.action.dim == env.action_space.shape[0]
print(",".join(ids))
"""


def test_gymnasium_make_after_import_robotrl_only():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    ids = result.stdout.strip().splitlines()[-1].split(",")
    assert ids == [
        "robotrl/Lift-v0",
        "robotrl/PegInsert-v0",
        "robotrl/PushT-v0",
        "robotrl/Reach-v0",
    ]
