"""A small ros2_control-style robot written for the tests — not robotrl's sim node, and built on
rclpy alone — that speaks what a foreign arm's driver speaks:

- joint_state_broadcaster: `sensor_msgs/JointState` on `state_topic` at `rate` Hz, the joints
  in an order of its own (a fixed shuffle) with joints that are not the arm's among them;
- forward_position_controller: `std_msgs/Float64MultiArray` on `/<controller>/commands`, one
  value per joint in the controller's own joint order; a message of the wrong size is dropped,
  as ros2_control's forward_command_controller drops it;
- mock hardware (ros2_control's `mock_components/GenericSystem`): the state is the last
  command, exactly.

In-process: `arm = FakeArm(joints, initial).start()`, `arm.received` lists (time, values) of
every command; `arm.close()`. As a process (so a test can kill it without a goodbye):
`python tests/ros2_control_arm.py --joints a,b,c --initial 0,0,0 --log cmds.jsonl`, each
command received appended to the log as one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import threading
import time


class FakeArm:
    def __init__(
        self,
        joints,
        initial,
        extra=("conveyor_joint",),
        state_topic: str = "/joint_states",
        controller: str = "forward_position_controller",
        rate: float = 100.0,
        name: str = "fake_arm",
        log: str | None = None,
        seed: int = 7,
    ):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        self.joints = list(joints)
        self.positions = {j: float(q) for j, q in zip(self.joints, initial)}
        self.positions.update({j: 0.25 for j in extra})  # joints that are not the arm's
        self.order = list(self.positions)
        random.Random(seed).shuffle(self.order)
        self.received: list[tuple[float, list[float]]] = []
        self.published = 0
        self.lock = threading.Lock()
        self._log = open(log, "a") if log else None  # noqa: SIM115 (closed in close)
        self._JointState = JointState

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        qos = QoSProfile(depth=10)  # reliable: ros2_control's system default
        self.pub = self.node.create_publisher(JointState, state_topic, qos)
        self.node.create_subscription(
            Float64MultiArray, f"/{controller}/commands", self._on_command, qos
        )
        self.node.create_timer(1.0 / rate, self._publish)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread: threading.Thread | None = None

    def _on_command(self, msg) -> None:
        values = list(msg.data)
        if len(values) != len(self.joints):
            return
        t = time.time()
        with self.lock:
            self.positions.update(zip(self.joints, values))
            self.received.append((t, values))
        if self._log is not None:
            self._log.write(json.dumps({"t": t, "values": values}) + "\n")
            self._log.flush()

    def _publish(self) -> None:
        msg = self._JointState()
        t = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int((t - int(t)) * 1e9)
        with self.lock:
            msg.name = list(self.order)
            msg.position = [self.positions[j] for j in self.order]
        msg.velocity = [0.0] * len(self.order)
        msg.effort = [0.0] * len(self.order)
        self.pub.publish(msg)
        self.published += 1

    def start(self) -> FakeArm:
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # shut down under it
            self.executor.spin()

    def close(self) -> None:
        import rclpy

        if self.context.ok():
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
            rclpy.shutdown(context=self.context)
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._log is not None:
            self._log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joints", required=True)
    parser.add_argument("--initial", required=True)
    parser.add_argument("--extra", default="conveyor_joint")
    parser.add_argument("--state-topic", default="/joint_states")
    parser.add_argument("--controller", default="forward_position_controller")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--name", default="fake_arm")
    parser.add_argument("--log")
    a = parser.parse_args()
    arm = FakeArm(
        a.joints.split(","),
        [float(x) for x in a.initial.split(",")],
        tuple(x for x in a.extra.split(",") if x),
        a.state_topic,
        a.controller,
        a.rate,
        a.name,
        a.log,
    )
    arm.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        arm.close()


if __name__ == "__main__":
    sys.exit(main())
