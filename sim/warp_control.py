"""The action modes of `sim/controllers.py` for N worlds at once, in torch on the worlds'
device: the same damped least-squares step with a null-space pull, the same bounded target
lead, the same gripper mapping. Quaternions follow MuJoCo's C routines (`mju_mat2Quat`,
`mju_quat2Vel`, ...) so world 0 matches the CPU env to float32 rounding.

The site Jacobian is built from the arm's hinge axes and anchors (`xaxis`, `xanchor`): for a
serial arm whose end-effector site hangs below every arm joint this is what `mj_jacSite`
returns for those columns.
"""

from __future__ import annotations

import math

import torch

from robotrl.errors import UnknownNameError
from robotrl.sim.controllers import (
    IK_DAMPING,
    NULLSPACE_GAIN,
    EndEffectorDelta,
    JointDelta,
)


# ---- quaternions (w, x, y, z), batched -------------------------------------------------
def mat2quat(mat: torch.Tensor) -> torch.Tensor:
    """`mju_mat2Quat` for `[..., 3, 3]`: the same branch choice, so the same sign."""
    m = mat.reshape(*mat.shape[:-2], 9)
    m0, m1, m2, m3, m4, m5, m6, m7, m8 = m.unbind(-1)
    trace = m0 + m4 + m8
    cases = []
    w = 0.5 * torch.sqrt((1 + trace).clamp(min=1e-12))
    cases.append(
        torch.stack([w, 0.25 * (m7 - m5) / w, 0.25 * (m2 - m6) / w, 0.25 * (m3 - m1) / w], -1)
    )
    x = 0.5 * torch.sqrt((1 + m0 - m4 - m8).clamp(min=1e-12))
    cases.append(
        torch.stack([0.25 * (m7 - m5) / x, x, 0.25 * (m1 + m3) / x, 0.25 * (m2 + m6) / x], -1)
    )
    y = 0.5 * torch.sqrt((1 - m0 + m4 - m8).clamp(min=1e-12))
    cases.append(
        torch.stack([0.25 * (m2 - m6) / y, 0.25 * (m1 + m3) / y, y, 0.25 * (m5 + m7) / y], -1)
    )
    z = 0.5 * torch.sqrt((1 - m0 - m4 + m8).clamp(min=1e-12))
    cases.append(
        torch.stack([0.25 * (m3 - m1) / z, 0.25 * (m2 + m6) / z, 0.25 * (m5 + m7) / z, z], -1)
    )
    pick = torch.where(
        trace > 0, 0, torch.where((m0 > m4) & (m0 > m8), 1, torch.where(m4 > m8, 2, 3))
    )
    q = torch.stack(cases, -2).gather(-2, pick[..., None, None].expand(*pick.shape, 1, 4))[
        ..., 0, :
    ]
    return q / q.norm(dim=-1, keepdim=True)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    return q * torch.tensor([1.0, -1.0, -1.0, -1.0], device=q.device, dtype=q.dtype)


def rotvec2quat(v: torch.Tensor) -> torch.Tensor:
    """`mju_quatIntegrate(identity, v, 1)`: the rotation by axis-angle `v`."""
    angle = v.norm(dim=-1, keepdim=True)
    axis = torch.where(angle > 1e-15, v / angle.clamp(min=1e-15), torch.zeros_like(v))
    axis[..., 0] = torch.where(angle[..., 0] > 1e-15, axis[..., 0], 1.0)
    return torch.cat([torch.cos(angle / 2), axis * torch.sin(angle / 2)], -1)


def quat2vel(q: torch.Tensor) -> torch.Tensor:
    """`mju_quat2Vel(q, 1)`: the rotation vector of `q`, angle wrapped to (-pi, pi]."""
    v = q[..., 1:]
    sin_half = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[..., :1])
    angle = torch.where(angle > math.pi, angle - 2 * math.pi, angle)
    return v / sin_half.clamp(min=1e-15) * angle


# ---- controllers ----------------------------------------------------------------------
class BatchedController:
    """Writes the arm's and gripper's servo targets into `ctrl [N, nu]` from `actions [N, A]`.
    `world` is the backend's view of the worlds: `qpos`, `ctrl`, `site_xpos`, `site_xmat`,
    `xaxis`, `xanchor` tensors and the arm's indices (`sim.warp_env.WorldViews`)."""

    def __init__(self, world, arm, spec, dt: float):
        self.w, self.spec, self.dt = world, spec, dt
        dev = world.qpos.device
        self.qpos_adr = torch.as_tensor(arm.qpos_adr, device=dev)
        self.actuators = torch.as_tensor(arm.actuator_ids, device=dev)
        self.lower = torch.as_tensor(arm.lower, dtype=torch.float32, device=dev)
        self.upper = torch.as_tensor(arm.upper, dtype=torch.float32, device=dev)
        self.home = torch.as_tensor(arm.home, dtype=torch.float32, device=dev)
        self.gripper = arm.gripper_actuator
        self.gripper_range = arm.gripper_range
        self.n_arm = spec.dim - (self.gripper is not None)

    def reset(self, mask: torch.Tensor) -> None:
        """At episode start (after the arm is placed) for the worlds in `mask`."""

    def apply(self, actions: torch.Tensor) -> None:
        target = self.joint_targets(actions[:, : self.n_arm])
        self.w.ctrl[:, self.actuators] = torch.minimum(
            torch.maximum(target, self.lower), self.upper
        )
        if self.gripper is not None:
            lo, hi = self.gripper_range
            self.w.ctrl[:, self.gripper] = hi - actions[:, self.n_arm].clamp(0, 1) * (hi - lo)

    def joint_targets(self, arm_action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BatchedJointPosition(BatchedController):
    def joint_targets(self, arm_action):
        return arm_action


class BatchedJointDelta(BatchedController):
    def __init__(self, world, arm, spec, dt):
        super().__init__(world, arm, spec, dt)
        self.target = self.w.qpos[:, self.qpos_adr].clone()

    def reset(self, mask):
        self.target[mask] = self.w.qpos[mask][:, self.qpos_adr]

    def joint_targets(self, arm_action):
        q = self.w.qpos[:, self.qpos_adr]
        lead = JointDelta.MAX_LEAD
        target = torch.minimum(torch.maximum(self.target + arm_action, q - lead), q + lead)
        self.target = torch.minimum(torch.maximum(target, self.lower), self.upper)
        return self.target


class BatchedEndEffectorDelta(BatchedController):
    def __init__(self, world, arm, spec, dt):
        super().__init__(world, arm, spec, dt)
        self.site = arm.ee_site
        self.joints = torch.as_tensor(world.arm_joint_ids, device=self.home.device)
        n, dev = len(self.qpos_adr), self.home.device
        self.target_pos = torch.zeros(world.qpos.shape[0], 3, device=dev)
        self.target_quat = torch.zeros(world.qpos.shape[0], 4, device=dev)
        self.damping = IK_DAMPING**2 * torch.eye(6, device=dev)
        self.n = n

    def reset(self, mask):
        self.target_pos[mask] = self.w.site_xpos[mask, self.site]
        self.target_quat[mask] = mat2quat(self.w.site_xmat[mask, self.site])

    def joint_targets(self, arm_action):
        pos = self.w.site_xpos[:, self.site]
        lead = (self.target_pos + arm_action[:, :3] - pos).clamp(
            -EndEffectorDelta.MAX_LEAD_POS, EndEffectorDelta.MAX_LEAD_POS
        )
        self.target_pos = pos + lead
        turning = (arm_action[:, 3:] != 0).any(1, keepdim=True)
        turned = quat_mul(rotvec2quat(arm_action[:, 3:]), self.target_quat)
        self.target_quat = torch.where(turning, turned, self.target_quat)
        current = mat2quat(self.w.site_xmat[:, self.site])
        rot_error = quat2vel(quat_mul(self.target_quat, quat_conj(current)))
        angle = rot_error.norm(dim=1, keepdim=True)
        too_far = angle > EndEffectorDelta.MAX_LEAD_ROT  # pull the target back toward now
        rot_error = torch.where(
            too_far, rot_error * EndEffectorDelta.MAX_LEAD_ROT / angle, rot_error
        )
        pulled = quat_mul(rotvec2quat(rot_error), current)
        self.target_quat = torch.where(too_far, pulled, self.target_quat)
        return self.solve(torch.cat([lead, rot_error], 1))

    def jacobian(self) -> torch.Tensor:
        """`[N, 6, n]`: the end-effector site's linear and angular Jacobian over the arm."""
        axis = self.w.xaxis[:, self.joints]  # [N, n, 3]
        arm = self.w.site_xpos[:, self.site][:, None] - self.w.xanchor[:, self.joints]
        return torch.cat([torch.cross(axis, arm, dim=-1), axis], -1).transpose(1, 2)

    def solve(self, pose_error: torch.Tensor) -> torch.Tensor:
        """Joint targets that move the end effector by `pose_error` (as `EndEffectorDelta`)."""
        jac = self.jacobian()
        q = self.w.qpos[:, self.qpos_adr]
        v = NULLSPACE_GAIN * self.dt * (self.home - q)
        jjt = jac @ jac.transpose(1, 2) + self.damping
        rhs = pose_error - (jac @ v[:, :, None])[..., 0]
        return q + v + (jac.transpose(1, 2) @ torch.linalg.solve(jjt, rhs[:, :, None]))[..., 0]


class BatchedEndEffectorPosition(BatchedEndEffectorDelta):
    def joint_targets(self, arm_action):
        delta = arm_action.clone()
        delta[:, :3] -= self.target_pos  # the parent adds it back and bounds the lead
        return super().joint_targets(delta)


BATCHED_CONTROLLERS = {
    "joint_pos": BatchedJointPosition,
    "joint_delta": BatchedJointDelta,
    "ee_delta": BatchedEndEffectorDelta,
    "ee_pos": BatchedEndEffectorPosition,
}


def make_batched_controller(world, arm, spec, dt: float) -> BatchedController:
    if spec.mode not in BATCHED_CONTROLLERS:
        raise UnknownNameError(
            f"unknown action mode '{spec.mode}': choose {', '.join(BATCHED_CONTROLLERS)}"
        )
    return BATCHED_CONTROLLERS[spec.mode](world, arm, spec, dt)
