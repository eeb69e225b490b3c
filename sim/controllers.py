"""Action modes for MuJoCo arms: each maps one action to joint position servo targets.

All three write `data.ctrl` for the arm's position actuators (and the gripper's), so the
physics between control ticks is the same whatever the mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from robotrl.env import ActionSpec
from robotrl.errors import UnknownNameError

MAX_EE_SPEED = 0.5  # m/s
MAX_EE_ANGULAR_SPEED = 2.0  # rad/s
MAX_JOINT_SPEED = 2.0  # rad/s
IK_DAMPING = 0.05
NULLSPACE_GAIN = 0.5


@dataclass
class ArmHandles:
    """Indices into the compiled model for one arm."""

    qpos_adr: np.ndarray
    dof_adr: np.ndarray
    actuator_ids: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    home: np.ndarray
    ee_site: int
    gripper_actuator: int | None
    gripper_range: tuple[float, float]


class Controller:
    mode: str

    def __init__(self, model: mujoco.MjModel, arm: ArmHandles, control_hz: float):
        self.model, self.arm, self.dt = model, arm, 1.0 / control_hz
        self.spec = self._action_spec()

    def _gripper(self, names, units, low, high):
        if self.arm.gripper_actuator is not None:
            names, units = (*names, "gripper"), (*units, "closed_fraction")
            low, high = (*low, 0.0), (*high, 1.0)
        return ActionSpec(self.mode, tuple(names), tuple(units), tuple(low), tuple(high))

    def apply(self, action: np.ndarray, data: mujoco.MjData) -> None:
        n = self.spec.dim - (self.arm.gripper_actuator is not None)
        target = self.joint_targets(action[:n], data)
        data.ctrl[self.arm.actuator_ids] = np.clip(target, self.arm.lower, self.arm.upper)
        if self.arm.gripper_actuator is not None:
            lo, hi = self.arm.gripper_range
            closed = min(max(float(action[n]), 0.0), 1.0)
            data.ctrl[self.arm.gripper_actuator] = hi - closed * (hi - lo)

    def joint_targets(self, arm_action: np.ndarray, data: mujoco.MjData) -> np.ndarray:
        raise NotImplementedError

    def _action_spec(self) -> ActionSpec:
        raise NotImplementedError


class JointPosition(Controller):
    mode = "joint_pos"

    def _action_spec(self):
        n = len(self.arm.actuator_ids)
        names = [f"joint{i + 1}.pos" for i in range(n)]
        return self._gripper(names, ["rad"] * n, self.arm.lower, self.arm.upper)

    def joint_targets(self, arm_action, data):
        return arm_action


class JointDelta(Controller):
    mode = "joint_delta"

    def _action_spec(self):
        n, step = len(self.arm.actuator_ids), MAX_JOINT_SPEED * self.dt
        names = [f"joint{i + 1}.delta" for i in range(n)]
        return self._gripper(names, ["rad"] * n, [-step] * n, [step] * n)

    def joint_targets(self, arm_action, data):
        return data.qpos[self.arm.qpos_adr] + arm_action


class EndEffectorDelta(Controller):
    """Delta pose of the end-effector site in the world frame: translation in metres and an
    axis-angle rotation in radians, solved by damped least squares with a null-space pull
    toward the home posture (one Jacobian solve per control tick)."""

    mode = "ee_delta"

    def __init__(self, model, arm, control_hz):
        super().__init__(model, arm, control_hz)
        self._jac = np.zeros((6, model.nv))

    def _action_spec(self):
        lin, ang = MAX_EE_SPEED * self.dt, MAX_EE_ANGULAR_SPEED * self.dt
        names = ["ee.dx", "ee.dy", "ee.dz", "ee.drx", "ee.dry", "ee.drz"]
        units = ["m"] * 3 + ["rad"] * 3
        return self._gripper(names, units, [-lin] * 3 + [-ang] * 3, [lin] * 3 + [ang] * 3)

    def joint_targets(self, arm_action, data):
        arm = self.arm
        mujoco.mj_jacSite(self.model, data, self._jac[:3], self._jac[3:], arm.ee_site)
        jac = self._jac[:, arm.dof_adr]
        q = data.qpos[arm.qpos_adr]
        jjt = jac @ jac.T + IK_DAMPING**2 * np.eye(6)
        dq = jac.T @ np.linalg.solve(jjt, arm_action)
        # Pull toward home in the Jacobian's null space so redundant arms do not drift.
        jac_pinv = jac.T @ np.linalg.inv(jjt)
        dq += (np.eye(len(q)) - jac_pinv @ jac) @ (NULLSPACE_GAIN * self.dt * (arm.home - q))
        return q + dq


CONTROLLERS = {c.mode: c for c in (JointPosition, JointDelta, EndEffectorDelta)}


def make_controller(mode: str, model, arm: ArmHandles, control_hz: float) -> Controller:
    if mode not in CONTROLLERS:
        raise UnknownNameError(f"unknown action mode '{mode}': choose {', '.join(CONTROLLERS)}")
    return CONTROLLERS[mode](model, arm, control_hz)


def axis_angle_between(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-frame rotation vector taking rotation matrix `current` to `target`."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).ravel())
    angle = 2 * math.atan2(np.linalg.norm(quat[1:]), quat[0])
    if angle > math.pi:
        angle -= 2 * math.pi
    axis = quat[1:] / (np.linalg.norm(quat[1:]) + 1e-12)
    return axis * angle
