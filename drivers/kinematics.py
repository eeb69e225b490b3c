"""The arm's kinematics for a ROS 2 arm: forward kinematics for the observation and the sim's
own action-mode controllers (`ee_delta`, `joint_delta`, `joint_pos`) for the commands.

It is the MuJoCo model of the arm (built from the manufacturer's DH table, mounted where the sim
mounts it) with no physics run: each tick the measured joint positions go in, `mj_kinematics`
runs, and the same controller code that drives the sim turns an action into joint position
targets. A policy trained in sim therefore sees the same state vector and its actions mean the
same thing on the real arm.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robotrl.env import ActionSpec
from robotrl.sim.arms import resolve_arm
from robotrl.sim.controllers import ArmHandles, make_controller
from robotrl.sim.scene import ARM_PREFIX, build_scene


class ArmKinematics:
    def __init__(
        self, arm: str, tool: str, action_mode: str, control_hz: float, home, has_gripper=True
    ):
        """`has_gripper=False`: the arm has no gripper to command (none fitted, or one this env does
        not drive), so the action has no gripper entry whatever tool the model carries."""
        model_spec = resolve_arm(arm, tool)
        self.arm_model = model_spec
        self.model = build_scene(model_spec, 0.002).compile()
        self.data = mujoco.MjData(self.model)
        m = self.model
        joints = [m.joint(ARM_PREFIX + j) for j in model_spec.joint_names]
        acts = [m.actuator(ARM_PREFIX + a).id for a in model_spec.actuator_names]
        gripper = None
        if model_spec.gripper_actuator and tool == "gripper" and has_gripper:
            gripper = m.actuator(ARM_PREFIX + model_spec.gripper_actuator).id
        self.handles = ArmHandles(
            qpos_adr=np.array([j.qposadr[0] for j in joints]),
            dof_adr=np.array([j.dofadr[0] for j in joints]),
            actuator_ids=np.array(acts),
            lower=np.array([j.range[0] for j in joints]),
            upper=np.array([j.range[1] for j in joints]),
            home=np.asarray(home, dtype=float),
            ee_site=m.site(ARM_PREFIX + model_spec.ee_site).id,
            gripper_actuator=gripper,
            gripper_range=tuple(m.actuator_ctrlrange[gripper]) if gripper is not None else (0, 0),
        )
        self.controller = make_controller(action_mode, m, self.handles, control_hz)
        self.n = len(joints)
        self._quat = np.empty(4)

    @property
    def action_spec(self) -> ActionSpec:
        return self.controller.spec

    def set_joints(self, q: np.ndarray) -> None:
        """Put the measured arm joint positions in and update the kinematics (and Jacobian)."""
        self.data.qpos[self.handles.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)  # mj_jacSite needs the com-based frames

    def ee_pose(self) -> np.ndarray:
        """End-effector site: x, y, z (m, sim world frame) and quaternion w, x, y, z."""
        site = self.handles.ee_site
        mujoco.mju_mat2Quat(self._quat, self.data.site_xmat[site])
        return np.concatenate([self.data.site_xpos[site], self._quat])

    def reset(self) -> None:
        """A new episode: the controller's targets start from the current (measured) pose."""
        self.controller.reset(self.data)

    def joint_targets(self, arm_action: np.ndarray) -> np.ndarray:
        """Joint position targets for `arm_action` from the pose last given to `set_joints`,
        clipped to the joint limits (as the sim's controllers do)."""
        target = self.controller.joint_targets(np.asarray(arm_action, float), self.data)
        return np.clip(target, self.handles.lower, self.handles.upper)
