"""The ROS 2 side of `RosEnv`: subscriptions that keep the freshest message of each stream,
the command link (`command_link.CommandLink`: the arm's and gripper's publishers), and the
sim's reset service.

Joint states are matched by name: our joints may come in any order, among joints that are not
ours, and a gripper on a driver of its own comes on that driver's topic.

Callbacks run on the node's spin thread and only store (stamp, arrival time, payload) under a
lock; `RosEnv` reads snapshots. A condition variable wakes a waiter the moment a sample arrives
(a joint state, the sim's task state, a camera frame), so a tick returns the sample that
follows it without polling.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from robotrl.drivers.command_link import CommandLink
from robotrl.drivers.config import RobotConfig
from robotrl.drivers.ros import RosNode, from_stamp, now
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
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState

        self.cfg = cfg
        self.ros = RosNode(node_name)
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)  # notified on every stored sample
        self.joints: Sample | None = None  # the arm's joints, in config order
        self.gripper: Sample | None = None  # the gripper joint's position
        self.task: Sample | None = None
        self.images: dict[str, Sample | None] = {c.name: None for c in cameras}
        # What each joint-state topic carried, for errors that name what is missing:
        # topic -> [every joint name seen on it, messages seen]
        self.seen: dict[str, list] = {}
        g = cfg.gripper
        own = g is not None and g.own_driver
        self.joint_topics = {  # topic -> [(wanted joints, store as)]
            cfg.state_topic: [([*cfg.joint_names, *([g.joint] if g and not own else [])], "arm")]
        }
        if own:
            self.joint_topics.setdefault(g.state_topic, []).append(([g.joint], "gripper"))
        self._order: dict[tuple, dict[str, list[int]]] = {}  # names -> where ours are

        # Best effort subscribers match publishers of either reliability; depth 1: freshest.
        sensor = qos_profile_sensor_data
        ros = self.ros
        for topic in self.joint_topics:
            ros.subscribe_fast(JointState, topic, lambda m, t=topic: self._on_joints(t, m), sensor)
        for cam in cameras:
            ros.subscribe_fast(
                Image, cam.image_topic, lambda m, n=cam.name: self._on_image(n, m), sensor
            )
        if cfg.sim:
            ros.subscribe_fast(JointState, cfg.sim.task_state_topic, self._on_task, sensor)
        self.link = CommandLink(cfg, node_name + "_cmd")
        self.ros.start()

    # ---- callbacks ----------------------------------------------------------------------
    def _on_joints(self, topic: str, msg) -> None:
        received = now()
        names = tuple(msg.name)
        order = self._order.get((topic, names))
        if order is None:  # a new layout: where our joints are (joint order is by name)
            index = {j: i for i, j in enumerate(names)}
            order = {
                kind: [index[j] for j in wanted]
                for wanted, kind in self.joint_topics[topic]
                if all(j in index for j in wanted)
            }
            if len(self._order) < 64:  # a publisher that renames every message is not cached
                self._order[topic, names] = order
            self.seen.setdefault(topic, [set(), 0])[0].update(names)
        self.seen.setdefault(topic, [set(names), 0])[1] += 1
        if not order or len(msg.position) != len(names):
            return  # another publisher's partial state, not ours at all, or malformed
        stamp, position = from_stamp(msg.header.stamp), msg.position
        with self.arrived:
            for kind, where in order.items():
                pos = np.fromiter((position[i] for i in where), float, len(where))
                if kind == "arm":
                    n = len(self.cfg.joint_names)
                    self.joints = Sample(stamp, received, pos[:n])
                    if len(pos) > n:
                        self.gripper = Sample(stamp, received, float(pos[n]))
                else:
                    self.gripper = Sample(stamp, received, float(pos[0]))
            self.arrived.notify_all()

    def _on_image(self, name: str, msg) -> None:
        sample = Sample(from_stamp(msg.header.stamp), now(), msg)  # decoded when used
        with self.arrived:
            self.images[name] = sample
            self.arrived.notify_all()

    def _on_task(self, msg) -> None:
        sample = Sample(from_stamp(msg.header.stamp), now(), (list(msg.name), list(msg.position)))
        with self.arrived:
            self.task = sample
            self.arrived.notify_all()

    # ---- reading ------------------------------------------------------------------------
    def wait_joints(self, after: float, timeout: float) -> Sample | None:
        """The first joint state that arrived after wall time `after`, waiting at most
        `timeout` s; the freshest one (possibly older) if none comes in time."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while self.joints is None or self.joints.received < after:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
            return self.joints

    def wait_task(self, stamp: float, timeout: float) -> None:
        """Wait (briefly) for the task state of the same sim instant as a joint state: the sim
        node publishes both per chunk, joint states first."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while self.task is None or self.task.stamp < stamp:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.arrived.wait(left)

    def wait_images(self, stamp: float, timeout: float) -> tuple[str, ...]:
        """Wait until every camera's newest frame was captured at `stamp` or later, at most
        `timeout` s; returns the cameras still behind (empty when all caught up)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while behind := tuple(
                name for name, s in self.images.items() if s is None or s.stamp < stamp
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
            return behind

    def have(self, stream: str) -> bool:
        """Whether a first sample of `stream` (joint_states, gripper_state, environment_state,
        images.<camera>) has arrived."""
        with self.lock:
            if stream.startswith("images."):
                return self.images[stream[7:]] is not None
            sample = {
                "joint_states": self.joints,
                "gripper_state": self.gripper,
                "environment_state": self.task,
            }[stream]
            return sample is not None

    def graph(self, msg_type: str) -> list[str]:
        """Topics of the ROS graph carrying `msg_type` (e.g. `sensor_msgs/msg/JointState`)
        that someone publishes, for errors that say what is there instead."""
        node = self.ros.node
        return sorted(
            name
            for name, types in node.get_topic_names_and_types()
            if msg_type in types and node.count_publishers(name) > 0
        )

    def subscribed(self, msg_types: tuple[str, ...]) -> list[str]:
        """Topics of these types that someone subscribes to (not counting ourselves)."""
        node = self.ros.node
        ours = {self.ros.node.get_name(), self.ros.node.get_name() + "_fast", self.link.node_name}
        found = []
        for name, types in node.get_topic_names_and_types():
            if not set(types) & set(msg_types):
                continue
            subs = node.get_subscriptions_info_by_topic(name)
            if any(info.node_name not in ours for info in subs):
                found.append(name)
        return sorted(found)

    # ---- commands -----------------------------------------------------------------------
    def send_positions(self, q: np.ndarray, time_from_start: float) -> None:
        self.link.send_positions(q, time_from_start)

    def send_trajectory(self, times: np.ndarray, points: np.ndarray) -> None:
        self.link.send_trajectory(times, points)

    def send_gripper(self, position: float) -> None:
        self.link.send_gripper(position)

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
        self.link.close()
        self.ros.close()
