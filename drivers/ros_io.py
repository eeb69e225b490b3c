"""The ROS 2 side of `RosEnv`: subscriptions that keep the freshest message of each stream,
publishers for the arm and gripper commands, and the sim's reset service.

Callbacks run on the node's spin thread and only store (stamp, arrival time, payload) under a
lock; `RosEnv` reads snapshots. A condition variable wakes a waiting `step` the moment a joint
state arrives, so a tick returns the sample that follows it without polling.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from robotrl.drivers.config import RobotConfig
from robotrl.drivers.ros import RosNode, from_stamp, now, to_stamp
from robotrl.errors import RobotrlError


@dataclass
class Sample:
    stamp: float  # when it was captured (header stamp, wall clock)
    received: float  # when it arrived here (wall clock)
    value: object


def image_array(msg) -> np.ndarray:
    """A `sensor_msgs/Image` as uint8 HxWx3 RGB (rgb8, bgr8, rgba8, bgra8, mono8)."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise RobotrlError(f"camera image encoding '{msg.encoding}' is not supported")
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    img = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding.startswith("bgr"):
        img = img[..., 2::-1]
    elif channels == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


class RosIO:
    def __init__(self, cfg: RobotConfig, cameras, node_name: str = "robotrl_env"):
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        self.cfg = cfg
        self.ros = RosNode(node_name)
        node = self.ros.node
        self._msgs = (Float64MultiArray, JointTrajectory, JointTrajectoryPoint)
        self.lock = threading.Lock()
        self.joint_arrived = threading.Condition(self.lock)
        self.joints: Sample | None = None
        self.task: Sample | None = None
        self.images: dict[str, Sample | None] = {c.name: None for c in cameras}
        self._names: list[str] = []  # joint names of the last message, and where ours are
        self._index: dict[str, int] = {}
        wanted = [*cfg.joint_names, *([cfg.gripper.joint] if cfg.gripper else [])]
        self._wanted = wanted

        # Best effort subscribers match publishers of either reliability; depth 1: freshest.
        sensor = qos_profile_sensor_data
        ros = self.ros
        ros.subscribe_fast(JointState, cfg.state_topic, self._on_joints, sensor)
        for cam in cameras:
            ros.subscribe_fast(
                Image, cam.image_topic, lambda m, n=cam.name: self._on_image(n, m), sensor
            )
        if cfg.sim:
            ros.subscribe_fast(JointState, cfg.sim.task_state_topic, self._on_task, sensor)
        reliable = QoSProfile(depth=1)
        command_type = JointTrajectory if cfg.control_mode == "trajectory" else Float64MultiArray
        self.pub_command = node.create_publisher(command_type, cfg.command_topic, reliable)
        self.pub_trajectory = node.create_publisher(JointTrajectory, cfg.trajectory_topic, reliable)
        self.pub_gripper = (
            node.create_publisher(Float64MultiArray, cfg.gripper.topic, reliable)
            if cfg.gripper
            else None
        )
        self.ros.start()

    # ---- callbacks ----------------------------------------------------------------------
    def _on_joints(self, msg) -> None:
        received = now()
        names = msg.name
        if names != self._names:
            if any(j not in names for j in self._wanted):
                return  # another publisher's partial state: not ours
            self._names = list(names)
            self._index = {j: self._names.index(j) for j in self._wanted}
        pos = np.fromiter((msg.position[self._index[j]] for j in self._wanted), float)
        with self.joint_arrived:
            self.joints = Sample(from_stamp(msg.header.stamp), received, pos)
            self.joint_arrived.notify_all()

    def _on_image(self, name: str, msg) -> None:
        sample = Sample(from_stamp(msg.header.stamp), now(), msg)  # decoded when used
        with self.lock:
            self.images[name] = sample

    def _on_task(self, msg) -> None:
        sample = Sample(from_stamp(msg.header.stamp), now(), (list(msg.name), list(msg.position)))
        with self.joint_arrived:
            self.task = sample
            self.joint_arrived.notify_all()

    # ---- reading ------------------------------------------------------------------------
    def wait_joints(self, after: float, timeout: float) -> Sample | None:
        """The first joint state that arrived after wall time `after`, waiting at most
        `timeout` s; the freshest one (possibly older) if none comes in time."""
        deadline = time.monotonic() + timeout
        with self.joint_arrived:
            while self.joints is None or self.joints.received < after:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.joint_arrived.wait(left)
            return self.joints

    def wait_task(self, stamp: float, timeout: float) -> None:
        """Wait (briefly) for the task state of the same sim instant as a joint state: the sim
        node publishes both per chunk, joint states first."""
        deadline = time.monotonic() + timeout
        with self.joint_arrived:
            while self.task is None or self.task.stamp < stamp:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.joint_arrived.wait(left)

    def wait_for(self, what: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if what == "joints" and self.joints is not None:
                    return True
                if what == "task" and self.task is not None:
                    return True
                if what.startswith("images.") and self.images[what[7:]] is not None:
                    return True
            time.sleep(0.005)
        return False

    # ---- commands -----------------------------------------------------------------------
    def send_positions(self, q: np.ndarray, time_from_start: float) -> None:
        Float64MultiArray, JointTrajectory, JointTrajectoryPoint = self._msgs
        if self.cfg.control_mode == "trajectory":
            self.pub_command.publish(self._trajectory([time_from_start], q[None]))
        else:
            msg = Float64MultiArray()
            msg.data = q.tolist()
            self.pub_command.publish(msg)

    def send_trajectory(self, times: np.ndarray, points: np.ndarray) -> None:
        self.pub_trajectory.publish(self._trajectory(times, points))

    def _trajectory(self, times, points):
        _, JointTrajectory, JointTrajectoryPoint = self._msgs
        msg = JointTrajectory()  # stamp 0: start now
        msg.joint_names = list(self.cfg.joint_names)
        for t, q in zip(times, points):
            point = JointTrajectoryPoint()
            point.positions = [float(x) for x in q]
            to_stamp(float(t), point.time_from_start)
            msg.points.append(point)
        return msg

    def send_gripper(self, position: float) -> None:
        if self.pub_gripper is not None:
            msg = self._msgs[0]()
            msg.data = [float(position)]
            self.pub_gripper.publish(msg)

    def call_reset(self, seed: int | None, timeout: float = 10.0) -> None:
        """The sim's reset service (after setting its `seed` parameter when one is given)."""
        from rcl_interfaces.msg import Parameter, ParameterType
        from rcl_interfaces.srv import SetParameters
        from std_srvs.srv import Trigger

        sim = self.cfg.sim
        if seed is not None:
            request = SetParameters.Request()
            param = Parameter(name="seed")
            param.value.type, param.value.integer_value = ParameterType.PARAMETER_INTEGER, seed
            request.parameters = [param]
            self._call(SetParameters, f"/{sim.node_name}/set_parameters", request, timeout)
        response = self._call(Trigger, sim.reset_service, Trigger.Request(), timeout)
        if not response.success:
            raise RobotrlError(f"sim reset failed: {response.message}")

    def _call(self, srv_type, name: str, request, timeout: float):
        client = self.ros.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise RobotrlError(f"service {name} is not available: is the sim node running?")
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            if not done.wait(timeout):
                raise RobotrlError(f"service {name} did not answer within {timeout:.0f} s")
            return future.result()
        finally:
            self.ros.node.destroy_client(client)

    def close(self) -> None:
        self.ros.close()
