"""Robot configs for ROS 2 arms: one YAML file per robot, loaded into typed dataclasses.

Topics follow ros2_control conventions: `sensor_msgs/JointState` on `/joint_states`;
position commands as `std_msgs/Float64MultiArray` on `/<controller>/commands`
(forward_position_controller) or `trajectory_msgs/JointTrajectory` on
`/<controller>/joint_trajectory` (joint_trajectory_controller); the gripper has its own
controller. Shipped configs live in `drivers/configs/` and load by name (`ur5e`, `panda`,
`sim_panda`, `sim_ur5e`); any other YAML file loads by path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from robotrl.env import ACTION_MODES
from robotrl.errors import RobotrlError, UnknownNameError

CONFIG_DIR = Path(__file__).parent / "configs"
CONTROL_MODES = ("position", "trajectory")


@dataclass(frozen=True)
class CameraConfig:
    name: str  # the observation key is images.<name>
    image_topic: str
    info_topic: str = ""
    height: int = 96
    width: int = 96
    rate: float = 30.0  # Hz the camera publishes at: its staleness is judged by this


@dataclass(frozen=True)
class GripperConfig:
    """A gripper commanded by position (`Float64MultiArray` [position]) on its controller's
    topic. On the arm's driver its joint comes in the arm's joint states; on a driver of its
    own, `state_topic` names where that driver publishes it (its freshness is then watched on
    its own, at `state_rate`). An arm with no gripper has no `gripper:` section at all."""

    controller: str = "gripper_controller"
    joint: str = "finger_joint"  # the measured joint, by name (its place in the message is free)
    open: float = 0.04  # joint position (m or rad) fully open
    closed: float = 0.0  # joint position fully closed
    command_topic: str = ""  # empty: /<controller>/commands
    state_topic: str = ""  # empty: in the arm's joint states; else its own driver's topic
    state_rate: float = 50.0  # Hz its own driver publishes at (with state_topic)

    @property
    def topic(self) -> str:
        return self.command_topic or f"/{self.controller}/commands"

    @property
    def own_driver(self) -> bool:
        return bool(self.state_topic)


@dataclass(frozen=True)
class SimConfig:
    """Topics only the MuJoCo sim robot node has: privileged task state and a reset service."""

    task_state_topic: str = "/robotrl/sim/task_state"
    reset_service: str = "/robotrl/sim/reset"
    node_name: str = "sim_robot"


@dataclass(frozen=True)
class RobotConfig:
    name: str
    robot_type: str
    kinematics: str  # arm model for forward/inverse kinematics: panda, ur5e or an MJCF path
    joint_names: tuple[str, ...]
    joint_lower: tuple[float, ...]  # rad
    joint_upper: tuple[float, ...]
    max_joint_velocity: tuple[float, ...]  # rad/s
    home: tuple[float, ...]
    control_mode: str = "position"  # position: Float64MultiArray; trajectory: JointTrajectory
    controller: str = "forward_position_controller"
    trajectory_controller: str = "joint_trajectory_controller"  # used to drive home
    state_topic: str = "/joint_states"
    state_rate: float = 500.0  # Hz the joint states arrive at
    control_hz: float = 20.0
    action_mode: str = "ee_delta"
    max_episode_steps: int = 200
    gripper: GripperConfig | None = None
    cameras: tuple[CameraConfig, ...] = ()
    sim: SimConfig | None = None
    tool: str = "gripper"  # gripper or pusher: which tool the kinematic model carries
    reset_velocity: float = 0.5  # rad/s, the fastest joint when driving home
    reset_tolerance: float = 0.02  # rad
    reset_timeout: float = 20.0  # s

    @property
    def command_topic(self) -> str:
        if self.control_mode == "trajectory":
            return f"/{self.controller}/joint_trajectory"
        return f"/{self.controller}/commands"

    @property
    def trajectory_topic(self) -> str:
        return f"/{self.trajectory_controller}/joint_trajectory"

    def replace(self, **changes) -> RobotConfig:
        from dataclasses import replace

        return replace(self, **changes)


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str) -> RobotConfig:
    """A shipped config by name, or a YAML file by path; a bad file is one clear line."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownNameError(
                f"unknown robot config '{name_or_path}': choose {', '.join(available())} "
                f"or give a YAML path"
            )
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RobotrlError(f"no robot config at {path}") from None
    except UnicodeDecodeError:
        raise RobotrlError(f"{path} is not a text (YAML) file") from None
    except OSError as e:
        raise RobotrlError(f"cannot read the robot config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RobotrlError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise RobotrlError(f"{path}: expected a mapping of config fields")
    return parse_config(raw, str(path))


def _section(cls, raw, where: str):
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RobotrlError(f"{where}: expected a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RobotrlError(f"{where}: unknown field {', '.join(unknown)}")
    return cls(**raw)


def parse_config(raw: dict, where: str = "config") -> RobotConfig:
    raw = dict(raw)
    joints = raw.pop("joints", None)
    if not isinstance(joints, dict) or "names" not in joints:
        raise RobotrlError(f"{where}: needs joints: {{names, lower, upper, max_velocity}}")
    names = joints["names"]
    if not isinstance(names, list) or not names or not all(isinstance(j, str) for j in names):
        raise RobotrlError(f"{where}: joints.names must be a list of joint names")
    if len(set(names)) != len(names):
        raise RobotrlError(f"{where}: joints.names names a joint twice")
    names = tuple(names)
    n = len(names)

    def per_joint(key: str, default=None) -> tuple[float, ...]:
        value = joints.get(key, default)
        if value is None:
            raise RobotrlError(f"{where}: joints.{key} is missing")
        if isinstance(value, int | float | str):  # one value (or multiple of pi) for all
            values = [value] * n
        elif isinstance(value, list | tuple):
            values = list(value)
        else:
            raise RobotrlError(f"{where}: joints.{key} must be a number or a list of numbers")
        if len(values) != n:
            raise RobotrlError(f"{where}: joints.{key} has {len(values)} entries, {n} joints")
        return tuple(float(eval_angle(v, where)) for v in values)

    cfg = {
        "joint_names": names,
        "joint_lower": per_joint("lower"),
        "joint_upper": per_joint("upper"),
        "max_joint_velocity": per_joint("max_velocity"),
        "home": per_joint("home"),
    }
    cfg["gripper"] = _section(GripperConfig, raw.pop("gripper", None), f"{where}: gripper")
    cfg["sim"] = _section(SimConfig, raw.pop("sim", None), f"{where}: sim")
    cams = raw.pop("cameras", None) or []
    if not isinstance(cams, list):
        raise RobotrlError(f"{where}: cameras must be a list of camera mappings")
    cfg["cameras"] = tuple(_section(CameraConfig, c, f"{where}: cameras") for c in cams)
    known = {f.name for f in fields(RobotConfig)} - set(cfg)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RobotrlError(f"{where}: unknown field {', '.join(unknown)}")
    try:
        config = RobotConfig(**cfg, **raw)
    except TypeError as e:
        raise RobotrlError(f"{where}: {e}") from None
    if config.control_mode not in CONTROL_MODES:
        raise RobotrlError(f"{where}: control_mode must be one of {', '.join(CONTROL_MODES)}")
    if any(lo > hi for lo, hi in zip(config.joint_lower, config.joint_upper)):
        raise RobotrlError(f"{where}: a joint has lower > upper")
    _check(config, where)
    return config


# Fields that must be positive (rates, speeds, times, counts), by section.
_POSITIVE = {
    RobotConfig: ("state_rate", "control_hz", "max_episode_steps", "reset_velocity")
    + ("reset_tolerance", "reset_timeout"),
    GripperConfig: ("state_rate",),
    CameraConfig: ("height", "width", "rate"),
    SimConfig: (),
}


def _check(config: RobotConfig, where: str) -> None:
    """Every scalar field of the type it is declared with, and in range: one line if not."""
    sections = [(config, where)]
    if config.gripper is not None:
        sections.append((config.gripper, f"{where}: gripper"))
    if config.sim is not None:
        sections.append((config.sim, f"{where}: sim"))
    sections += [(cam, f"{where}: cameras") for cam in config.cameras]
    for section, at in sections:
        for f in fields(section):
            value = getattr(section, f.name)
            kind = {"str": str, "float": float, "int": int}.get(str(f.type))
            if kind is None:
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            ok = isinstance(value, str) if kind is str else number and math.isfinite(value)
            if kind is int:
                ok = ok and isinstance(value, int)
            if not ok:
                a = {str: "a string", float: "a number", int: "a whole number"}[kind]
                raise RobotrlError(f"{at}: {f.name} must be {a}, got {value!r}")
            if f.name in _POSITIVE[type(section)] and value <= 0:
                raise RobotrlError(f"{at}: {f.name} must be positive, got {value}")
    if any(v <= 0 for v in config.max_joint_velocity):
        raise RobotrlError(f"{where}: joints.max_velocity must be positive")
    outside = [
        j
        for j, lo, h, hi in zip(
            config.joint_names, config.joint_lower, config.home, config.joint_upper
        )
        if not lo <= h <= hi
    ]
    if outside:
        raise RobotrlError(f"{where}: joints.home is outside the limits for {', '.join(outside)}")
    if config.action_mode not in ACTION_MODES:
        raise RobotrlError(f"{where}: action_mode must be one of {', '.join(ACTION_MODES)}")
    if config.gripper is not None and config.gripper.open == config.gripper.closed:
        raise RobotrlError(f"{where}: gripper open and closed are the same position")
    if len({c.name for c in config.cameras}) != len(config.cameras):
        raise RobotrlError(f"{where}: two cameras have one name")


def eval_angle(value, where: str) -> float:
    """A number, or a multiple of pi as YAML has no constants: `pi`, `-pi/2`, `2*pi`, `1.5pi`."""
    if isinstance(value, int | float):
        return float(value)
    match = _ANGLE.fullmatch(str(value).replace(" ", ""))
    if match is None:
        raise RobotrlError(f"{where}: '{value}' is not a number or a multiple of pi")
    sign, coef, denom = match.groups()
    angle = float(coef or 1.0) * math.pi / float(denom or 1.0)
    return -angle if sign == "-" else angle


_ANGLE = re.compile(r"([+-]?)(\d*\.?\d+)?\*?pi(?:/(\d*\.?\d+))?")


__all__ = [
    "CONFIG_DIR",
    "CameraConfig",
    "GripperConfig",
    "RobotConfig",
    "SimConfig",
    "available",
    "load_config",
]
