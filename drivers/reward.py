"""Where a ROS env's reward and success come from. Pluggable: `RosEnv(reward=...)` takes a name
or any object with `reset()`, `read(obs) -> (reward, success, failure)` and `close()`.

- `sim`: the sim robot node's task state topic (the task's own reward and success);
- `keyboard`: a success key in the terminal (Enter: success, n: failure), reward 1 on success;
- `topic`: `std_msgs/Bool` on `/robotrl/success` (the teleop node publishes its SUCCESS
  event there, so the key can be on another machine);
- `none`: never succeeds (the episode ends at its step limit);
- `classifier:DIR`: a learned success classifier on the observation (`robotrl hil classifier`).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty

from robotrl.errors import UnknownNameError

SUCCESS_TOPIC = "/robotrl/success"


class NoReward:
    def reset(self) -> None:
        pass

    def read(self, obs) -> tuple[float, bool, bool]:
        return 0.0, False, False

    def close(self) -> None:
        pass


class SimTaskReward(NoReward):
    """Reads the last two entries of the sim node's task state (reward, is_success)."""

    def __init__(self, io):
        self.io = io

    def read(self, obs):
        task = self.io.task
        if task is None:
            return 0.0, False, False
        values = task.value[1]
        return float(values[-2]), bool(values[-1] > 0.5), False


class KeyboardReward(NoReward):
    """Enter marks success, n failure. Without a terminal on stdin it never fires."""

    def __init__(self, fd: int | None = None):
        if fd is None:
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError):  # no stdin, or not a real file
                fd = -1
        self.fd = fd
        self._saved = None
        if fd >= 0 and os.isatty(fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        self._success = self._failure = False

    def reset(self) -> None:
        self._success = self._failure = False

    def read(self, obs):
        if self._saved is not None:
            while select.select([self.fd], [], [], 0)[0]:
                key = os.read(self.fd, 64)
                self._success |= b"\n" in key or b"\r" in key
                self._failure |= b"n" in key
        return float(self._success), self._success, self._failure

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


class TopicReward(NoReward):
    def __init__(self, io, topic: str = SUCCESS_TOPIC):
        from std_msgs.msg import Bool

        self._success = False
        io.ros.node.create_subscription(Bool, topic, self._on_success, 10)

    def _on_success(self, msg) -> None:
        self._success |= bool(msg.data)

    def reset(self) -> None:
        self._success = False

    def read(self, obs):
        return float(self._success), self._success, False


def make_reward(name, io):
    if not isinstance(name, str):
        return name
    if name == "sim":
        return SimTaskReward(io)
    if name == "keyboard":
        return KeyboardReward()
    if name == "topic":
        return TopicReward(io)
    if name == "none":
        return NoReward()
    if name.startswith("classifier:"):
        from robotrl.rl.classifier import ClassifierReward

        return ClassifierReward(name.removeprefix("classifier:"))
    raise UnknownNameError(
        f"unknown reward source '{name}': choose sim, keyboard, topic, none, classifier:DIR"
    )
