"""Compose a task scene: table, lights, a fixed front camera, and an arm attached by MjSpec."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robotrl.sim.arms import ArmModel

ARM_PREFIX = "robot/"
ROBOT_BASE_POS = (-0.5, 0.0, 0.0)  # table top is z = 0; the task workspace is around the origin
TABLE_HALF = (0.6, 0.6, 0.02)

SCENE_XML = f"""<mujoco model="robotrl_scene">
<compiler angle="radian" autolimits="true"/>
<option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="5"/>
<visual><global offwidth="640" offheight="480"/><quality shadowsize="0" offsamples="0"/>
  <headlight ambient="0.4 0.4 0.4" diffuse="0.5 0.5 0.5"/></visual>
<asset>
  <texture name="grid" type="2d" builtin="checker" rgb1=".45 .42 .38" rgb2=".5 .47 .43"
           width="64" height="64"/>
  <material name="table" texture="grid" texrepeat="6 6"/>
  <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.65 0.75" rgb2="0.1 0.1 0.12"
           width="32" height="32"/>
</asset>
<worldbody>
  <light name="top" pos="0 0 1.5" dir="0 0 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
  <geom name="table" type="box" pos="-0.1 0 {-TABLE_HALF[2]}" size="{TABLE_HALF[0]} {TABLE_HALF[1]} {TABLE_HALF[2]}"
        material="table" contype="1" conaffinity="1"/>
</worldbody>
</mujoco>"""


# (position, point looked at, vertical field of view in degrees)
FRONT_CAMERA = ((0.38, 0.3, 0.42), (-0.08, 0.0, 0.0), 55.0)  # a policy input
OVERVIEW_CAMERA = ((0.75, 0.6, 0.7), (-0.2, 0.0, 0.12), 50.0)  # for videos: the whole arm


def aim_camera(camera, pos, target, fovy: float) -> None:
    """Place an `MjsCamera` at `pos` looking at `target`, with the image's up toward +z."""
    forward = np.subtract(target, pos, dtype=float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    quat = np.empty(4)
    # A camera looks along its -z axis, with x to the right and y up in the image.
    mujoco.mju_mat2Quat(quat, np.column_stack([right, up, -forward]).ravel())
    camera.pos, camera.quat, camera.fovy = list(pos), quat, fovy


def build_scene(arm: ArmModel, sim_dt: float) -> mujoco.MjSpec:
    """A scene spec with the arm attached at the robot base; names inside the arm get
    `ARM_PREFIX`. Tasks add their objects to the returned spec before compiling."""
    spec = mujoco.MjSpec.from_string(SCENE_XML)
    spec.option.timestep = sim_dt
    for name, (pos, target, fovy) in (("overview", OVERVIEW_CAMERA), ("front", FRONT_CAMERA)):
        aim_camera(spec.worldbody.add_camera(name=name), pos, target, fovy)
    arm_spec = mujoco.MjSpec.from_string(arm.mjcf)
    if arm.mjcf_dir:
        arm_spec.meshdir = _join(arm.mjcf_dir, arm_spec.meshdir)
        arm_spec.texturedir = _join(arm.mjcf_dir, arm_spec.texturedir)
    yaw = arm.mount_yaw
    mount = spec.worldbody.add_frame(
        pos=list(ROBOT_BASE_POS), quat=[math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
    )
    spec.attach(arm_spec, prefix=ARM_PREFIX, frame=mount)
    return spec


def _join(base: str, sub: str) -> str:
    import os

    return sub if os.path.isabs(sub or "") else os.path.join(base, sub or "")
