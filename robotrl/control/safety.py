"""The safety layer: every command to an env, simulated or real, passes through `Safety.filter`.

`filter` never raises on bad numbers. It substitutes a safe command and counts what it did:

- NaN/inf anywhere, a tripped watchdog or a latched e-stop -> the *hold* command: zero deltas
  (delta modes), the last safe joint targets (`joint_pos`) or end-effector position (`ee_pos`,
  with zero rotation deltas), the gripper kept where it was;
- otherwise each limit clips the command in turn: action limits, gripper range, joint limits,
  change per step, joint velocity and acceleration (joint modes), and the workspace box for the
  predicted (`ee_delta`) or commanded (`ee_pos`) end-effector position.

Every limit is an interval that contains the hold command ("stop" is always allowed: the rate
and acceleration limits bound speeding up and reversing, never braking). Clipping in sequence
therefore only moves a command toward the hold, so the result satisfies every limit at once
and the hold itself is always a legal command.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np

from robotrl.control.watchdog import Watchdog
from robotrl.env import RobotSpec
from robotrl.errors import InvalidActionError, RobotrlError

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


class Safety:
    """The safety state of one env: last command, joint speed, watchdog, e-stop and counts.

    `clock` gives the time when `filter` is called without `now` (seconds, monotonic).
    """

    def __init__(
        self,
        robot: RobotSpec,
        config: SafetyConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.robot = robot
        self.config = cfg = config or SafetyConfig.for_robot(robot)
        self.clock = clock
        spec = robot.action
        self.mode, self.dim = spec.mode, spec.dim
        self.has_gripper = _has_gripper(robot)
        self.n_arm = n = self.dim - self.has_gripper
        self.dt = cfg.ctrl_dt
        if len(cfg.low) != self.dim:
            raise SafetyError(
                f"safety config is for {len(cfg.low)} action entries, robot has {self.dim}"
            )

        self._joint_idx = _indices(robot, [f"{j}.pos" for j in robot.joint_names])
        self._ee_idx = _indices(robot, ["ee.x", "ee.y", "ee.z"])
        self._opening_idx = _indices(robot, ["gripper.opening"])
        self._workspace = self.mode in EE_MODES and cfg.workspace_low is not None
        if self._workspace and self._ee_idx is None:
            raise SafetyError("a workspace box needs ee.x, ee.y, ee.z in the robot's state")
        for name in ("joint_low", "joint_high", "max_joint_velocity", "max_joint_acceleration"):
            value = getattr(cfg, name)
            if self.mode in JOINT_MODES and value is not None and len(value) != n:
                raise SafetyError(f"{name} has {len(value)} entries, the arm has {n} joints")
        needs_q = self.mode == "joint_delta" and cfg.joint_low is not None
        if needs_q and self._joint_idx is None:
            raise SafetyError("joint limits in joint_delta need the joint positions in the state")

        # Per-entry limit vectors; ±inf where a limit does not apply to an entry.
        inf = np.full(self.dim, np.inf)
        self._low, self._high = -inf.copy(), inf.copy()
        self._low[:n], self._high[:n] = cfg.low[:n], cfg.high[:n]
        deltas = slice(3 if self.mode == "ee_pos" else 0, n)  # entries whose hold is 0
        holds_zero = (self._low[deltas] <= 0).all() and (self._high[deltas] >= 0).all()
        if self.mode != "joint_pos" and not holds_zero:
            raise SafetyError(f"{self.mode} action limits must contain 0 (the hold command)")
        self._gripper_low, self._gripper_high = -inf.copy(), inf.copy()
        if self.has_gripper:
            self._gripper_low[n] = max(cfg.low[n], cfg.gripper_low)
            self._gripper_high[n] = min(cfg.high[n], cfg.gripper_high)
            if self._gripper_low[n] > self._gripper_high[n]:
                raise SafetyError("gripper limits and the gripper's action limits do not overlap")
        self._joint_low = np.array(cfg.joint_low) if cfg.joint_low is not None else None
        self._joint_high = np.array(cfg.joint_high) if cfg.joint_high is not None else None
        if (self._joint_low is None) != (self._joint_high is None):
            raise SafetyError("set both joint_low and joint_high, or neither")
        self._max_step = np.array(cfg.max_step)
        joint_mode = self.mode in JOINT_MODES
        self._vmax = (
            np.array(cfg.max_joint_velocity) if joint_mode and cfg.max_joint_velocity else None
        )
        self._amax = (
            np.array(cfg.max_joint_acceleration)
            if joint_mode and cfg.max_joint_acceleration
            else None
        )
        if self.mode == "ee_pos":
            if self._ee_idx is None:
                raise SafetyError("ee_pos needs ee.x, ee.y, ee.z in the robot's state to hold")
            self._pos_low, self._pos_high = self._low[:3], self._high[:3]
        if self.mode == "joint_pos":
            # Where a first joint target may start from: inside both action and joint limits.
            self._pos_low, self._pos_high = self._low[:n], self._high[:n]
            if self._joint_low is not None:
                self._pos_low = np.maximum(self._pos_low, self._joint_low)
                self._pos_high = np.minimum(self._pos_high, self._joint_high)

        self.watchdog = Watchdog(cfg.observation_timeout, cfg.inference_timeout, cfg.driver_timeout)
        self.interventions: Counter[str] = Counter()
        self.last_interventions: dict[str, int] = {}  # what the last `filter` call did
        self.tripped: tuple[str, ...] = ()  # watchdog conditions at the last `filter` call
        self.estop_reason: str | None = None
        self.reset()

    # ---- state ------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new episode: forget the last command and the watchdog's events. The e-stop
        stays latched (only `reset_estop` releases it) and the counts keep adding up."""
        self._last: np.ndarray | None = None  # the last command sent
        self._velocity = np.zeros(self.n_arm)  # joint speed it commanded (joint modes), rad/s
        self.watchdog.reset()
        self.last_interventions = {}
        self.tripped = ()

    def estop(self, reason: str = "e-stop") -> None:
        """Latch the e-stop: every `filter` returns the hold command until `reset_estop`."""
        self.estop_reason = reason or "e-stop"

    def reset_estop(self) -> None:
        self.estop_reason = None

    @property
    def estopped(self) -> bool:
        return self.estop_reason is not None

    def hold_command(self, obs) -> np.ndarray:
        """The command that keeps the robot where it is (what a trip sends), for a loop that has
        no fresh action for this tick. It passes `filter` untouched."""
        return self._hold_command(self._state(obs), strict=True)

    def report(self) -> str:
        """Interventions so far, one line per kind."""
        width = max(map(len, KINDS))
        return "\n".join(f"{kind:<{width}}  {self.interventions[kind]}" for kind in KINDS)

    # ---- the filter -------------------------------------------------------------------
    def filter(self, action, obs, now: float | None = None) -> np.ndarray:
        """The command to send instead of `action`, given the latest observation `obs` (the env's
        obs dict, or its `state` vector) at time `now` (default: `clock()`)."""
        a = self._as_action(action)
        state = self._state(obs)
        self.last_interventions = {}
        if self.estop_reason is not None:
            return self._hold("estop", state)
        self.tripped = self.watchdog.check(self.clock() if now is None else now)
        if self.tripped:
            if self.config.latch_watchdog:
                self.estop(f"watchdog: {', '.join(self.tripped)}")
            return self._hold("watchdog", state)
        if not np.isfinite(a).all():
            return self._hold("nan", state)

        n, dt, out = self.n_arm, self.dt, a.copy()
        hold = self._hold_command(state)
        if hold is None:  # what the command is checked against is NaN: cannot check it
            return self._hold("nan", state)
        prev = self._last if self._last is not None else hold
        arm = slice(0, n)

        self._clip(out, "action_limit", self._low, self._high)
        if self.has_gripper:
            self._clip(out, "gripper", self._gripper_low, self._gripper_high)
        if self._joint_low is not None and self.mode in JOINT_MODES:
            low, high = self._low.copy(), self._high.copy()
            if self.mode == "joint_pos":
                low[arm], high[arm] = self._joint_low, self._joint_high
            else:  # a delta may not take the measured joint further past a limit
                q = state[self._joint_idx]
                low[arm] = np.minimum(self._joint_low - q, 0.0)
                high[arm] = np.maximum(self._joint_high - q, 0.0)
            self._clip(out, "joint_limit", low, high)
        self._clip(
            out,
            "rate_limit",
            np.minimum(prev - self._max_step, hold),
            np.maximum(prev + self._max_step, hold),
        )
        # Joint modes: command = hold + velocity * dt (hold is 0 for deltas, the last target
        # for positions), so speed and acceleration limits are intervals around the hold.
        if self._vmax is not None:
            low, high = np.full(self.dim, -np.inf), np.full(self.dim, np.inf)
            low[arm], high[arm] = hold[arm] - self._vmax * dt, hold[arm] + self._vmax * dt
            self._clip(out, "velocity", low, high)
        if self._amax is not None:
            v, dv = self._velocity, self._amax * dt
            low, high = np.full(self.dim, -np.inf), np.full(self.dim, np.inf)
            low[arm] = hold[arm] + np.minimum(v - dv, 0.0) * dt
            high[arm] = hold[arm] + np.maximum(v + dv, 0.0) * dt
            self._clip(out, "acceleration", low, high)
        if self._workspace:
            low, high = np.full(self.dim, -np.inf), np.full(self.dim, np.inf)
            # Never further out: from outside the box, only moves back toward it are allowed.
            if self.mode == "ee_pos":
                low[:3] = np.minimum(self.config.workspace_low, hold[:3])
                high[:3] = np.maximum(self.config.workspace_high, hold[:3])
            else:
                ee = state[self._ee_idx]
                low[:3] = np.minimum(np.subtract(self.config.workspace_low, ee), 0.0)
                high[:3] = np.maximum(np.subtract(self.config.workspace_high, ee), 0.0)
            self._clip(out, "workspace", low, high)
        return self._sent(out, hold)

    def _clip(self, out: np.ndarray, kind: str, low: np.ndarray, high: np.ndarray) -> None:
        clipped = np.clip(out, low, high)
        if np.abs(clipped - out).max() > self.config.tolerance:
            self._count(kind)
        out[:] = clipped

    def _count(self, kind: str) -> None:
        self.interventions[kind] += 1
        self.last_interventions[kind] = self.last_interventions.get(kind, 0) + 1

    def _sent(self, out: np.ndarray, hold: np.ndarray) -> np.ndarray:
        if self.mode in JOINT_MODES:
            self._velocity = (out[: self.n_arm] - hold[: self.n_arm]) / self.dt
        self._last = out.copy()
        return out

    def _hold(self, kind: str, state: np.ndarray | None) -> np.ndarray:
        self._count(kind)
        hold = self._hold_command(state, strict=True)
        return self._sent(hold, hold)

    def _hold_command(self, state: np.ndarray | None, strict: bool = False) -> np.ndarray | None:
        """Zero deltas, or the last joint targets / end-effector position; the gripper where it
        was last commanded. Before the first command they come from the state. Returns None
        when the state the command must be checked against is not finite; with `strict` (the
        hold is about to be sent) it never does, and raises only when `joint_pos`/`ee_pos` has
        no target at all."""
        n = self.n_arm
        hold = np.zeros(self.dim)
        absolute = {"joint_pos": (self._joint_idx, n), "ee_pos": (self._ee_idx, 3)}
        if self._last is not None:
            hold[n:] = self._last[n:]
            if self.mode in absolute:
                hold[: absolute[self.mode][1]] = self._last[: absolute[self.mode][1]]
        else:
            if self.mode in absolute:
                index, k = absolute[self.mode]
                measured = _read(state, index)
                if measured is None:
                    if strict:
                        raise SafetyError(
                            f"{self.mode} cannot hold before its first command without finite "
                            f"{'joint' if k == n else 'end-effector'} positions in obs['state']"
                        )
                    return None
                hold[:k] = np.clip(measured, self._pos_low, self._pos_high)
            if self.has_gripper:
                opening = _read(state, self._opening_idx)
                # Unknown opening: open, the state every episode starts in.
                closed = 1.0 - float(opening[0]) if opening is not None else 0.0
                hold[n] = min(max(closed, self._gripper_low[n]), self._gripper_high[n])
        if strict:
            return hold
        joint_checked = self.mode == "joint_delta" and self._joint_low is not None
        if self._workspace and _read(state, self._ee_idx) is None:
            return None
        if joint_checked and _read(state, self._joint_idx) is None:
            return None
        return hold

    def _as_action(self, action) -> np.ndarray:
        try:
            a = np.array(action, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InvalidActionError(f"action is not numeric: {e}") from None
        if a.shape != (self.dim,):
            raise InvalidActionError(
                f"action has shape {a.shape}, expected ({self.dim},) for mode '{self.mode}'"
            )
        return a

    def _state(self, obs) -> np.ndarray | None:
        state = obs.get("state") if isinstance(obs, Mapping) else obs
        if state is None:
            return None
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (len(self.robot.state_names),):
            raise SafetyError(
                f"obs state has shape {state.shape}, expected ({len(self.robot.state_names)},)"
            )
        return state


class SafeEnv(gym.Wrapper):
    """Wraps a `RobotEnv`: each action goes through `Safety.filter` (with the latest observation)
    before the env sees it; `info["safety"]` holds the interventions of that step.

    With `watch_observations` (default: when the env runs in real time) every observation the
    env returns is reported to the watchdog with `clock()`; a deployment loop also reports
    inference and driver heartbeats through `env.safety.watchdog`.
    """

    def __init__(
        self,
        env: gym.Env,
        config: SafetyConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        watch_observations: bool | None = None,
    ):
        super().__init__(env)
        self.robot: RobotSpec = env.unwrapped.robot
        self.safety = Safety(self.robot, config, clock)
        if watch_observations is None:
            watch_observations = bool(getattr(env.unwrapped, "realtime", False))
        self.watch_observations = watch_observations
        self._obs = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.safety.reset()
        self._observed(obs)
        return obs, {**info, "safety": {}}

    def step(self, action):
        if self._obs is None:
            raise SafetyError("call reset() before step(): the safety layer needs an observation")
        command = self.safety.filter(action, self._obs)
        obs, reward, terminated, truncated, info = self.env.step(command)
        self._observed(obs)
        return (
            obs,
            reward,
            terminated,
            truncated,
            {**info, "safety": dict(self.safety.last_interventions)},
        )

    def _observed(self, obs) -> None:
        self._obs = obs
        if self.watch_observations:
            self.safety.watchdog.observation_received(self.safety.clock())


def safe(env: gym.Env, clock: Callable[[], float] = time.monotonic, **config) -> SafeEnv:
    """`env` behind the safety layer, with `SafetyConfig.for_robot` defaults and `config`
    overrides, e.g. `safe(env, workspace_low=(-0.3, -0.3, 0.02), max_joint_velocity=1.0)`."""
    return SafeEnv(env, SafetyConfig.for_robot(env.unwrapped.robot, **config), clock)
