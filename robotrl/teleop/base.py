"""The one teleoperation interface every device implements, plus the helpers they share.

A device turns whatever a human (or a scripted expert) does into a `TeleopCommand` once per
control tick: an action in the env's own action space, episode events, and whether a human
is actively commanding. Devices learn everything about the robot from `env.robot`, so the
same device drives a MuJoCo task or a ROS 2 arm.
"""

from __future__ import annotations

import abc
import enum
import errno
import os
from dataclasses import dataclass

import numpy as np

from robotrl.env import RobotSpec
from robotrl.errors import RobotrlError

# The Cartesian devices write [dx, dy, dz, drx, dry, drz] (+ gripper) in the world frame.
TWIST_DIM = 6


class TeleopError(RobotrlError):
    """A teleop device cannot be used as asked (wrong action mode, bad option, bad file)."""


class DeviceNotFoundError(TeleopError, FileNotFoundError):
    """The device is absent or this user may not open it."""


class DeviceIOError(TeleopError, OSError):
    """The device was found but talking to it failed."""


class Event(enum.Enum):
    START = "start"  # begin recording / start the episode
    STOP = "stop"  # stop without a verdict
    SUCCESS = "success"  # end the episode as a success
    FAILURE = "failure"  # end the episode as a failure
    RERECORD = "rerecord"  # discard this episode and record it again
    INTERVENE = "intervene"  # the human toggled taking over from the policy
    QUIT = "quit"  # end the session


@dataclass
class TeleopCommand:
    # In the env's action space (float32, within low/high). None: the device has nothing to
    # say this tick, so the loop holds still or lets the policy act.
    action: np.ndarray | None
    events: tuple[Event, ...] = ()
    intervening: bool = False  # a human is actively commanding (HIL: overrides the policy)


class Teleop(abc.ABC):
    """Base class: checks the action mode once, offers reset/close and `with` support."""

    name: str = "teleop"
    # The action mode this device produces; None means it adapts to any mode.
    required_action_mode: str | None = None

    def __init__(self, robot: RobotSpec):
        self.robot = robot
        need, have = self.required_action_mode, robot.action.mode
        if need is not None and have != need:
            raise TeleopError(
                f"the {self.name} teleop device produces {need} actions but this robot takes "
                f"{have}: make the env with action_mode='{need}'"
            )
        if need == "ee_delta" and robot.action.dim not in (TWIST_DIM, TWIST_DIM + 1):
            raise TeleopError(
                f"the {self.name} teleop device expects an ee_delta action of 6 entries plus "
                f"an optional gripper, got {robot.action.dim} ({', '.join(robot.action.names)})"
            )
        self.closed = False

    @property
    def has_gripper(self) -> bool:
        return self.robot.action.names[-1] == "gripper"

    def reset(self) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Called at the start of each episode."""

    @abc.abstractmethod
    def read(self, obs: dict | None = None) -> TeleopCommand:
        """Non-blocking: consume what the device has sent since the last call."""

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def deadzone(values: np.ndarray, width: float) -> np.ndarray:
    """Zero inside +-width, then rescale so the output still spans [-1, 1] continuously."""
    v = np.clip(np.asarray(values, dtype=np.float64), -1.0, 1.0)
    return np.sign(v) * np.maximum(np.abs(v) - width, 0.0) / (1.0 - width)


def twist_action(robot: RobotSpec, unit_twist, gripper: float, speed: float = 1.0) -> np.ndarray:
    """An ee_delta action from a twist in [-1, 1] per axis (fractions of the action limits).

    Positive fractions scale `high` and negative ones `low`, so asymmetric limits are kept.
    """
    spec = robot.action
    u = np.clip(np.asarray(unit_twist, dtype=np.float64), -1.0, 1.0) * speed
    low = np.asarray(spec.low[:TWIST_DIM], dtype=np.float64)
    high = np.asarray(spec.high[:TWIST_DIM], dtype=np.float64)
    arm = np.where(u >= 0, u * high, -u * low)
    if spec.dim > TWIST_DIM:
        arm = np.append(arm, gripper)
    return np.clip(arm, spec.low, spec.high).astype(np.float32)


def open_device(path: str, what: str, hint: str) -> int:
    """Open a /dev node non-blocking for reading, or raise a one-line error saying why not."""
    if os.path.isdir(path):
        raise DeviceNotFoundError(f"the {what} path {path} is a directory: {hint}")
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise DeviceNotFoundError(f"no {what} at {path}: {hint}") from None
    except PermissionError:
        raise DeviceNotFoundError(
            f"no permission to read {what} at {path}: add a udev rule giving your user read "
            f"access (or add yourself to the 'input' group), then replug"
        ) from None
    except OSError as e:
        raise DeviceIOError(f"cannot open {what} at {path}: {e.strerror}") from None


def read_available(fd: int, chunk: int = 4096, max_chunks: int = 256) -> list[bytes]:
    """The chunks the fd has ready now, without blocking. One chunk per read(2), which for
    hidraw and evdev nodes is one whole report or a whole number of events. Capped, so a
    device that never runs dry cannot hold up the control loop."""
    chunks = []
    for _ in range(max_chunks):
        try:
            data = os.read(fd, chunk)
        except BlockingIOError:
            break
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise DeviceIOError("the teleop device was unplugged") from None
            raise DeviceIOError(f"reading the teleop device failed: {e.strerror}") from None
        if not data:  # writer closed (a FIFO standing in for a device): nothing more now
            break
        chunks.append(data)
    return chunks
