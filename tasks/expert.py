"""Shared machinery for scripted experts: Cartesian motion in any action mode."""

from __future__ import annotations

import math

import numpy as np

from robotrl.sim.controllers import EndEffectorDelta, axis_angle_between
from robotrl.sim.mujoco_env import MujocoEnv


def yaw_rotation(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Expert:
    """Base for scripted experts. Subclasses implement `plan()` returning an end-effector
    target (position, rotation matrix, gripper closed fraction); this class turns it into a
    bounded action in whatever action mode the env uses."""

    gain = 0.5  # fraction of the remaining pose error commanded per control tick

    def __init__(self, env):
        self.env: MujocoEnv = env.unwrapped
        self._ik = EndEffectorDelta(self.env.model, self.env.arm, self.env.robot.control_hz)
        self.reset()

    def reset(self) -> None:
        self.home_rot = None
        self.phase = 0
        self.timer = 0

    def select_action(self, obs=None) -> np.ndarray:
        if self.home_rot is None:
            self.home_rot = self.env.ee_pose()[1]
        target_pos, target_rot, gripper = self.plan()
        return self.move_to(target_pos, target_rot, gripper)

    def plan(self) -> tuple[np.ndarray, np.ndarray, float]:
        raise NotImplementedError

    def top_down(self, yaw: float) -> np.ndarray:
        """The home (tool-down) orientation turned by `yaw` about world z."""
        return yaw_rotation(yaw) @ self.home_rot

    def move_to(self, pos, rot, gripper: float) -> np.ndarray:
        env = self.env
        spec = env.robot.action
        ee_pos, ee_rot = env.ee_pose()
        # A position target has no integrator in the controller to make up for a partial
        # step, so ee_pos asks for all of it.
        pos_gain = 1.0 if spec.mode == "ee_pos" else self.gain
        delta = np.concatenate(
            [(pos - ee_pos) * pos_gain, axis_angle_between(ee_rot, rot) * self.gain]
        )
        # Scale the whole twist so its direction is kept when a speed limit binds.
        lin_max, ang_max = self._ik.spec.high[0], self._ik.spec.high[3]
        delta /= max(1.0, np.abs(delta[:3]).max() / lin_max, np.abs(delta[3:]).max() / ang_max)
        if spec.mode == "ee_delta":
            arm = delta
        elif spec.mode == "ee_pos":
            arm = np.concatenate([ee_pos + delta[:3], delta[3:]])
        else:
            arm = self._joint_action(delta)
        if env.arm.gripper_actuator is None:
            return arm.astype(np.float32)
        return np.append(arm, gripper).astype(np.float32)

    def _joint_action(self, ee_delta: np.ndarray) -> np.ndarray:
        """Express an end-effector delta in joint space (for joint_pos / joint_delta modes)."""
        env = self.env
        target = self._ik.solve(ee_delta, env.data)
        if env.robot.action.mode == "joint_pos":
            return target
        spec = env.robot.action
        n = len(env.arm.qpos_adr)
        return np.clip(target - env.data.qpos[env.arm.qpos_adr], spec.low[:n], spec.high[:n])
