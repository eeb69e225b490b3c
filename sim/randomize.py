"""Domain randomization hooks, applied at every reset from the model's nominal values."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass(frozen=True)
class Randomization:
    """What to vary per episode. Ranges are multiplicative scales or absolute jitters.

    `object_pose_scale` widens (>1) or narrows (<1) every task's object reset ranges.
    """

    object_pose_scale: float = 1.0
    friction_scale: tuple[float, float] = (1.0, 1.0)
    mass_scale: tuple[float, float] = (1.0, 1.0)
    object_colors: bool = False
    lighting: bool = False
    camera_pos_jitter: float = 0.0  # metres, uniform per axis
    camera_rot_jitter: float = 0.0  # radians, about a random axis

    @classmethod
    def full(cls) -> Randomization:
        """A sensible set for sim-to-real: all hooks on, moderate ranges."""
        return cls(1.0, (0.7, 1.3), (0.7, 1.3), True, True, 0.01, 0.03)


class Randomizer:
    """Remembers the nominal model values and rewrites them each reset."""

    def __init__(self, model: mujoco.MjModel, config: Randomization, object_bodies: list[int]):
        self.model, self.config = model, config
        self.object_bodies = np.array(object_bodies, dtype=int)
        self.object_geoms = np.flatnonzero(np.isin(model.geom_bodyid, self.object_bodies))
        # Objects on planar joints (PushT) carry their table friction in joint damping and
        # frictionloss, so friction randomization scales those too.
        self.object_dofs = np.flatnonzero(np.isin(model.dof_bodyid, self.object_bodies))
        self.nominal = {
            "geom_friction": model.geom_friction.copy(),
            "dof_damping": model.dof_damping.copy(),
            "dof_frictionloss": model.dof_frictionloss.copy(),
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "geom_rgba": model.geom_rgba.copy(),
            "light_diffuse": model.light_diffuse.copy(),
            "light_pos": model.light_pos.copy(),
            "cam_pos": model.cam_pos.copy(),
            "cam_quat": model.cam_quat.copy(),
        }

    def apply(self, rng: np.random.Generator) -> None:
        m, c, nom = self.model, self.config, self.nominal
        m.geom_friction[:] = nom["geom_friction"] * rng.uniform(*c.friction_scale, (m.ngeom, 1))
        dof_scale = rng.uniform(*c.friction_scale, len(self.object_dofs))
        m.dof_damping[self.object_dofs] = nom["dof_damping"][self.object_dofs] * dof_scale
        m.dof_frictionloss[self.object_dofs] = nom["dof_frictionloss"][self.object_dofs] * dof_scale
        scale = np.ones(m.nbody)
        scale[self.object_bodies] = rng.uniform(*c.mass_scale, len(self.object_bodies))
        m.body_mass[:] = nom["body_mass"] * scale
        m.body_inertia[:] = nom["body_inertia"] * scale[:, None]
        m.geom_rgba[:] = nom["geom_rgba"]
        if c.object_colors and len(self.object_geoms):
            m.geom_rgba[self.object_geoms, :3] = rng.uniform(0.1, 1.0, (len(self.object_geoms), 3))
        m.light_diffuse[:] = nom["light_diffuse"]
        m.light_pos[:] = nom["light_pos"]
        if c.lighting and m.nlight:
            m.light_diffuse[:] = nom["light_diffuse"] * rng.uniform(0.5, 1.3, (m.nlight, 1))
            m.light_pos[:] = nom["light_pos"] + rng.uniform(-0.3, 0.3, (m.nlight, 3))
        m.cam_pos[:] = (
            nom["cam_pos"] + rng.uniform(-1, 1, nom["cam_pos"].shape) * c.camera_pos_jitter
        )
        m.cam_quat[:] = nom["cam_quat"]
        if c.camera_rot_jitter > 0:
            for i in range(m.ncam):
                axis = rng.normal(size=3)
                angle = rng.uniform(-c.camera_rot_jitter, c.camera_rot_jitter)
                dq = np.empty(4)
                mujoco.mju_axisAngle2Quat(dq, axis / np.linalg.norm(axis), angle)
                mujoco.mju_mulQuat(m.cam_quat[i], dq, nom["cam_quat"][i])
