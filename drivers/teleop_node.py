"""Teleoperation over ROS 2: a node that publishes a device, and a `Teleop` that reads it.

    python -m robotrl.drivers.teleop_node --ros-args -p device:=spacemouse -p config:=ur5e

The node reads a `robotrl.teleop` device (keyboard, spacemouse, gamepad, leader) at the control
rate and publishes `std_msgs/Float64MultiArray` actions on `/robotrl/teleop/action` (in the
robot's action space, made from the robot config exactly as `RosEnv` makes it),
`std_msgs/Bool` on `/robotrl/teleop/intervention` (a human is commanding), device events as
`std_msgs/String` on `/robotrl/teleop/events`, and SUCCESS also as `std_msgs/Bool` on
`/robotrl/success` (the `topic` reward source). The sim robot node publishes its task's
scripted expert on the same topics (`expert:=true`).

Commands reach the arm only through `RosTeleop` in the recording or deployment process, which
sends them through `safe(env)` like any other action: the safety layer is never bypassed.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from dataclasses import dataclass

import numpy as np

from robotrl.drivers.reward import SUCCESS_TOPIC
from robotrl.drivers.ros import RosNode, node_main
from robotrl.drivers.sim_node import TELEOP_ACTION_TOPIC, TELEOP_INTERVENTION_TOPIC
from robotrl.teleop.base import Event, Teleop, TeleopCommand, TeleopError

TELEOP_EVENTS_TOPIC = "/robotrl/teleop/events"


class RosTeleop(Teleop):
    """A teleop device whose actions come from the ROS teleop topics. Each action is used once:
    a tick with no new action reads None (the loop holds)."""

    name = "ros"
    required_action_mode = None  # the publisher made its actions for this robot

    def __init__(self, robot, node_name: str = "robotrl_teleop_reader"):
        super().__init__(robot)
        from std_msgs.msg import Bool, Float64MultiArray, String

        self.ros = RosNode(f"{node_name}_{id(self) % 100000}")
        node = self.ros.node
        self._lock = threading.Lock()
        self._action: np.ndarray | None = None
        self._events: list[Event] = []
        self._intervening = False
        node.create_subscription(Float64MultiArray, TELEOP_ACTION_TOPIC, self._on_action, 10)
        node.create_subscription(Bool, TELEOP_INTERVENTION_TOPIC, self._on_intervention, 10)
        node.create_subscription(String, TELEOP_EVENTS_TOPIC, self._on_event, 10)
        self.ros.start()

    def _on_action(self, msg) -> None:
        action = np.asarray(msg.data, np.float32)
        if action.shape != (self.robot.action.dim,):
            return  # made for another robot: ignore rather than send it
        with self._lock:
            self._action = action

    def _on_intervention(self, msg) -> None:
        self._intervening = bool(msg.data)

    def _on_event(self, msg) -> None:
        try:
            event = Event(msg.data)
        except ValueError:
            return
        with self._lock:
            self._events.append(event)

    def reset(self) -> None:
        with self._lock:
            self._action, self._events = None, []

    def wait_for_action(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._action is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._action is not None

    def read(self, obs: dict | None = None) -> TeleopCommand:
        with self._lock:
            action, self._action = self._action, None
            events, self._events = tuple(self._events), []
        return TeleopCommand(action, events, intervening=self._intervening)

    def close(self) -> None:
        self.ros.close()
        super().close()


@dataclass
class TeleopNodeParams:
    device: str = "keyboard"
    config: str = "sim_panda"
    action_mode: str = "ee_delta"
    rate: float = 0.0  # Hz; 0: the config's control rate
    device_path: str = ""  # hidraw / event / tty path, when not the default


def robot_spec(config: str, action_mode: str, control_hz: float | None = None):
    """The `RobotSpec` a `RosEnv` for `config` would have, without connecting to anything."""
    from robotrl.drivers.config import load_config
    from robotrl.drivers.kinematics import ArmKinematics
    from robotrl.drivers.ros_env import EE_NAMES
    from robotrl.env import RobotSpec

    cfg = load_config(config)
    hz = control_hz or cfg.control_hz
    kin = ArmKinematics(
        cfg.kinematics, cfg.tool, action_mode, hz, cfg.home, has_gripper=cfg.gripper is not None
    )
    gripper = ["gripper.opening"] if cfg.gripper else []
    return RobotSpec(
        robot_type=cfg.robot_type,
        control_hz=hz,
        action=kin.action_spec,
        joint_names=cfg.joint_names,
        state_names=(*(f"{j}.pos" for j in cfg.joint_names), *gripper, *EE_NAMES),
    )


def run_node(params: TeleopNodeParams, ros: RosNode) -> None:
    from std_msgs.msg import Bool, Float64MultiArray, String

    from robotrl.teleop import DEVICE_PATH_OPTION, make_teleop

    if params.device == "expert":
        raise TeleopError(
            "the expert needs the simulator's state: run the sim robot node with expert:=true"
        )
    spec = robot_spec(params.config, params.action_mode, params.rate or None)
    options = {}
    if params.device_path:
        options[DEVICE_PATH_OPTION.get(params.device, "device")] = params.device_path
    device = make_teleop(params.device, types.SimpleNamespace(robot=spec), **options)
    node = ros.node
    pub_action = node.create_publisher(Float64MultiArray, TELEOP_ACTION_TOPIC, 10)
    pub_intervention = node.create_publisher(Bool, TELEOP_INTERVENTION_TOPIC, 10)
    pub_events = node.create_publisher(String, TELEOP_EVENTS_TOPIC, 10)
    pub_success = node.create_publisher(Bool, SUCCESS_TOPIC, 10)
    dt, next_tick = 1.0 / spec.control_hz, time.monotonic()
    try:
        with device:
            while ros.context.ok():
                command = device.read(None)
                if command.action is not None:
                    pub_action.publish(Float64MultiArray(data=[float(x) for x in command.action]))
                pub_intervention.publish(Bool(data=bool(command.intervening)))
                for event in command.events:
                    pub_events.publish(String(data=event.value))
                    if event is Event.SUCCESS:
                        pub_success.publish(Bool(data=True))
                    if event is Event.QUIT:
                        return
                next_tick += dt
                time.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        device.close()


def main(argv: list[str] | None = None) -> int:
    return node_main("teleop", TeleopNodeParams(), run_node, argv)


if __name__ == "__main__":
    sys.exit(main())
