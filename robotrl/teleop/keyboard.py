"""Keyboard teleop in a plain terminal: no display, no X server, works over ssh.

The terminal (stdin, or a tty path / fd you pass) is put in cbreak mode without signals, so
each key arrives as bytes at once and Ctrl-C arrives as a byte too (it quits cleanly and the
terminal is restored). The previous mode is restored by `close()`, by leaving a `with`
block (also on exceptions), and at interpreter exit.

A terminal reports key presses, not holds: holding a key gives one press, a pause, then
auto-repeat. So each press moves the arm for a short window (`hold_s`, 0.15 s) at a fixed
fraction (`speed`) of the action limits; auto-repeat keeps extending the window while held.
The operator is taken to stand behind the robot facing world +x.

    w / s, Up / Down      +x / -x  (forward / back)
    a / d, Left / Right   +y / -y  (left / right)
    r / f                 +z / -z  (up / down)
    q / e                 yaw + / -  (counter-clockwise / clockwise seen from above)
    space                 toggle gripper (open <-> closed)
    Enter                 SUCCESS: end the episode as a success
    Backspace / x         RERECORD: discard the episode and record it again
    n                     FAILURE: end the episode as a failure
    g                     START
    p / Tab               toggle INTERVENE (take over from the policy / hand back)
    Esc / Ctrl-C          QUIT
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import sys
import termios
import time
from collections.abc import Callable

import numpy as np

from robotrl.env import RobotSpec
from robotrl.teleop.base import TWIST_DIM, DeviceIOError, Event, Teleop, TeleopCommand, twist_action

HELP = """\
keyboard teleop (operator behind the robot, facing +x)
  w/s or Up/Down: +x/-x   a/d or Left/Right: +y/-y   r/f: +z/-z   q/e: yaw +/-
  space: toggle gripper   Enter: success   Backspace/x: re-record   n: failure
  g: start   p/Tab: toggle intervene   Esc/Ctrl-C: quit"""

# key -> (twist axis, direction)
MOTION_KEYS: dict[str, tuple[int, int]] = {
    "w": (0, +1),
    "s": (0, -1),
    "up": (0, +1),
    "down": (0, -1),
    "a": (1, +1),
    "d": (1, -1),
    "left": (1, +1),
    "right": (1, -1),
    "r": (2, +1),
    "f": (2, -1),
    "q": (5, +1),
    "e": (5, -1),
}
EVENT_KEYS: dict[str, Event] = {
    "enter": Event.SUCCESS,
    "backspace": Event.RERECORD,
    "x": Event.RERECORD,
    "n": Event.FAILURE,
    "g": Event.START,
    "p": Event.INTERVENE,
    "tab": Event.INTERVENE,
    "esc": Event.QUIT,
    "ctrl-c": Event.QUIT,
}
SINGLE_BYTE_KEYS = {
    0x20: "space",
    0x0D: "enter",
    0x0A: "enter",  # ICRNL turns Enter's CR into NL
    0x7F: "backspace",
    0x08: "backspace",
    0x09: "tab",
    0x03: "ctrl-c",
}
ARROWS = {ord("A"): "up", ord("B"): "down", ord("C"): "right", ord("D"): "left"}
ESC = 0x1B


def parse_keys(data: bytes) -> tuple[list[str], bytes]:
    """Split terminal input into key names; return them and an unfinished escape sequence.

    Letters are lower-cased (caps lock). Arrows come as CSI `ESC [ A` or SS3 `ESC O A`;
    other escape sequences (function keys, Home, ...) are skipped whole. A lone ESC at the
    end of the data is the Esc key: terminals send a whole sequence in one write.
    """
    keys: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == ESC:
            if i + 1 == n:
                keys.append("esc")
                i += 1
                continue
            kind = data[i + 1]
            if kind == ord("O"):  # SS3: exactly one final byte
                if i + 2 == n:
                    return keys, data[i:]
                if data[i + 2] in ARROWS:
                    keys.append(ARROWS[data[i + 2]])
                i += 3
                continue
            if kind == ord("["):  # CSI: parameter/intermediate bytes, then a final byte
                j = i + 2
                while j < n and 0x20 <= data[j] <= 0x3F:
                    j += 1
                if j == n:
                    return keys, data[i:]
                if j == i + 2 and data[j] in ARROWS:
                    keys.append(ARROWS[data[j]])
                i = j + 1
                continue
            keys.append("esc")  # Esc, then an ordinary key typed right after it
            i += 1
            continue
        if b in SINGLE_BYTE_KEYS:
            keys.append(SINGLE_BYTE_KEYS[b])
        elif 0x21 <= b <= 0x7E:
            keys.append(chr(b).lower())
        i += 1  # other control bytes and non-ASCII bytes mean nothing here
    return keys, b""


class KeyboardTeleop(Teleop):
    """ee_delta teleop from a terminal. `tty` is a path (e.g. `/dev/pts/3`) or an open fd;
    default stdin."""

    name = "keyboard"
    required_action_mode = "ee_delta"

    def __init__(
        self,
        robot: RobotSpec,
        tty: str | int | None = None,
        speed: float = 0.5,
        hold_s: float = 0.15,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(robot)
        self.speed, self.hold_s, self.clock = speed, hold_s, clock
        self._owns_fd = isinstance(tty, str)
        if isinstance(tty, str):
            try:
                fd = os.open(tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError as e:
                raise DeviceIOError(f"cannot open terminal {tty}: {e.strerror}") from None
        else:
            fd = sys.stdin.fileno() if tty is None else tty
        if not os.isatty(fd):
            if self._owns_fd:
                os.close(fd)
            raise DeviceIOError(
                "keyboard teleop needs a terminal, but its input is not a tty: run it in a "
                "terminal, or pass tty=/dev/pts/N"
            )
        self._fd = fd
        self._saved_mode = termios.tcgetattr(fd)
        tty_mode = termios.tcgetattr(fd)
        tty_mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG)  # lflags
        tty_mode[6][termios.VMIN], tty_mode[6][termios.VTIME] = 0, 0
        termios.tcsetattr(fd, termios.TCSANOW, tty_mode)
        atexit.register(self.close)  # a crash outside `with` must not leave the tty raw
        self._pending = b""
        self.reset()

    def reset(self) -> None:
        self._until = np.full((TWIST_DIM, 2), -np.inf)  # per axis, per direction: active until
        self.gripper = 0.0
        self.intervene = False

    def read(self, obs: dict | None = None) -> TeleopCommand:
        data = self._pending + self._read_bytes()
        keys, self._pending = parse_keys(data)
        now = self.clock()
        events: list[Event] = []
        for key in keys:
            if key in MOTION_KEYS:
                axis, sign = MOTION_KEYS[key]
                self._until[axis, int(sign > 0)] = now + self.hold_s
            elif key == "space":
                self.gripper = 1.0 - self.gripper
            elif key in EVENT_KEYS:
                event = EVENT_KEYS[key]
                if event is Event.INTERVENE:
                    self.intervene = not self.intervene
                events.append(event)
        active = self._until > now
        twist = active[:, 1].astype(float) - active[:, 0]
        action = twist_action(self.robot, twist, self.gripper, self.speed)
        moving = bool(active.any())
        return TeleopCommand(action, tuple(events), intervening=self.intervene or moving)

    def _read_bytes(self) -> bytes:
        data = b""
        while select.select([self._fd], [], [], 0)[0]:
            try:
                chunk = os.read(self._fd, 1024)
            except BlockingIOError:
                break
            except OSError as e:  # EIO: the terminal went away
                raise DeviceIOError(f"reading the terminal failed: {e.strerror}") from None
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        atexit.unregister(self.close)
        with contextlib.suppress(termios.error):  # a terminal already gone needs no restore
            termios.tcsetattr(self._fd, termios.TCSANOW, self._saved_mode)
        if self._owns_fd:
            os.close(self._fd)
