"""Reach: bring the end effector to a random target point (a visual marker) in free space."""

from __future__ import annotations

import mujoco
import numpy as np

from robotrl.sim.mujoco_env import MujocoEnv
from robotrl.tasks.expert import Expert

TARGET_LOW = np.array([-0.12, -0.2, 0.08])
TARGET_HIGH = np.array([0.12, 0.2, 0.3])
SUCCESS_DISTANCE = 0.02  # m


def target_position(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """The reset distribution: a point in the box (shrunk toward its centre by `scale`)."""
    center = (TARGET_LOW + TARGET_HIGH) / 2
    half = (TARGET_HIGH - TARGET_LOW) / 2 * scale
    return center + rng.uniform(-half, half)


class ReachEnv(MujocoEnv):
    default_control_hz = 20.0
    max_episode_steps = 100
    environment_state_names = ("target.x", "target.y", "target.z")

    def task_build(self, spec):
        body = spec.worldbody.add_body(name="target", mocap=True, pos=[0, 0, 0.2])
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[0.015, 0, 0],
            rgba=[0.1, 0.9, 0.1, 0.6],
            contype=0,
            conaffinity=0,
        )

    def task_reset(self, rng):
        self.data.mocap_pos[0] = target_position(rng, self.randomization.object_pose_scale)

    def task_environment_state(self):
        return self.data.mocap_pos[0]

    def task_evaluate(self):
        distance = float(np.linalg.norm(self.data.mocap_pos[0] - self.ee_pose()[0]))
        return 1.0 - np.tanh(5.0 * distance), distance < SUCCESS_DISTANCE

    def make_expert(self):
        return ReachExpert(self)


class ReachExpert(Expert):
    def plan(self):
        return self.env.data.mocap_pos[0].copy(), self.home_rot, 0.0
