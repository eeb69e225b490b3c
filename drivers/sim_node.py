"""The MuJoCo sim robot node: any task of `robotrl.tasks`, speaking exactly the ROS 2 interface
of a ros2_control arm, paced to the wall clock.

    python -m robotrl.drivers.sim_node --ros-args -p task:=Lift -p robot:=panda

Out: `/joint_states` (arm joints and fingers), `/clock` (sim time), per camera
`/robotrl/sim/<camera>/image_raw` (rgb8) and `.../camera_info`, and the task's privileged state
on `/robotrl/sim/task_state` (a `JointState` whose names are the task's environment_state names
then `reward` and `is_success`: named, stamped floats). In: `Float64MultiArray` on
`/forward_position_controller/commands`, `JointTrajectory` on
`/joint_trajectory_controller/joint_trajectory`, `Float64MultiArray` [finger position] on
`/gripper_controller/commands`. Service `/robotrl/sim/reset` (std_srvs/Trigger) re-runs the
task's reset with the `seed` parameter (then seed + 1 for the next).

Time: the sim clock is anchored to the wall clock at start and paced to it, so stamps are wall
times when the node keeps up and fall behind when it does not (an honest stale sensor).
With `expert:=true` the task's scripted expert is published as a teleop device (see
`teleop_node`): one action per arm command received, computed just before the next tick.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from robotrl.drivers.config import load_config
from robotrl.drivers.ros import RosNode, main_guard, node_params, now, to_stamp
from robotrl.drivers.trajectory import Trajectory

TELEOP_ACTION_TOPIC = "/robotrl/teleop/action"
TELEOP_INTERVENTION_TOPIC = "/robotrl/teleop/intervention"
COMMAND_ECHO_TOPIC = "/robotrl/sim/command_echo"  # stamp: when an arm command arrived


@dataclass
class SimNodeParams:
    task: str = "Lift"
    robot: str = "panda"
    config: str = ""  # robot config for topic names (default sim_<robot>)
    publish_rate: float = 250.0  # Hz: physics chunk, joint states, task state, /clock
    camera_rate: float = 30.0
    cameras: str = "front,wrist"  # comma-separated; empty for none
    image_size: int = 96
    seed: int = 0
    expert: bool = False  # publish the scripted expert as a teleop device
    action_mode: str = "ee_delta"  # the expert's action mode (the consumer's)


class SimRobot:
    def __init__(self, params: SimNodeParams, ros: RosNode):
        from rclpy.qos import QoSProfile
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from std_msgs.msg import Bool, Float64MultiArray, Header
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory

        from robotrl.tasks import make

        self.p, self.ros = params, ros
        self.cfg = cfg = load_config(params.config or f"sim_{params.robot}")
        cams = tuple(c for c in params.cameras.split(",") if c)
        self.env = make(
            params.task,
            robot=params.robot,
            obs_mode="state+pixels" if cams else "state",
            cameras=cams or ("front",),
            image_size=(params.image_size, params.image_size),
            action_mode=params.action_mode,
        )
        env, arm = self.env, self.env.arm
        self.model, self.data = env.model, env.data
        self.substeps = max(1, round(1.0 / (params.publish_rate * self.model.opt.timestep)))
        self.dt = self.substeps * self.model.opt.timestep
        self.n = len(arm.qpos_adr)
        self.finger_qadr = list(env._finger_qadr)  # measured finger joints, in /joint_states
        fingers = env.arm_model.gripper_joints if self.finger_qadr else ()
        self.names = [*cfg.joint_names, *fingers]
        m = self.model
        finger_dofs = [int(m.joint(f"robot/{j}").dofadr[0]) for j in fingers]
        self.qadr = np.array([*arm.qpos_adr, *self.finger_qadr])
        self.dadr = np.array([*arm.dof_adr, *finger_dofs])
        self.msgs = (JointState, Image, CameraInfo, Float64MultiArray, Bool, Clock, Header)

        node, qos = ros.node, QoSProfile(depth=10)
        self.pub_joints = node.create_publisher(JointState, cfg.state_topic, qos)
        self.pub_clock = node.create_publisher(Clock, "/clock", qos)
        self.pub_task = node.create_publisher(JointState, cfg.sim.task_state_topic, qos)
        self.cameras = []
        for cam_id, spec in zip(env.camera_names, env.robot.cameras):
            topic = next((c for c in cfg.cameras if c.name == spec.name), None)
            image = topic.image_topic if topic else f"/robotrl/sim/{spec.name}/image_raw"
            info = topic.info_topic if topic else f"/robotrl/sim/{spec.name}/camera_info"
            self.cameras.append(
                (
                    cam_id,
                    node.create_publisher(Image, image, qos),
                    node.create_publisher(CameraInfo, info, qos),
                    self._camera_info(cam_id, spec),
                )
            )
        self.pub_action = node.create_publisher(Float64MultiArray, TELEOP_ACTION_TOPIC, qos)
        self.pub_intervention = node.create_publisher(Bool, TELEOP_INTERVENTION_TOPIC, qos)
        self.pub_echo = node.create_publisher(Header, COMMAND_ECHO_TOPIC, qos)

        self.lock = threading.Lock()
        self.targets = arm.home.copy()
        self.gripper_target = arm.gripper_range[1]
        self.trajectory: Trajectory | None = None
        self.reset_request: threading.Event | None = None
        self.expert_due: float | None = None
        self.next_seed = params.seed
        self.commands_received = 0
        # Commands on the lean wait loop: their latency is the robot's reaction time.
        for topic in {cfg.command_topic, f"/{cfg.controller}/commands"}:
            ros.subscribe_fast(Float64MultiArray, topic, self._on_command, qos)
        for topic in {cfg.trajectory_topic, f"/{cfg.controller}/joint_trajectory"}:
            ros.subscribe_fast(JointTrajectory, topic, self._on_trajectory, qos)
        if cfg.gripper:
            ros.subscribe_fast(Float64MultiArray, cfg.gripper.topic, self._on_gripper, qos)
        node.create_service(Trigger, cfg.sim.reset_service, self._on_reset)
        node.add_on_set_parameters_callback(self._on_params)
        self.expert = env.make_expert() if params.expert else None
        self.time_offset = 0.0
        self._reset(params.seed)

    # ---- callbacks (spin thread) --------------------------------------------------------
    def _on_command(self, msg) -> None:
        received = now()
        if len(msg.data) != self.n:
            return  # ros2_control's forward controller drops wrong-sized commands too
        echo = self.msgs[6]()  # when each command arrived: `robotrl bench ros` reads it
        to_stamp(received, echo.stamp)
        echo.frame_id = str(self.commands_received + 1)
        self.pub_echo.publish(echo)
        with self.lock:
            self.targets = np.asarray(msg.data, float)
            self.trajectory = None
            self.commands_received += 1
            if self.expert is not None:  # just before the consumer's next tick
                lead = 2 * self.dt
                self.expert_due = time.monotonic() + max(self.cfg.control_hz**-1 - lead, 0.0)

    def _on_trajectory(self, msg) -> None:
        order = [list(msg.joint_names).index(j) for j in self.cfg.joint_names]
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        points = [np.asarray(p.positions, float)[order] for p in msg.points]
        with self.lock:
            self.trajectory = Trajectory(time.monotonic(), self.targets.copy(), times, points)

    def _on_gripper(self, msg) -> None:
        if len(msg.data) == 1:
            with self.lock:
                self.gripper_target = float(msg.data[0])

    def _on_params(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for p in params:
            if p.name == "seed":
                self.next_seed = int(p.value)
        return SetParametersResult(successful=True)

    def _on_reset(self, request, response):
        done = threading.Event()
        self.reset_request = done  # the sim thread owns MuJoCo: it resets and sets `done`
        response.success = done.wait(timeout=5.0)
        response.message = f"seed {self.next_seed - 1}" if response.success else "timed out"
        return response

    # ---- the sim thread -----------------------------------------------------------------
    def _reset(self, seed: int) -> None:
        self.time_offset += self.data.time  # mj_resetData zeroes the time; the clock goes on
        self.env.reset(seed=seed)
        self.next_seed = seed + 1
        with self.lock:
            self.targets = self.env.arm.home.copy()
            self.gripper_target = self.env.arm.gripper_range[1]
            self.trajectory = None
        if self.expert is not None:
            self.expert.reset()
            self.expert_due = time.monotonic()

    def run(self) -> None:
        # The sim clock is anchored to the wall clock (the first chunk ends one period on).
        wall0 = time.time() - self.sim_time
        next_tick = time.monotonic()
        camera_dt, next_camera = 1.0 / self.p.camera_rate, 0.0
        arm = self.env.arm
        while self.ros.context.ok():
            # Sleep first, then simulate up to now and publish: a sample is stamped with the
            # time it describes, never ahead of the wall clock.
            next_tick += self.dt
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:  # fell far behind (overload): catch the clock up, once
                wall0 -= delay
                next_tick = time.monotonic()
            if self.reset_request is not None:
                self._reset(self.next_seed)
                self.reset_request.set()
                self.reset_request = None
            with self.lock:
                if self.trajectory is not None:
                    self.targets = self.trajectory.sample(time.monotonic())
                targets, gripper = self.targets, self.gripper_target
            self.data.ctrl[arm.actuator_ids] = np.clip(targets, arm.lower, arm.upper)
            if arm.gripper_actuator is not None:
                lo, hi = arm.gripper_range
                self.data.ctrl[arm.gripper_actuator] = min(max(gripper, lo), hi)
            self._physics()
            stamp = wall0 + self.sim_time
            self._publish_state(stamp)
            if self.sim_time >= next_camera:
                # On the camera's own grid, so it keeps its rate whatever the physics chunk
                # (from the chunk that crossed it, 30 Hz over 4 ms chunks came out at 27.8 Hz).
                next_camera = max(next_camera + camera_dt, self.sim_time)
                self._publish_images(stamp)
            if self.expert_due is not None and time.monotonic() >= self.expert_due:
                self.expert_due = None
                self._publish_expert()

    @property
    def sim_time(self) -> float:
        return self.time_offset + self.data.time

    def _physics(self) -> None:
        import mujoco

        mujoco.mj_step(self.model, self.data, nstep=self.substeps)

    def _publish_state(self, stamp: float) -> None:
        JointState, _, _, _, _, Clock, _ = self.msgs
        d = self.data
        msg = JointState()
        to_stamp(stamp, msg.header.stamp)
        msg.name = self.names
        msg.position = d.qpos[self.qadr].tolist()
        msg.velocity = d.qvel[self.dadr].tolist()
        self.pub_joints.publish(msg)
        reward, success = self.env.task_evaluate()
        task = JointState()
        task.header.stamp = msg.header.stamp
        task.name = [*self.env.environment_state_names, "reward", "is_success"]
        task.position = [*map(float, self.env.task_environment_state()), reward, float(success)]
        self.pub_task.publish(task)
        clock = Clock()
        clock.clock = msg.header.stamp
        self.pub_clock.publish(clock)

    def _publish_images(self, stamp: float) -> None:
        _, Image, _, _, _, _, _ = self.msgs
        renderer = self.env._renderer  # the env's own renderer: images exactly as in sim
        for cam_id, pub_image, pub_info, info in self.cameras:
            renderer.update_scene(self.data, cam_id)
            pixels = renderer.render()
            msg = Image()
            to_stamp(stamp, msg.header.stamp)
            msg.header.frame_id = cam_id
            msg.height, msg.width = pixels.shape[:2]
            msg.encoding, msg.step = "rgb8", pixels.shape[1] * 3
            msg.data = pixels.tobytes()
            pub_image.publish(msg)
            info.header.stamp = msg.header.stamp
            pub_info.publish(info)

    def _publish_expert(self) -> None:
        _, _, _, Float64MultiArray, Bool, _, _ = self.msgs
        action = Float64MultiArray()
        action.data = np.asarray(self.expert.select_action(None), float).tolist()
        self.pub_action.publish(action)
        self.pub_intervention.publish(Bool(data=True))

    def _camera_info(self, cam_id: str, spec):
        """Pinhole intrinsics of a MuJoCo camera: square pixels, vertical field of view fovy."""
        import math

        _, _, CameraInfo, _, _, _, _ = self.msgs
        fovy = math.radians(float(self.model.camera(cam_id).fovy[0]))
        f = 0.5 * spec.height / math.tan(fovy / 2)
        info = CameraInfo()
        info.header.frame_id = cam_id
        info.height, info.width = spec.height, spec.width
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [f, 0.0, spec.width / 2, 0.0, f, spec.height / 2, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, spec.width / 2, 0.0, 0.0, f, spec.height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info


def main(argv: list[str] | None = None) -> int:
    def run():
        ros = RosNode("sim_robot", args=argv if argv is not None else sys.argv)
        try:
            params = node_params(ros.node, SimNodeParams())
            robot = SimRobot(params, ros)
            ros.start()
            print(
                f"sim_robot: {params.task} on {params.robot}, {1 / robot.dt:.0f} Hz, "
                f"cameras {params.cameras or 'none'}",
                file=sys.stderr,
                flush=True,
            )
            robot.run()
        finally:
            ros.close()

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
