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


def test_expert_in_joint_action_modes():
    from robotrl.tasks import make

    for mode in ("joint_pos", "joint_delta"):
        env = make("Lift", action_mode=mode)
        summary, _ = rollout(RolloutConfig(task="Lift", episodes=5, progress=False), env=env)
        assert summary.success_rate == 1.0, (mode, summary)
