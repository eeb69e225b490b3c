"""The teleop interface: device registry, action-mode checks, shared scaling, expert device."""

import subprocess
import sys

import numpy as np
import pytest

from robotrl.env import ActionSpec, RobotSpec
from robotrl.errors import RobotrlError, UnknownNameError
from robotrl.teleop import DEVICES, Teleop, TeleopCommand, TeleopError, make_teleop
from robotrl.teleop.base import deadzone, twist_action


class Env:
    def __init__(self, robot):
        self.robot = robot


def spec(mode="ee_delta", n=7, low=-0.1, high=0.2) -> RobotSpec:
    names = tuple(f"a{i}" for i in range(n - 1)) + ("gripper",)
    action = ActionSpec(
        mode, names, ("m",) * n, (low,) * (n - 1) + (0.0,), (high,) * (n - 1) + (1.0,)
    )
    return RobotSpec("panda", 20.0, action, (), ())


def test_unknown_device_lists_the_choices():
    with pytest.raises(UnknownNameError) as e:
        make_teleop("x", Env(spec()))
    assert str(e.value) == (
        "unknown teleop device 'x': choose keyboard, spacemouse, gamepad, leader, expert"
    )
    assert isinstance(e.value, RobotrlError)


def test_action_mode_and_shape_checks():
    with pytest.raises(TeleopError, match="the spacemouse teleop device produces ee_delta actions"):
        make_teleop("spacemouse", Env(spec("joint_pos")), device="/dev/null")
    with pytest.raises(TeleopError, match="expects an ee_delta action of 6 entries"):
        make_teleop("gamepad", Env(spec(n=5)), device="/dev/null")


def test_any_mode_device_and_context_manager():
    class Constant(Teleop):
        def read(self, obs=None):
            return TeleopCommand(None)

    with Constant(spec("joint_delta")) as device:
        assert device.has_gripper and device.read().action is None
    assert device.closed


def test_twist_scaling_keeps_asymmetric_limits():
    robot = spec(low=-0.1, high=0.2)
    action = twist_action(robot, [1, -1, 0.5, -0.5, 2, 0], gripper=1.0)
    np.testing.assert_allclose(action, [0.2, -0.1, 0.1, -0.05, 0.2, 0, 1.0], rtol=1e-6)
    assert action.dtype == np.float32
    half = twist_action(robot, [1, -1, 0, 0, 0, 0], gripper=0.0, speed=0.5)
    np.testing.assert_allclose(half[:2], [0.1, -0.05], rtol=1e-6)


def test_deadzone_is_continuous():
    np.testing.assert_allclose(deadzone([0.05, -0.1, 0.55, -1.0, 3.0], 0.1), [0, 0, 0.5, -1, 1])


def test_importing_teleop_needs_no_mujoco_nor_sdk():
    modules = ", ".join(
        f"robotrl.teleop.{m}" for m in ("keyboard", "spacemouse", "gamepad", "leader_arm", "expert")
    )
    code = (
        f"import sys, robotrl.teleop, {modules}; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mujoco', 'dynamixel_sdk', 'torch')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(DEVICES) == {"keyboard", "spacemouse", "gamepad", "leader", "expert"}


def test_expert_device_drives_lift_to_success():
    from robotrl.tasks import make

    env = make("Lift", robot="panda")
    space = env.action_space
    with make_teleop("expert", env) as device:
        obs, _ = env.reset(seed=3)
        device.reset()
        for _ in range(env.unwrapped.max_episode_steps):
            command = device.read(obs)
            assert command.intervening and command.events == ()
            assert command.action.dtype == np.float32 and space.contains(command.action)
            obs, _, terminated, truncated, info = env.step(command.action)
            if terminated or truncated:
                break
        assert info["is_success"]


@pytest.mark.parametrize("task, mode", [("PushT", None), ("Reach", "joint_pos")])
def test_expert_device_in_other_action_spaces(task, mode):
    from robotrl.tasks import make

    env = make(task, **({"action_mode": mode} if mode else {}))
    device = make_teleop("expert", env)
    obs, _ = env.reset(seed=0)
    device.reset()
    action = device.read(obs).action
    assert action.shape == env.action_space.shape and env.action_space.contains(action)
