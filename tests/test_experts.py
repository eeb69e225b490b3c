"""Every task's scripted expert solves it on both arms (a sample of seeds; the 100-seed
figures come from `robotrl rollout --episodes 100` and are in the README)."""

import pytest

from robotrl.rollout import RolloutConfig, rollout
from robotrl.tasks import TASKS

SEEDS = {"Reach": 20, "Lift": 20, "PushT": 6, "PegInsert": 10}


@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds(task, robot):
    summary, _ = rollout(
        RolloutConfig(task=task, robot=robot, episodes=SEEDS[task], seed=1000, progress=False)
    )
    assert summary.success_rate >= 0.9, summary


@pytest.mark.parametrize(
    "task, mode", [("Lift", "joint_pos"), ("Lift", "joint_delta"), ("Lift", "ee_pos"),
                   ("PushT", "ee_pos")],
)  # fmt: skip
def test_expert_in_other_action_modes(task, mode):
    from robotrl.tasks import make

    env = make(task, action_mode=mode)
    summary, _ = rollout(RolloutConfig(task=task, episodes=4, progress=False), env=env)
    assert summary.success_rate == 1.0, (mode, summary)
