"""Teleoperation devices: one small `Teleop` interface, many devices.

    with make_teleop("spacemouse", env) as device:
        command = device.read(obs)  # once per control tick, never blocks

Devices only read `env.robot`, so they drive simulated and ROS 2 robots alike. Device
modules are imported on demand (the expert needs MuJoCo, the leader arm dynamixel-sdk).
"""

from __future__ import annotations

import importlib

from robotrl.errors import UnknownNameError
from robotrl.teleop.base import (
    DeviceIOError,
    DeviceNotFoundError,
    Event,
    Teleop,
    TeleopCommand,
    TeleopError,
)

DEVICES = {
    "keyboard": "robotrl.teleop.keyboard:KeyboardTeleop",
    "spacemouse": "robotrl.teleop.spacemouse:SpaceMouseTeleop",
    "gamepad": "robotrl.teleop.gamepad:GamepadTeleop",
    "leader": "robotrl.teleop.leader_arm:LeaderArmTeleop",
    "expert": "robotrl.teleop.expert:ExpertTeleop",
}
# The constructor option that takes a device's path or port (`--device` of `robotrl collect`,
# `device_path` of the ROS teleop node).
DEVICE_PATH_OPTION = {
    "keyboard": "tty",
    "spacemouse": "device",
    "gamepad": "device",
    "leader": "port",
}

__all__ = [
    "DEVICES",
    "DEVICE_PATH_OPTION",
    "DeviceIOError",
    "DeviceNotFoundError",
    "Event",
    "Teleop",
    "TeleopCommand",
    "TeleopError",
    "make_teleop",
    "teleop_class",
]


def teleop_class(name: str) -> type[Teleop]:
    """The device class registered as `name` (its `required_action_mode` tells which action
    mode to make the env with)."""
    if name not in DEVICES:
        raise UnknownNameError(f"unknown teleop device '{name}': choose {', '.join(DEVICES)}")
    module, cls = DEVICES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_teleop(name: str, env, **options) -> Teleop:
    """The named device for `env` (a `RobotEnv`); options go to the device's constructor."""
    device = teleop_class(name)
    if name == "expert":  # the expert needs the env's privileged state, not just its spec
        return device(env, **options)
    return device(env.robot, **options)
