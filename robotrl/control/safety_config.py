"""What the safety layer checks and its limits: the kinds of intervention it counts and
`SafetyConfig`, the limits of one env, filled in from its `RobotSpec` (`robotrl.control.safety`
applies them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from robotrl.env import RobotSpec
from robotrl.errors import RobotrlError

KINDS = (
    "nan",  # NaN/inf in the command (or in the state it is checked against): held
    "action_limit",  # an entry outside the action space
    "gripper",  # gripper command outside the configured gripper range
    "joint_limit",  # a joint target (or measured joint + delta) outside the joint limits
    "rate_limit",  # an entry changed more than `max_step` since the last command
    "velocity",  # joint speed above `max_joint_velocity`
    "acceleration",  # joint speed changed faster than `max_joint_acceleration`
    "workspace",  # end effector would leave the workspace box
    "watchdog",  # stale observation, stalled inference or silent driver: held
    "estop",  # e-stop latched: held
)

# The world frame of the sim has the table top at z = 0 and the arm base at (-0.5, 0, 0); a
# 3 m wide box reaching 1.5 m up holds anything a tabletop arm can reach, and its floor keeps the
# tool tip out of the table. A real cell sets its own box.
DEFAULT_WORKSPACE_LOW = (-1.5, -1.5, 0.0)
DEFAULT_WORKSPACE_HIGH = (1.5, 1.5, 1.5)
# rad/s for `joint_pos`, where the action spec says nothing about speed: the sim controllers'
# joint speed, below the rated speeds of the Panda (2.175) and UR5e (3.14).
DEFAULT_MAX_JOINT_VELOCITY = 2.0
# m/s an `ee_pos` target may move between commands: twice the sim controllers' top speed, so
# a target may lead the arm and still keep up.
DEFAULT_MAX_EE_TARGET_SPEED = 1.0
# Watchdog timeouts: hold within two control periods of the last good event.
WATCHDOG_PERIODS = 2.0


JOINT_MODES = ("joint_pos", "joint_delta")
EE_MODES = ("ee_delta", "ee_pos")


class SafetyError(RobotrlError):
    """The safety layer cannot be set up or used as asked (a wiring error, not a bad number)."""


def _tuple(value, n: int, what: str) -> tuple[float, ...]:
    """A per-entry tuple from a scalar (broadcast) or a sequence of length `n`."""
    values = (
        np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) if np.ndim(value) == 0 else value
    )
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise SafetyError(f"{what} has {len(out)} entries, expected {n}")
    return out


@dataclass(frozen=True)
class SafetyConfig:
    """Limits for one robot. Build it with `SafetyConfig.for_robot(robot, **overrides)`.

    Per-entry tuples follow the action vector (`max_step`, `low`, `high`) or the arm joints
    (`joint_*`, `max_joint_*`); None means unknown/off. Units: the action's own (m, rad,
    closed fraction), rad/s, rad/s², metres in the world frame, seconds.
    """

    control_hz: float
    low: tuple[float, ...]  # action limits (the action space by default)
    high: tuple[float, ...]
    max_step: tuple[float, ...]  # most an entry may change from one command to the next
    joint_low: tuple[float, ...] | None = None
    joint_high: tuple[float, ...] | None = None
    max_joint_velocity: tuple[float, ...] | None = None  # joint modes only
    max_joint_acceleration: tuple[float, ...] | None = None  # joint modes only
    workspace_low: tuple[float, ...] | None = DEFAULT_WORKSPACE_LOW  # ee modes only
    workspace_high: tuple[float, ...] | None = DEFAULT_WORKSPACE_HIGH
    gripper_low: float = 0.0  # closed fraction: 0 open ... 1 closed
    gripper_high: float = 1.0
    observation_timeout: float | None = None  # s since the last observation was captured
    inference_timeout: float | None = None  # s since the policy last produced an action
    driver_timeout: float | None = None  # s since the driver's last heartbeat
    latch_watchdog: bool = False  # a watchdog trip latches the e-stop (operator must reset)
    tolerance: float = 1e-6  # clips smaller than this are float rounding: made, not counted

    def __post_init__(self):
        n = len(self.low)
        for name in ("low", "high", "max_step"):
            object.__setattr__(self, name, _tuple(getattr(self, name), n, name))
        for name in ("joint_low", "joint_high", "max_joint_velocity", "max_joint_acceleration"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _tuple(value, len(value), name))
        if any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise SafetyError("action limits have low > high")
        if self.joint_low is not None and any(
            lo > hi for lo, hi in zip(self.joint_low, self.joint_high or ())
        ):
            raise SafetyError("joint limits have low > high")
        for name in ("max_joint_velocity", "max_joint_acceleration"):
            if any(not v >= 0 for v in getattr(self, name) or ()):
                raise SafetyError(f"{name} must be >= 0")
        if any(not step >= 0 for step in self.max_step):
            raise SafetyError("max_step must be >= 0 (inf for no limit)")
        if not self.control_hz > 0:
            raise SafetyError(f"control_hz must be > 0, got {self.control_hz}")
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise SafetyError("set both workspace_low and workspace_high, or neither")
        if self.workspace_low is not None:
            low, high = (
                _tuple(self.workspace_low, 3, "workspace_low"),
                _tuple(self.workspace_high, 3, "workspace_high"),
            )
            if any(lo > hi for lo, hi in zip(low, high)):
                raise SafetyError(f"workspace box has min > max: {low} .. {high}")
            object.__setattr__(self, "workspace_low", low)
            object.__setattr__(self, "workspace_high", high)
        if not 0.0 <= self.gripper_low <= self.gripper_high <= 1.0:
            raise SafetyError(
                f"gripper limits must satisfy 0 <= low <= high <= 1, "
                f"got [{self.gripper_low}, {self.gripper_high}]"
            )
        for name in ("observation_timeout", "inference_timeout", "driver_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SafetyError(f"{name} must be > 0 seconds or None, got {value}")

    @property
    def ctrl_dt(self) -> float:
        return 1.0 / self.control_hz

    @classmethod
    def for_robot(cls, robot: RobotSpec, **overrides) -> SafetyConfig:
        """Defaults derived from `robot`, then `overrides` (scalars broadcast per entry).

        - action limits: the action space; gripper range [0, 1];
        - `max_step`: half the range of each arm entry in delta modes (standstill to full speed
          in one period, a full reversal takes two), none for `joint_pos` arm entries (the
          velocity limit bounds their change), DEFAULT_MAX_EE_TARGET_SPEED for `ee_pos`
          positions, the whole range for the gripper (open/close commands are steps);
        - joint limits: the action limits in `joint_pos`, else unknown;
        - `max_joint_velocity`: the action limit / period in `joint_delta`, 2 rad/s in
          `joint_pos`; `max_joint_acceleration`: full speed from standstill in one period
          (so stopping within one period is always legal);
        - workspace box: generous (see DEFAULT_WORKSPACE_*), only for `ee_delta`/`ee_pos` when
          the state carries `ee.x/y/z`;
        - watchdog timeouts: two control periods.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise SafetyError(
                f"unknown safety option {', '.join(unknown)}: choose from {', '.join(sorted(names))}"
            )
        spec = robot.action
        hz = float(overrides.get("control_hz", robot.control_hz))
        dt = 1.0 / hz
        low, high = np.array(spec.low, np.float64), np.array(spec.high, np.float64)
        n = spec.dim - _has_gripper(robot)
        span = high - low
        max_step = span.copy()
        cfg: dict = {"control_hz": hz, "low": tuple(low), "high": tuple(high)}
        if spec.mode == "joint_pos":
            max_step[:n] = math.inf
            cfg["joint_low"], cfg["joint_high"] = tuple(low[:n]), tuple(high[:n])
            velocity = np.full(n, DEFAULT_MAX_JOINT_VELOCITY)
        else:
            max_step[:n] = span[:n] / 2
            velocity = np.maximum(np.abs(low[:n]), np.abs(high[:n])) / dt
        if spec.mode == "ee_pos":
            max_step[:3] = DEFAULT_MAX_EE_TARGET_SPEED * dt
        cfg["max_step"] = tuple(max_step)
        if spec.mode in ("joint_pos", "joint_delta"):
            velocity = overrides.get("max_joint_velocity", velocity)
            if velocity is not None:  # None: the user turned speed limits off
                velocity = _tuple(velocity, n, "max_joint_velocity")
                cfg["max_joint_velocity"] = velocity
                cfg["max_joint_acceleration"] = tuple(v / dt for v in velocity)
        if spec.mode not in EE_MODES or not all(
            f"ee.{axis}" in robot.state_names for axis in "xyz"
        ):
            cfg["workspace_low"] = cfg["workspace_high"] = None
        for name in ("observation_timeout", "inference_timeout", "driver_timeout"):
            cfg[name] = WATCHDOG_PERIODS * dt
        for name, value in overrides.items():
            if value is not None and name in ("max_step", "low", "high"):
                value = _tuple(value, spec.dim, name)
            elif value is not None and name.startswith(("joint_", "max_joint_")):
                value = _tuple(value, n, name)
            cfg[name] = value
        return cls(**cfg)


def _has_gripper(robot: RobotSpec) -> bool:
    return bool(robot.action.names) and robot.action.names[-1] == "gripper"


def _read(state: np.ndarray | None, index: np.ndarray | None) -> np.ndarray | None:
    """`state[index]`, or None when there is no such entry or it is not finite."""
    if state is None or index is None:
        return None
    values = state[index]
    return values if np.isfinite(values).all() else None


def _indices(robot: RobotSpec, names) -> np.ndarray | None:
    """Where `names` sit in `obs["state"]`, or None when the state does not carry them all."""
    index = {name: i for i, name in enumerate(robot.state_names)}
    if not names or any(name not in index for name in names):
        return None
    return np.array([index[name] for name in names])
