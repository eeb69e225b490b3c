"""`RosEnv`: a ROS 2 arm (real, or the MuJoCo sim robot node) as a `RobotEnv`.

    env = make_ros_env("sim_panda", task="Lift")     # or "ur5e", "panda", a YAML path
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)

One `step`: turn the action into joint position targets (the sim's own controllers on the arm's
kinematic model, so `ee_delta` means here what it means in sim), send them, sleep to the next
control tick, wait for the first joint state after it (at most a few sensor periods), and return
the observation built from the freshest sample of each stream. `info["obs_age"]` holds each
stream's age in seconds, `info["observation_age"]` the largest.

Faults. A stream silent for `stale_periods - 1` control periods (and at least two of its own
periods) is stale: `info["stale"]` names it from the first step that returns after that, and a
step returns once a period, so a driver that dies is reported by a step that ends within
`stale_periods` control periods (default 2) of its last sample when it publishes at least twice
as fast as the control rate; a slower stream (a 30 Hz camera at 20 Hz) within two of its own
periods plus one control period (tests/test_ros_foreign.py measures it). Where the machine
cannot keep the period (500 Hz on a busy CPU) a larger `stale_periods` keeps scheduling
hiccups from holding the arm. While a stream is stale the action is withheld (`info["held"]`, the arm holds its last target as a
ros2_control controller does) and `info["waiting_for"]` says what for. When a driver stream
comes back, actions resume only after a handshake proves the driver receives them (a hold
command acknowledged: `command_link`); the first step that sends again reports the gap in
`info["command_gap"]` (steps withheld, actions that went out but were never acknowledged,
seconds). Nothing waits without a timeout, so a dead driver can never hang `step`.

An arm may have no gripper, or one on a driver of its own (`GripperConfig.state_topic`); joint
states are read by name, in any order, among joints that are not ours.
"""

from __future__ import annotations

import os
import time

import numpy as np

from robotrl.drivers.command_link import CommandGate
from robotrl.drivers.config import RobotConfig, load_config
from robotrl.drivers.connect import streams, wait_connected
from robotrl.drivers.kinematics import ArmKinematics
from robotrl.drivers.reward import make_reward
from robotrl.drivers.ros import import_rclpy, now
from robotrl.drivers.ros_io import RosIO, image_array
from robotrl.drivers.trajectory import Trajectory, home_trajectory
from robotrl.env import CameraSpec, RobotEnv, RobotSpec
from robotrl.errors import RobotrlError

EE_NAMES = ("ee.x", "ee.y", "ee.z", "ee.qw", "ee.qx", "ee.qy", "ee.qz")
DRIVER_STREAMS = ("joint_states", "gripper_state")  # a fault there may be a restarted driver


class RosEnv(RobotEnv):
    def __init__(
        self,
        config: RobotConfig,
        control_hz: float | None = None,
        action_mode: str | None = None,
        cameras: tuple[str, ...] | None = None,
        max_episode_steps: int | None = None,
        task: str | None = None,
        reward=None,
        stale_periods: float = 2.0,
        connect_timeout: float = 15.0,
    ):
        super().__init__(realtime=True)  # paces itself; recorders use wall-clock stamps
        import_rclpy()
        if task is not None:  # a sim task fixes the rate, the step limit and the tool
            from robotrl.tasks import task_class

            cls = task_class(task)
            control_hz = control_hz or cls.default_control_hz
            max_episode_steps = max_episode_steps or cls.max_episode_steps
            if cls.tool != config.tool:
                config = config.replace(tool=cls.tool, gripper=None)
        self.cfg = cfg = config
        self.task = task
        hz = float(control_hz or cfg.control_hz)
        if not (hz > 0 and np.isfinite(hz)):
            raise RobotrlError(f"control_hz must be a positive number of Hz, got {control_hz}")
        if not stale_periods >= 1:
            raise RobotrlError(f"stale_periods must be at least 1, got {stale_periods}")
        self.max_episode_steps = int(max_episode_steps or cfg.max_episode_steps)
        chosen = cfg.cameras if cameras is None else [c for c in cfg.cameras if c.name in cameras]
        if cameras is not None and len(chosen) != len(cameras):
            names = ", ".join(c.name for c in cfg.cameras) or "none"
            raise RobotrlError(f"config {cfg.name} has cameras {names}, asked for {cameras}")
        self.cameras = tuple(chosen)
        self.kin = ArmKinematics(
            cfg.kinematics,
            cfg.tool,
            action_mode or cfg.action_mode,
            hz,
            cfg.home,
            has_gripper=cfg.gripper is not None,
        )
        self.n = len(cfg.joint_names)
        if self.kin.n != self.n:
            raise RobotrlError(
                f"config {cfg.name} has {self.n} joints, its kinematics {cfg.kinematics} "
                f"has {self.kin.n}"
            )
        self._connect_timeout = connect_timeout
        self.io = RosIO(cfg, self.cameras, f"robotrl_env_{os.getpid()}_{id(self) % 10000}")
        try:
            wait_connected(self.io, cfg, self.cameras, connect_timeout)
            env_names = self._task_names()
        except BaseException:
            self.io.close()
            raise
        gripper = ["gripper.opening"] if cfg.gripper else []
        self.robot = RobotSpec(
            robot_type=cfg.robot_type,
            control_hz=hz,
            action=self.kin.action_spec,
            joint_names=cfg.joint_names,
            state_names=(*(f"{j}.pos" for j in cfg.joint_names), *gripper, *EE_NAMES),
            environment_state_names=env_names,
            cameras=tuple(CameraSpec(c.name, c.height, c.width) for c in self.cameras),
        )
        self._init_spaces()
        self.reward_source = make_reward(reward or ("sim" if cfg.sim else "keyboard"), self.io)
        self.lower, self.upper = np.array(cfg.joint_lower), np.array(cfg.joint_upper)
        # How long each stream may stay silent: `stale_periods - 1` control periods, so the
        # step that reports it returns within `stale_periods` periods of its last sample, and
        # never less than two of its own periods (a 30 Hz camera is not stale after 20 ms).
        dt = 1.0 / hz
        rates = {"joint_states": cfg.state_rate, "environment_state": cfg.state_rate}
        if cfg.gripper:
            rates["gripper_state"] = cfg.gripper.state_rate
        rates.update({f"images.{c.name}": c.rate for c in self.cameras})
        self.timeouts = {
            s: max((stale_periods - 1) * dt, 2.0 / rates[s]) for s in streams(cfg, self.cameras)
        }
        self._wait_budget = min(0.5 * dt, 3.0 / cfg.state_rate + 0.002)
        self._gate = CommandGate(self.io.link, self._probe, DRIVER_STREAMS)
        self._steps = 0
        self._obs: dict | None = None
        self._q: np.ndarray | None = None

    # ---- connection ---------------------------------------------------------------------
    def _task_names(self) -> tuple[str, ...]:
        """The sim's task state names the environment state (none on a real arm)."""
        if not self.cfg.sim:
            return ()
        names = tuple(self.io.task.value[0][:-2])
        if self.task is not None:
            from robotrl.tasks import task_class

            expected = task_class(self.task).environment_state_names
            if names != expected:
                raise RobotrlError(
                    f"the sim node runs another task (environment state {names}), not {self.task}"
                )
        return names

    def _handshake(self) -> None:
        """Commands flow only once the driver is known to receive them."""
        waiting = self._gate.connect(self._stale_streams, self._connect_timeout)
        if waiting:
            raise RobotrlError(
                f"the driver does not take commands: still waiting for {', '.join(waiting)} "
                f"after {self._connect_timeout:g} s"
            )

    def _probe(self) -> None:
        """A hold command (the measured position) that proves the link when acknowledged."""
        self.io.send_positions(self._latest_q(), self.robot.ctrl_dt)
        if self.cfg.gripper and self.io.gripper is not None:
            self.io.send_gripper(self.io.gripper.value)

    # ---- RobotEnv -----------------------------------------------------------------------
    def step(self, action):
        return self._step(self.check_action(action))  # paces itself inside `_step`

    def _reset(self, seed, options):
        self._handshake()
        self._drive_home()
        if self.cfg.sim:
            self.io.call_reset(seed)
        # The first joint state after the reset is the episode's start, and the cameras'
        # first frames are of that instant or later: a frame from before the reset shows the
        # last episode's scene, and a policy's first chunk would be planned on it.
        deadline = time.monotonic() + 2.0
        while True:
            start = self.io.wait_joints(now(), timeout=0.2)
            late: tuple[str, ...] = ("joint_states",)
            if start is not None:
                left = max(0.0, deadline - time.monotonic())
                behind = self.io.wait_images(start.stamp, left)
                obs, info = self._observe()
                late = info["stale"] or tuple(f"images.{name}" for name in behind)
                if not late:
                    break
            if time.monotonic() > deadline:
                raise RobotrlError(f"reset: no fresh data from {', '.join(late)}")
        self.kin.set_joints(self._q)
        self.kin.reset()
        self.reward_source.reset()
        self._steps, self._next_tick = 0, time.monotonic()
        self._send_gripper(0.0)  # episodes start open, as in sim
        return obs, {"is_success": False, "held": False, "waiting_for": (), **info}

    def _step(self, action):
        waiting = self._gate.update(self._stale_streams())
        gap = None
        if not waiting:
            resuming = self._gate.resuming
            self.kin.set_joints(self._latest_q())
            if resuming:  # the arm may have moved (or restarted): targets from where it is
                self.kin.reset()
            q = np.clip(
                self.kin.joint_targets(action[: self.robot.action.arm_dim]), self.lower, self.upper
            )
            self.io.send_positions(q, self.robot.ctrl_dt)
            if self.robot.has_gripper:
                self._send_gripper(float(action[-1]))
            gap = self._gate.sent_action()
        self._wait_tick()
        if now() - self.io.joints.stamp < self.timeouts["joint_states"]:
            self.io.wait_joints(now() - 1e-4, self._wait_budget)  # else silent too long already
        obs, info = self._observe()
        self._steps += 1
        reward, success, failure = self.reward_source.read(obs)
        info["is_success"] = success
        info["held"] = bool(waiting)
        info["waiting_for"] = waiting
        if gap is not None:
            info["command_gap"] = gap
        truncated = self._steps >= self.max_episode_steps
        return obs, reward, bool(success or failure), truncated, info

    def close(self):
        if getattr(self, "io", None) is not None:
            if getattr(self, "reward_source", None) is not None:
                self.reward_source.close()
            self.io.close()
            self.io = None

    # ---- internals ----------------------------------------------------------------------
    def _wait_tick(self) -> None:
        dt = self.robot.ctrl_dt
        t = time.monotonic()
        if self._next_tick is None or t - self._next_tick > dt:
            self._next_tick = t  # first step, or fell a whole period behind: re-anchor
        self._next_tick += dt
        delay = self._next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _latest_q(self) -> np.ndarray:
        return self.io.joints.value

    def _send_gripper(self, closed: float) -> None:
        g = self.cfg.gripper
        if g is not None:
            closed = min(max(closed, 0.0), 1.0)
            self.io.send_gripper(g.open + closed * (g.closed - g.open))

    def _stale_streams(self) -> tuple[str, ...]:
        t = now()
        io = self.io
        samples = {
            "joint_states": io.joints,
            "gripper_state": io.gripper,
            "environment_state": io.task,
        }
        samples.update({f"images.{c.name}": io.images[c.name] for c in self.cameras})
        return tuple(
            k
            for k, limit in self.timeouts.items()
            if samples[k] is None or t - samples[k].stamp >= limit
        )

    def _observe(self) -> tuple[dict, dict]:
        io = self.io
        if self.robot.environment_state_names and io.joints is not None:
            io.wait_task(io.joints.stamp, timeout=self._wait_budget)  # the same sim instant
        t = now()
        with io.lock:
            joints, gripper, task = io.joints, io.gripper, io.task
            images = {name: io.images[name] for name in io.images}
        self._q = joints.value
        self.kin.set_joints(self._q)
        parts = [self._q]
        if self.cfg.gripper:
            g = self.cfg.gripper
            parts.append([(gripper.value - g.closed) / (g.open - g.closed)])
        parts.append(self.kin.ee_pose())
        obs = {"state": np.concatenate(parts).astype(np.float32)}
        ages = {"joint_states": t - joints.stamp}
        if "gripper_state" in self.timeouts:
            ages["gripper_state"] = t - gripper.stamp
        if self.robot.environment_state_names:
            obs["environment_state"] = np.asarray(task.value[1][:-2], np.float32)
            ages["environment_state"] = t - task.stamp
        for cam in self.cameras:
            sample = images[cam.name]
            obs[f"images.{cam.name}"] = _fit(image_array(sample.value), cam.height, cam.width)
            ages[f"images.{cam.name}"] = t - sample.stamp
        stale = tuple(k for k, age in ages.items() if age >= self.timeouts[k])
        info = {
            "obs_age": ages,
            "observation_age": max(ages.values()),
            "obs_stamp": joints.stamp,
            "stale": stale,
        }
        self._obs = obs
        return obs, info

    def _drive_home(self) -> None:
        """Drive to the home pose along a speed-limited trajectory and wait until there."""
        cfg = self.cfg
        sample = self.io.wait_joints(now(), timeout=1.0)
        if sample is None or now() - sample.received > 1.0:
            raise RobotrlError(f"reset: no joint states on {cfg.state_topic} for a second")
        home = np.array(cfg.home)
        q = self._latest_q()
        if np.abs(q - home).max() <= cfg.reset_tolerance:
            return
        max_velocity = np.array(cfg.max_joint_velocity)
        max_velocity = np.minimum(max_velocity, cfg.reset_velocity)
        times, points = home_trajectory(q, home, max_velocity, rate=10.0)
        deadline = time.monotonic() + times[-1] + cfg.reset_timeout
        if cfg.control_mode == "trajectory":
            self.io.send_trajectory(times, points)
        else:
            # Stream the trajectory through the position controller the episode uses: a
            # ros2_control arm cannot run it and a trajectory controller at once.
            trajectory = Trajectory(time.monotonic(), q, times, points)
            end = trajectory.start + trajectory.duration
            while time.monotonic() < end + self.robot.ctrl_dt:
                self.io.send_positions(trajectory.sample(time.monotonic()), self.robot.ctrl_dt)
                time.sleep(self.robot.ctrl_dt)
        while np.abs(self._latest_q() - home).max() > cfg.reset_tolerance:
            if time.monotonic() > deadline:
                raise RobotrlError(
                    f"reset: the arm did not reach home within {times[-1] + cfg.reset_timeout:.0f} s"
                )
            time.sleep(0.01)


def _fit(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a camera image to the observation size (bilinear), if it is not that size."""
    if img.shape[:2] == (height, width):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def make_ros_env(config: str, **kwargs) -> RosEnv:
    """A `RosEnv` for a shipped config name (`sim_panda`, `ur5e`, ...) or a YAML path."""
    return RosEnv(load_config(config), **kwargs)
