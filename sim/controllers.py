"""Action modes for MuJoCo arms: each maps one action to joint position servo targets.

All four write `data.ctrl` for the arm's position actuators (and the gripper's), so the
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

    def reset(self, data: mujoco.MjData) -> None:
        """Called at every episode start, after the arm is placed."""

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
    """Deltas add to the commanded target (so small steps are not lost to servo lag); the
    target may lead the measured position by at most `MAX_LEAD` so a blocked arm does not
    wind up."""

    mode = "joint_delta"
    MAX_LEAD = 0.2  # rad

    def reset(self, data):
        self._target = data.qpos[self.arm.qpos_adr].copy()

    def _action_spec(self):
        n, step = len(self.arm.actuator_ids), MAX_JOINT_SPEED * self.dt
        names = [f"joint{i + 1}.delta" for i in range(n)]
        return self._gripper(names, ["rad"] * n, [-step] * n, [step] * n)

    def joint_targets(self, arm_action, data):
        q = data.qpos[self.arm.qpos_adr]
        target = np.clip(self._target + arm_action, q - self.MAX_LEAD, q + self.MAX_LEAD)
        self._target = np.clip(target, self.arm.lower, self.arm.upper)
        return self._target


class EndEffectorDelta(Controller):
    """Delta pose of the end-effector site in the world frame: translation in metres and an
    axis-angle rotation in radians. Deltas add to a commanded target pose that may lead the
    measured pose by at most `MAX_LEAD_*` (no wind-up when blocked); each tick one damped
    least-squares step, with a null-space pull toward home, turns the pose error into joint
    targets."""

    mode = "ee_delta"
    MAX_LEAD_POS = 0.05  # m
    MAX_LEAD_ROT = 0.3  # rad

    def __init__(self, model, arm, control_hz):
        super().__init__(model, arm, control_hz)
        self._jac = np.zeros((6, model.nv))
        self._damping = IK_DAMPING**2 * np.eye(6)
        self._dofs = _as_slice(arm.dof_adr)
        self._qpos = _as_slice(arm.qpos_adr)

    def _action_spec(self):
        lin, ang = MAX_EE_SPEED * self.dt, MAX_EE_ANGULAR_SPEED * self.dt
        names = ["ee.dx", "ee.dy", "ee.dz", "ee.drx", "ee.dry", "ee.drz"]
        units = ["m"] * 3 + ["rad"] * 3
        return self._gripper(names, units, [-lin] * 3 + [-ang] * 3, [lin] * 3 + [ang] * 3)

    def reset(self, data):
        self._target_pos = data.site_xpos[self.arm.ee_site].copy()
        self._target_quat = np.empty(4)
        mujoco.mju_mat2Quat(self._target_quat, data.site_xmat[self.arm.ee_site])
        self._quat, self._step_quat, self._error = np.empty(4), np.empty(4), np.empty(6)

    def joint_targets(self, arm_action, data):
        # Quaternions through MuJoCo's C routines: this runs every control tick.
        site = self.arm.ee_site
        pos, error = data.site_xpos[site], self._error
        lead = self._target_pos + arm_action[:3] - pos
        if np.abs(lead).max() > self.MAX_LEAD_POS:
            lead = np.clip(lead, -self.MAX_LEAD_POS, self.MAX_LEAD_POS)
        self._target_pos = pos + lead
        error[:3] = lead
        quat, step = self._quat, self._step_quat
        if arm_action[3:].any():  # target <- exp(rotation) * target, a world-frame rotation
            step[:] = (1.0, 0.0, 0.0, 0.0)
            mujoco.mju_quatIntegrate(step, arm_action[3:], 1.0)
            mujoco.mju_mulQuat(quat, step, self._target_quat)
            self._target_quat[:] = quat
        mujoco.mju_mat2Quat(quat, data.site_xmat[site])
        mujoco.mju_negQuat(step, quat)
        mujoco.mju_mulQuat(quat, self._target_quat, step)  # target * current^-1
        mujoco.mju_quat2Vel(error[3:], quat, 1.0)
        angle = math.sqrt(error[3] ** 2 + error[4] ** 2 + error[5] ** 2)
        if angle > self.MAX_LEAD_ROT:  # pull the target back toward the measured orientation
            error[3:] *= self.MAX_LEAD_ROT / angle
            mujoco.mju_mat2Quat(quat, data.site_xmat[site])
            step[:] = (1.0, 0.0, 0.0, 0.0)
            mujoco.mju_quatIntegrate(step, error[3:], 1.0)
            mujoco.mju_mulQuat(self._target_quat, step, quat)
        return self.solve(error, data)

    def solve(self, pose_error: np.ndarray, data) -> np.ndarray:
        """Joint targets that move the end effector by `pose_error` (world frame)."""
        arm = self.arm
        mujoco.mj_jacSite(self.model, data, self._jac[:3], self._jac[3:], arm.ee_site)
        jac = self._jac[:, self._dofs]
        q = data.qpos[self._qpos]
        # dq = v + J+ (x - J v), with J+ the damped pseudo-inverse and v a pull toward home:
        # the same as J+ x + (I - J+ J) v (null-space posture) in one 6x6 solve.
        v = NULLSPACE_GAIN * self.dt * (arm.home - q)
        jjt = jac @ jac.T + self._damping
        return q + v + jac.T @ np.linalg.solve(jjt, pose_error - jac @ v)


class EndEffectorPosition(EndEffectorDelta):
    """An absolute end-effector position target (world frame, m) with a delta rotation (axis
    angle, rad, as in `ee_delta`). Absolute positions are what chunked policies learn best
    (Diffusion Policy's finding): an action does not depend on where the arm happened to lag,
    and a chunk whose early actions were dropped or repeated still ends where it should. The
    rotation stays a delta because a tool-down orientation's absolute rotation vector sits on
    the +-pi wrap. The target may lead the measured pose by at most `MAX_LEAD_POS`, as in
    `ee_delta`, which bounds the speed a far target asks for."""

    mode = "ee_pos"
    REACH_LOW, REACH_HIGH = (-1.5, -1.5, 0.0), (1.5, 1.5, 1.5)  # m: any tabletop arm's reach

    def _action_spec(self):
        ang = MAX_EE_ANGULAR_SPEED * self.dt
        names = ["ee.x", "ee.y", "ee.z", "ee.drx", "ee.dry", "ee.drz"]
        units = ["m"] * 3 + ["rad"] * 3
        low, high = [*self.REACH_LOW, -ang, -ang, -ang], [*self.REACH_HIGH, ang, ang, ang]
        return self._gripper(names, units, low, high)

    def joint_targets(self, arm_action, data):
        delta = arm_action.copy()
        delta[:3] -= self._target_pos  # the parent adds it back and bounds the lead
        return super().joint_targets(delta, data)


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are contiguous: numpy slices far faster than it gathers."""
    if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return slice(int(index[0]), int(index[0]) + len(index))
    return index


CONTROLLERS = {
    c.mode: c for c in (JointPosition, JointDelta, EndEffectorDelta, EndEffectorPosition)
}


def make_controller(mode: str, model, arm: ArmHandles, control_hz: float) -> Controller:
    if mode not in CONTROLLERS:
        raise UnknownNameError(f"unknown action mode '{mode}': choose {', '.join(CONTROLLERS)}")
    return CONTROLLERS[mode](model, arm, control_hz)


def rotation_from_vector(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (radians)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    quat, mat = np.empty(4), np.empty(9)
    mujoco.mju_axisAngle2Quat(quat, rotvec / angle, angle)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def axis_angle_between(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-frame rotation vector taking rotation matrix `current` to `target`."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).ravel())
    angle = 2 * math.atan2(np.linalg.norm(quat[1:]), quat[0])
    if angle > math.pi:
        angle -= 2 * math.pi
    axis = quat[1:] / (np.linalg.norm(quat[1:]) + 1e-12)
    return axis * angle
