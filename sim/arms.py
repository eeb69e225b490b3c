"""Robot arms as MJCF: a UR5e-class and a Franka-Panda-class arm built from primitives.

Link frames come from the manufacturers' published Denavit-Hartenberg tables (UR5e: standard
DH; Panda: Craig's modified DH), so forward kinematics match the real arms. Geometry is
capsules along the links: enough for contact with the scene, cheap to simulate. Links carry
`gravcomp` so the joint position servos track like the vendors' gravity-compensated
controllers do. A user's own MJCF arm (e.g. from mujoco_menagerie) loads by path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robotrl.errors import ModelFileError, UnknownNameError

# Arm links collide with the scene (contype 1) but not with each other (their contype bit 2
# is not in anyone's conaffinity except the scene's), which is what the vendors' controllers
# avoid anyway and saves the collision checks.
ARM_COLLISION = 'contype="2" conaffinity="1"'
NO_COLLISION = 'contype="0" conaffinity="0"'  # base and first link: only turn about the mount


@dataclass(frozen=True)
class ArmModel:
    """Where the parts of an arm are in its MJCF, so the sim can drive any arm the same way."""

    name: str
    mjcf: str  # the XML text; `mjcf_dir` resolves relative mesh paths
    joint_names: tuple[str, ...]
    actuator_names: tuple[str, ...]
    ee_site: str
    home_qpos: tuple[float, ...]
    gripper_actuator: str | None = None
    gripper_joints: tuple[str, ...] = ()  # finger slide joints; the first is measured
    gripper_open: float = 0.04  # finger travel at fully open, metres
    wrist_camera: str | None = None
    mjcf_dir: str | None = None
    mount_yaw: float = 0.0  # turn about world z so the arm's home pose faces the table (+x)


@dataclass(frozen=True)
class DHJoint:
    a: float
    d: float
    alpha: float
    lower: float
    upper: float
    max_torque: float
    radius: float


# UR5e, standard DH (Universal Robots, "DH parameters for calculations of kinematics").
UR5E_DH = (
    DHJoint(0.0, 0.1625, math.pi / 2, -2 * math.pi, 2 * math.pi, 150, 0.060),
    DHJoint(-0.425, 0.0, 0.0, -2 * math.pi, 2 * math.pi, 150, 0.055),
    DHJoint(-0.3922, 0.0, 0.0, -math.pi, math.pi, 150, 0.045),
    DHJoint(0.0, 0.1333, math.pi / 2, -2 * math.pi, 2 * math.pi, 28, 0.040),
    DHJoint(0.0, 0.0997, -math.pi / 2, -2 * math.pi, 2 * math.pi, 28, 0.040),
    DHJoint(0.0, 0.0996, 0.0, -2 * math.pi, 2 * math.pi, 28, 0.040),
)
UR5E_HOME = (0.0, -1.9, 1.9, -math.pi / 2, -math.pi / 2, 0.0)

# Franka Panda, modified DH (Franka Robotics, "Robot and interface specifications"): row i
# holds a_{i-1}, d_i, alpha_{i-1}; limits and torques from the same page.
PANDA_DH = (
    DHJoint(0.0, 0.333, 0.0, -2.8973, 2.8973, 87, 0.060),
    DHJoint(0.0, 0.0, -math.pi / 2, -1.7628, 1.7628, 87, 0.060),
    DHJoint(0.0, 0.316, math.pi / 2, -2.8973, 2.8973, 87, 0.055),
    DHJoint(0.0825, 0.0, math.pi / 2, -3.0718, -0.0698, 87, 0.055),
    DHJoint(-0.0825, 0.384, -math.pi / 2, -2.8973, 2.8973, 12, 0.050),
    DHJoint(0.0, 0.0, math.pi / 2, -0.0175, 3.7525, 12, 0.045),
    DHJoint(0.088, 0.0, math.pi / 2, -2.8973, 2.8973, 12, 0.040),
)
PANDA_FLANGE_D = 0.107
PANDA_HOME = (0.0, -0.3, 0.0, -2.2, 0.0, 1.9, math.pi / 4)


def _quat_rx(alpha: float) -> str:
    return f"{math.cos(alpha / 2):.9f} {math.sin(alpha / 2):.9f} 0 0"


def _link_offsets(dh: tuple[DHJoint, ...], modified: bool, flange_d: float = 0.0):
    """(pos, quat) of each joint body and of the flange, relative to the previous body.

    Standard DH: frame i = Rz(q_i) Tz(d_i) Tx(a_i) Rx(alpha_i), so the body after joint i sits
    at (a_i, 0, d_i) turned by Rx(alpha_i). Modified DH: frame i = Rx(alpha_{i-1}) Tx(a_{i-1})
    Rz(q_i) Tz(d_i), so body i sits at (a_{i-1}, 0, d_{i-1}) turned by Rx(alpha_{i-1}).
    """
    offsets = []
    if modified:
        prev_d = 0.0
        for j in dh:
            offsets.append(((j.a, 0.0, prev_d), j.alpha))
            prev_d = j.d
        offsets.append(((0.0, 0.0, prev_d + flange_d), 0.0))
    else:
        offsets.append(((0.0, 0.0, 0.0), 0.0))
        offsets.extend(((j.a, 0.0, j.d), j.alpha) for j in dh)
    return offsets


def _gripper_xml(prefix_yaw: float) -> str:
    """A parallel-jaw hand (Franka Hand-like: 80 mm stroke) on the flange; ee_site at the tips."""
    yaw = f"{math.cos(prefix_yaw / 2):.9f} 0 0 {math.sin(prefix_yaw / 2):.9f}"
    return f"""
<body name="hand" quat="{yaw}" gravcomp="1">
  <inertial pos="0 0 0.04" mass="0.7" diaginertia="0.002 0.002 0.001"/>
  <geom type="box" size="0.025 0.09 0.025" pos="0 0 0.035" rgba="0.9 0.9 0.9 1" {ARM_COLLISION}/>
  <camera name="wrist" pos="0.07 0 0.03" xyaxes="0 1 0 0.94 0 0.35" fovy="75"/>
  <site name="ee_site" pos="0 0 0.1034" size="0.006" rgba="1 0 0 0.4" group="4"/>
  <body name="finger_left" pos="0 0 0.0584" gravcomp="1">
    <inertial pos="0 0.01 0.025" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
    <joint name="finger_left" type="slide" axis="0 1 0" range="0 0.04" damping="2" armature="0.01"/>
    <geom type="box" size="0.01 0.006 0.027" pos="0 0.006 0.027" friction="1.5 0.02 0.002"
          condim="4" rgba="0.2 0.2 0.2 1" {ARM_COLLISION}/>
  </body>
  <body name="finger_right" pos="0 0 0.0584" gravcomp="1">
    <inertial pos="0 -0.01 0.025" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
    <joint name="finger_right" type="slide" axis="0 -1 0" range="0 0.04" damping="2" armature="0.01"/>
    <geom type="box" size="0.01 0.006 0.027" pos="0 -0.006 0.027" friction="1.5 0.02 0.002"
          condim="4" rgba="0.2 0.2 0.2 1" {ARM_COLLISION}/>
  </body>
</body>"""


def _pusher_xml() -> str:
    """A round pushing tool (for planar pushing); ee_site at its tip."""
    return f"""
<body name="hand" gravcomp="1">
  <inertial pos="0 0 0.05" mass="0.3" diaginertia="0.001 0.001 0.0005"/>
  <camera name="wrist" pos="0.06 0 0.02" xyaxes="0 1 0 0.94 0 0.35" fovy="75"/>
  <geom type="cylinder" size="0.03 0.01" pos="0 0 0.01" rgba="0.9 0.9 0.9 1" {ARM_COLLISION}/>
  <geom name="pusher" type="cylinder" size="0.015 0.05" pos="0 0 0.07" rgba="0.3 0.3 0.9 1"
        friction="0.3 0.005 0.0001" {ARM_COLLISION}/>
  <site name="ee_site" pos="0 0 0.12" size="0.006" rgba="1 0 0 0.4" group="4"/>
</body>"""


def _arm_xml(name: str, dh, modified: bool, flange_d: float, tool: str, hand_yaw: float):
    offsets = _link_offsets(dh, modified, flange_d)
    body_xml, close = [], []
    for i, joint in enumerate(dh):
        (x, y, z), alpha = offsets[i]
        child_pos = np.array(offsets[i + 1][0])
        geom = (
            f'<geom type="capsule" fromto="0 0 0 {child_pos[0]:.5f} {child_pos[1]:.5f} '
            f'{child_pos[2]:.5f}" size="{joint.radius}"'
            if np.linalg.norm(child_pos) > 1e-3
            else f'<geom type="sphere" size="{joint.radius}"'
        )
        mass = 4.0 * joint.max_torque / 87 + 0.8
        body_xml.append(
            f'<body name="link{i + 1}" pos="{x} {y} {z}" quat="{_quat_rx(alpha)}" gravcomp="1">'
            f'<inertial pos="{child_pos[0] / 2:.4f} {child_pos[1] / 2:.4f} {child_pos[2] / 2:.4f}" '
            f'mass="{mass:.2f}" diaginertia="0.02 0.02 0.01"/>'
            f'<joint name="joint{i + 1}" range="{joint.lower} {joint.upper}" armature="0.1" '
            f'damping="1"/>'
            f'{geom} rgba="{0.95 if i % 2 else 0.75} {0.95 if i % 2 else 0.75} 0.95 1" '
            f"{ARM_COLLISION if i else NO_COLLISION}/>"
        )
        close.append("</body>")
    (fx, fy, fz), falpha = offsets[-1]
    tool_xml = _gripper_xml(hand_yaw) if tool == "gripper" else _pusher_xml()
    flange = f'<body name="flange" pos="{fx} {fy} {fz}" quat="{_quat_rx(falpha)}">{tool_xml}</body>'
    actuators = []
    for i, joint in enumerate(dh):
        kp, kv = (1500, 120) if joint.max_torque > 50 else (400, 30)
        actuators.append(
            f'<position name="joint{i + 1}" joint="joint{i + 1}" kp="{kp}" kv="{kv}" '
            f'forcerange="{-joint.max_torque} {joint.max_torque}" '
            f'ctrlrange="{joint.lower} {joint.upper}"/>'
        )
    gripper = ""
    if tool == "gripper":
        actuators.append(
            '<position name="gripper" joint="finger_left" kp="1500" kv="40" forcerange="-70 70" '
            'ctrlrange="0 0.04"/>'
        )
        gripper = '<equality><joint joint1="finger_right" joint2="finger_left"/></equality>'
    return f"""<mujoco model="{name}">
<compiler angle="radian" autolimits="true"/>
<worldbody>
<body name="base"><geom type="cylinder" size="0.08 0.03" pos="0 0 0.03" rgba="0.3 0.3 0.3 1"
  {NO_COLLISION}/>
{"".join(body_xml)}{flange}{"".join(close)}
</body>
</worldbody>
<actuator>{"".join(actuators)}</actuator>
{gripper}
</mujoco>"""


def builtin_arm(name: str, tool: str = "gripper") -> ArmModel:
    """`panda` or `ur5e`, with a parallel-jaw gripper or a pushing tool."""
    if name == "panda":
        dh, modified, flange_d, home, yaw = PANDA_DH, True, PANDA_FLANGE_D, PANDA_HOME, -math.pi / 4
    elif name == "ur5e":
        dh, modified, flange_d, home, yaw = UR5E_DH, False, 0.0, UR5E_HOME, 0.0
    else:
        raise UnknownNameError(f"unknown robot '{name}': choose panda, ur5e, or a path to an MJCF")
    joints = tuple(f"joint{i + 1}" for i in range(len(dh)))
    return ArmModel(
        name=name,
        mjcf=_arm_xml(name, dh, modified, flange_d, tool, yaw),
        joint_names=joints,
        actuator_names=joints,
        ee_site="ee_site",
        home_qpos=home,
        gripper_actuator="gripper" if tool == "gripper" else None,
        gripper_joints=("finger_left", "finger_right") if tool == "gripper" else (),
        wrist_camera="wrist",
        mount_yaw=math.pi if name == "ur5e" else 0.0,
    )


def load_arm(
    path: str | Path,
    joint_names: tuple[str, ...] | None = None,
    ee_site: str | None = None,
    home_qpos: tuple[float, ...] | None = None,
    gripper_actuator: str | None = None,
    gripper_joints: tuple[str, ...] = (),
    gripper_open: float | None = None,
) -> ArmModel:
    """Load a user's MJCF arm. Unspecified parts are found by convention: hinge joints with a
    position actuator form the arm; the site named `ee_site`, `attachment_site` or the last
    site is the end effector; the first other actuator is the gripper; the keyframe named
    `home` (else the first, else zeros) is home."""
    import mujoco

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"robot MJCF not found: {path}")
    text = path.read_text()
    try:
        model = mujoco.MjModel.from_xml_path(str(path))
    except ValueError as e:
        raise ModelFileError(f"cannot load robot MJCF {path}: {str(e).splitlines()[0]}") from e

    def name(kind, i):
        return mujoco.mj_id2name(model, kind, i) or ""

    act_joint = {
        i: int(model.actuator_trnid[i, 0])
        for i in range(model.nu)
        if model.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT
    }
    hinge = mujoco.mjtJoint.mjJNT_HINGE
    if joint_names is None:
        joint_names = tuple(
            name(mujoco.mjtObj.mjOBJ_JOINT, j)
            for j in act_joint.values()
            if model.jnt_type[j] == hinge
        )
    arm_acts = tuple(
        name(mujoco.mjtObj.mjOBJ_ACTUATOR, a)
        for jn in joint_names
        for a, j in act_joint.items()
        if name(mujoco.mjtObj.mjOBJ_JOINT, j) == jn
    )
    if not joint_names or len(arm_acts) != len(joint_names):
        raise ModelFileError(f"{path}: every arm joint needs a named position actuator")
    if gripper_actuator is None:
        rest = [name(mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in range(model.nu)]
        rest = [n for n in rest if n not in arm_acts]
        gripper_actuator = rest[0] if rest else None
    if ee_site is None:
        sites = [name(mujoco.mjtObj.mjOBJ_SITE, i) for i in range(model.nsite)]
        for candidate in ("ee_site", "attachment_site", "grip_site"):
            if candidate in sites:
                ee_site = candidate
                break
        else:
            if not sites:
                raise ModelFileError(f"{path}: no site for the end effector; pass ee_site=")
            ee_site = sites[-1]
    if home_qpos is None:
        qadr = [model.jnt_qposadr[model.joint(j).id] for j in joint_names]
        keys = [name(mujoco.mjtObj.mjOBJ_KEY, k) for k in range(model.nkey)]
        key = keys.index("home") if "home" in keys else 0
        home_qpos = tuple(float(model.key_qpos[key, a]) if model.nkey else 0.0 for a in qadr)
    if gripper_actuator is not None and gripper_open is None:
        gripper_open = float(model.actuator(gripper_actuator).ctrlrange[1])
    return ArmModel(
        name=path.stem,
        mjcf=text,
        joint_names=tuple(joint_names),
        actuator_names=arm_acts,
        ee_site=ee_site,
        home_qpos=tuple(home_qpos),
        gripper_actuator=gripper_actuator,
        gripper_joints=tuple(gripper_joints),
        gripper_open=gripper_open or 0.0,
        mjcf_dir=str(path.parent.resolve()),
    )


def resolve_arm(robot: str | ArmModel, tool: str = "gripper") -> ArmModel:
    if isinstance(robot, ArmModel):
        return robot
    if robot.endswith(".xml") or "/" in robot:
        return load_arm(robot)
    return builtin_arm(robot, tool)
