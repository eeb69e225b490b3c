"""Action modes drive the real MuJoCo arms where they are told to."""

import numpy as np
import pytest

from robotrl.tasks import make


def test_joint_position_tracks_target(robot):
    env = make("Reach", robot=robot, action_mode="joint_pos")
    env.reset(seed=0)
    target = env.arm.home + np.linspace(-0.2, 0.2, len(env.arm.home))
    for _ in range(40):
        env.step(np.append(target, 0.0))
    assert np.abs(env.data.qpos[env.arm.qpos_adr] - target).max() < 0.01


def test_joint_delta_accumulates(robot):
    env = make("Reach", robot=robot, action_mode="joint_delta")
    env.reset(seed=0)
    step = np.zeros(env.action_space.shape)
    step[0] = 0.05
    q0 = env.data.qpos[env.arm.qpos_adr[0]]
    for _ in range(6):
        env.step(step)
    for _ in range(4):
        env.step(np.zeros_like(step))
    assert env.data.qpos[env.arm.qpos_adr[0]] - q0 == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_ee_delta_moves_end_effector(robot, axis):
    env = make("Reach", robot=robot)
    env.reset(seed=0)
    start, start_rot = env.ee_pose()
    action = np.zeros(env.action_space.shape)
    action[axis] = 0.01
    for _ in range(10):
        env.step(action)
    for _ in range(5):
        env.step(np.zeros_like(action))
    moved = env.ee_pose()[0] - start
    assert moved[axis] == pytest.approx(0.1, abs=0.015)
    assert np.abs(np.delete(moved, axis)).max() < 0.01
    assert np.abs(env.ee_pose()[1] - start_rot).max() < 0.05


def test_ee_delta_rotates_about_world_z(robot):
    env = make("Reach", robot=robot)
    env.reset(seed=0)
    _, rot0 = env.ee_pose()
    action = np.zeros(env.action_space.shape)
    action[5] = 0.05
    for _ in range(6):
        env.step(action)
    for _ in range(6):
        env.step(np.zeros_like(action))
    _, rot1 = env.ee_pose()
    relative = rot1 @ rot0.T
    assert np.arctan2(relative[1, 0], relative[0, 0]) == pytest.approx(0.3, abs=0.03)


def test_gripper_closes_and_opens():
    env = make("Reach")
    obs, _ = env.reset(seed=0)
    i = env.robot.state_names.index("gripper.opening")
    assert obs["state"][i] == pytest.approx(1.0, abs=0.01)
    close = np.zeros(env.action_space.shape)
    close[-1] = 1.0
    for _ in range(10):
        obs = env.step(close)[0]
    assert obs["state"][i] < 0.05


def test_joint_limits_are_respected(robot):
    env = make("Reach", robot=robot, action_mode="joint_pos")
    env.reset(seed=0)
    env.step(env.action_space.high)
    q = env.data.qpos[env.arm.qpos_adr]
    assert np.all(q <= env.arm.upper + 1e-3) and np.all(q >= env.arm.lower - 1e-3)


def test_ee_pos_reaches_absolute_target_at_bounded_speed(robot):
    env = make("Reach", robot=robot, action_mode="ee_pos")
    env.reset(seed=0)
    start, start_rot = env.ee_pose()
    target = start + np.array([0.12, -0.08, -0.1])
    action = np.zeros(env.action_space.shape)
    action[:3] = target
    env.step(action)  # a far target is approached at most MAX_LEAD_POS per tick
    assert np.linalg.norm(env.ee_pose()[0] - start) < 0.09
    for _ in range(30):
        env.step(action)
    assert np.abs(env.ee_pose()[0] - target).max() < 0.005
    assert np.abs(env.ee_pose()[1] - start_rot).max() < 0.05
