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

import time
from collections import Counter
from collections.abc import Callable, Mapping

import gymnasium as gym
import numpy as np

from robotrl.control.safety_config import (
    EE_MODES,
    JOINT_MODES,
    KINDS,
    SafetyConfig,
    SafetyError,
    _has_gripper,
    _indices,
    _read,
)
from robotrl.control.watchdog import Watchdog
from robotrl.env import RobotSpec
from robotrl.errors import InvalidActionError


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
