"""The one environment interface: simulated tasks and ROS 2 hardware are both a `RobotEnv`.

A consumer (recorder, trainer, evaluator, deployment loop) reads `env.robot` to learn what
it is driving and never branches on which robot or backend it has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from robotrl.errors import InvalidActionError

ACTION_MODES = ("joint_pos", "joint_delta", "ee_delta", "ee_pos")
OBS_MODE_HELP = (
    "state (the robot's state and the object pose), pixels (the robot's state and cameras: "
    "what a real arm has), state+pixels (all)"
)


def action_mode_of(names) -> str | None:
    """The action mode whose `ActionSpec` names these entries (None if none does): a dataset's
    action feature carries the names, so a policy learns the mode it must be deployed in."""
    first = names[0] if names else ""
    if first == "ee.dx":
        return "ee_delta"
    if first == "ee.x":
        return "ee_pos"
    if first.endswith(".delta"):
        return "joint_delta"
    if first.endswith(".pos"):
        return "joint_pos"
    return None


@dataclass(frozen=True)
class ActionSpec:
    """What one action vector means. A gripper, when the robot has one this env commands, is
    the last entry, named `gripper`: 0 open, 1 closed. An arm without one (none fitted, or one
    on a driver this env does not drive) has only its arm entries."""

    mode: str
    names: tuple[str, ...]
    units: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def has_gripper(self) -> bool:
        return bool(self.names) and self.names[-1] == "gripper"

    @property
    def arm_dim(self) -> int:
        """How many entries command the arm (all but the gripper's)."""
        return self.dim - self.has_gripper

    def space(self) -> gym.spaces.Box:
        return gym.spaces.Box(np.array(self.low, np.float32), np.array(self.high, np.float32))


@dataclass(frozen=True)
class CameraSpec:
    name: str
    height: int
    width: int


@dataclass(frozen=True)
class RobotSpec:
    """Everything a generic consumer needs to know about the robot behind an env."""

    robot_type: str
    control_hz: float
    action: ActionSpec
    joint_names: tuple[str, ...]
    state_names: tuple[str, ...]
    environment_state_names: tuple[str, ...] = ()
    cameras: tuple[CameraSpec, ...] = field(default_factory=tuple)

    @property
    def ctrl_dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def has_gripper(self) -> bool:
        """Whether the action commands a gripper (the state then has `gripper.opening`)."""
        return self.action.has_gripper


def observation_space(robot: RobotSpec) -> gym.spaces.Dict:
    """The flat Dict space: keys are dataset feature names without the `observation.` prefix."""
    spaces: dict[str, gym.spaces.Space] = {
        "state": gym.spaces.Box(-np.inf, np.inf, (len(robot.state_names),), np.float32)
    }
    if robot.environment_state_names:
        n = len(robot.environment_state_names)
        spaces["environment_state"] = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
    for cam in robot.cameras:
        spaces[f"images.{cam.name}"] = gym.spaces.Box(0, 255, (cam.height, cam.width, 3), np.uint8)
    return gym.spaces.Dict(spaces)


class RobotEnv(gym.Env):
    """A gymnasium env whose one `step` is one control period of a robot.

    Subclasses set `self.robot` (a `RobotSpec`) before calling `_init_spaces()`, and implement
    `_reset(seed, options)` and `_step(action)`. This base validates actions and, with
    `realtime=True`, paces steps to the wall clock.
    """

    metadata = {"render_modes": ["rgb_array"]}
    robot: RobotSpec

    def __init__(self, realtime: bool = False):
        self.realtime = realtime
        self._next_tick: float | None = None

    def _init_spaces(self) -> None:
        self.action_space = self.robot.action.space()
        self.observation_space = observation_space(self.robot)
        self.metadata = {**self.metadata, "render_fps": self.robot.control_hz}

    def check_action(self, action) -> np.ndarray:
        """Return the action as float64, or raise `InvalidActionError` with one clear line."""
        a = np.asarray(action, dtype=np.float64)
        spec = self.robot.action
        if a.shape != (spec.dim,):
            raise InvalidActionError(
                f"action has shape {a.shape}, expected ({spec.dim},) for mode '{spec.mode}' "
                f"({', '.join(spec.names)})"
            )
        if not np.isfinite(a).all():
            bad = [spec.names[i] for i in np.flatnonzero(~np.isfinite(a))]
            raise InvalidActionError(f"action has NaN or inf in {', '.join(bad)}")
        return a

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._next_tick = None
        return self._reset(seed, options or {})

    def step(self, action):
        a = self.check_action(action)
        out = self._step(a)
        if self.realtime:
            self._wait_for_tick()
        return out

    def _wait_for_tick(self) -> None:
        now = time.monotonic()
        if self._next_tick is None or now - self._next_tick > self.robot.ctrl_dt:
            self._next_tick = now  # first step, or fell behind by a whole period: re-anchor
        self._next_tick += self.robot.ctrl_dt
        delay = self._next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _reset(self, seed: int | None, options: dict):
        raise NotImplementedError

    def _step(self, action: np.ndarray):
        raise NotImplementedError
