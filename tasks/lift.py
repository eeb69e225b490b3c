"""Lift: pick a cube up from the table (robosuite's Lift, with a wider reset distribution)."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robotrl.sim.mujoco_env import MujocoEnv
from robotrl.tasks.expert import Expert

CUBE_HALF = 0.02  # m
CUBE_RANGE = 0.1  # m, half-width of the square the cube is placed in
LIFT_HEIGHT = 0.06  # m above its resting height counts as lifted


def cube_pose(rng: np.random.Generator, scale: float = 1.0) -> list[float]:
    """The reset distribution: the cube flat on the table, anywhere in the square, any yaw."""
    half = CUBE_RANGE * scale
    x, y = rng.uniform(-half, half, 2)
    yaw = rng.uniform(-math.pi, math.pi)
    return [x, y, CUBE_HALF, math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]


class LiftEnv(MujocoEnv):
    default_control_hz = 20.0
    max_episode_steps = 120
    environment_state_names = (
        "cube.x",
        "cube.y",
        "cube.z",
        "cube.qw",
        "cube.qx",
        "cube.qy",
        "cube.qz",
    )
    object_body_names = ("cube",)

    def task_build(self, spec):
        cube = spec.worldbody.add_body(name="cube", pos=[0, 0, CUBE_HALF])
        cube.add_freejoint(name="cube")
        cube.add_geom(
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[CUBE_HALF] * 3,
            mass=0.1,
            rgba=[0.85, 0.15, 0.15, 1],
            friction=[1.2, 0.01, 0.001],
            condim=4,
        )

    def task_compiled(self):
        self._cube_body = self.model.body("cube").id
        self._cube_qpos = self.data.joint("cube").qpos  # a view: always current

    def task_reset(self, rng):
        self._cube_qpos[:] = cube_pose(rng, self.randomization.object_pose_scale)

    def task_environment_state(self):
        return self._cube_qpos

    def task_evaluate(self):
        cube = self._cube_qpos[:3]
        ee = self.data.site_xpos[self.arm.ee_site]
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(cube - ee))
        grasped = self.grasped(self._cube_body)
        lift = min(max(cube[2] - CUBE_HALF, 0.0) / LIFT_HEIGHT, 1.0)
        success = bool(cube[2] > CUBE_HALF + LIFT_HEIGHT)
        return reach + 0.5 * grasped + 2.0 * lift * grasped, success

    def make_expert(self):
        return LiftExpert(self)


def grasp_yaw(quat_wxyz: np.ndarray, current_yaw: float) -> float:
    """The cube's yaw folded into the quarter turn nearest the gripper's current yaw."""
    w, _, _, z = quat_wxyz
    yaw = 2 * math.atan2(z, w)
    return current_yaw + (yaw - current_yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4


class LiftExpert(Expert):
    """Above the cube, aligned -> down -> close -> lift."""

    def plan(self):
        env = self.env
        cube = env.data.joint("cube").qpos
        ee = env.ee_pose()[0]
        if self.phase == 0:
            self.yaw = grasp_yaw(cube[3:], 0.0)
        rot = self.top_down(self.yaw)
        above = cube[:3] + [0, 0, 0.1]
        grasp = cube[:3] + [0, 0, -0.005]
        if self.phase == 0:  # approach from above
            if np.linalg.norm((above - ee)[:2]) < 0.01 and abs(above[2] - ee[2]) < 0.03:
                self.phase = 1
            return above, rot, 0.0
        if self.phase == 1:  # descend
            if np.linalg.norm(grasp - ee) < 0.008:
                self.phase, self.timer = 2, 0
            return grasp, rot, 0.0
        if self.phase == 2:  # close
            self.timer += 1
            if self.timer >= 6:
                self.phase = 3
            return grasp, rot, 1.0
        return np.array([cube[0], cube[1], 0.25]), rot, 1.0
