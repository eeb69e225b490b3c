"""Gamepad over Linux evdev (/dev/input/eventN): no SDL, no display, any xpad/hid gamepad.

Events are `struct input_event` (timeval as two longs, then u16 type, u16 code, s32 value:
24 bytes on 64-bit Linux). Axis and button state is kept between reads, since evdev only
reports changes. The operator is taken to stand behind the robot facing world +x; stick up
reads negative on evdev, hence the signs.

    left stick up / down        +x / -x
    left stick left / right     +y / -y
    right stick up / down       +z / -z
    right stick left / right    yaw + / -  (counter-clockwise / clockwise from above)
    RB (BTN_TR) / LB (BTN_TL)   close / open the gripper (latched)
    right trigger               closes the gripper in proportion while held
    A (BTN_SOUTH)  SUCCESS          B (BTN_EAST)  RERECORD
    X (BTN_X)      FAILURE          Y (BTN_Y)     toggle INTERVENE
    START          START            SELECT/BACK   QUIT

Roll and pitch stay zero (top-down 4-DoF control). `intervening` is true while the
INTERVENE toggle is on or a stick is out of its deadzone.

Axis ranges default to an Xbox pad on xpad (sticks -32768..32767, triggers 0..1023); on a
real event device they are read from the kernel (EVIOCGABS), and `axis_ranges` overrides.
"""

from __future__ import annotations

import fcntl
import glob
import os
import stat
import struct

import numpy as np

from robotrl.env import RobotSpec
from robotrl.teleop.base import (
    DeviceNotFoundError,
    Event,
    Teleop,
    TeleopCommand,
    deadzone,
    open_device,
    read_available,
    twist_action,
)

EVENT = struct.Struct("llHHi")  # native: 24 bytes on 64-bit Linux
EV_SYN, EV_KEY, EV_ABS = 0, 1, 3
SYN_REPORT, SYN_DROPPED = 0, 3
ABS_X, ABS_Y, ABS_Z, ABS_RX, ABS_RY, ABS_RZ = range(6)
# xpad emits the Xbox X button as BTN_X (= BTN_NORTH) and Y as BTN_Y (= BTN_WEST), so the
# labels are kept here; pads mapped by position (PlayStation) get triangle -> FAILURE.
BTN_SOUTH, BTN_EAST, BTN_X, BTN_Y = 0x130, 0x131, 0x133, 0x134
BTN_TL, BTN_TR, BTN_SELECT, BTN_START = 0x136, 0x137, 0x13A, 0x13B

STICK = (-32768, 32767)
TRIGGER = (0, 1023)
DEFAULT_RANGES = {ABS_X: STICK, ABS_Y: STICK, ABS_RX: STICK, ABS_RY: STICK}
DEFAULT_RANGES |= {ABS_Z: TRIGGER, ABS_RZ: TRIGGER}
TRIGGERS = (ABS_Z, ABS_RZ)

BUTTON_EVENTS = {
    BTN_SOUTH: Event.SUCCESS,  # A
    BTN_EAST: Event.RERECORD,  # B
    BTN_X: Event.FAILURE,
    BTN_Y: Event.INTERVENE,
    BTN_START: Event.START,
    BTN_SELECT: Event.QUIT,
}
NOT_FOUND_HINT = "plug it in or pass --device PATH; you may need to be in the 'input' group"


def parse_events(stream: bytes) -> tuple[list[tuple[int, int, int]], bytes]:
    """(type, code, value) for each whole event in the stream, and the partial tail."""
    whole = len(stream) - len(stream) % EVENT.size
    events = [(t, c, v) for _, _, t, c, v in EVENT.iter_unpack(stream[:whole])]
    return events, stream[whole:]


def eviocgabs(axis: int) -> int:
    """_IOR('E', 0x40 + axis, struct input_absinfo): six s32 = 24 bytes."""
    return (2 << 30) | (24 << 16) | (ord("E") << 8) | (0x40 + axis)


def find_gamepad(sysfs: str = "/sys/class/input", dev: str = "/dev/input") -> tuple[str, str]:
    """(event device path, name) of the first device with gamepad buttons and a stick."""
    for node in sorted(glob.glob(os.path.join(sysfs, "event*")), key=_event_number):
        caps = os.path.join(node, "device", "capabilities")
        if _has_bit(os.path.join(caps, "key"), BTN_SOUTH) and _has_bit(
            os.path.join(caps, "abs"), ABS_X
        ):
            try:
                with open(os.path.join(node, "device", "name")) as f:
                    name = f.read().strip()
            except OSError:
                name = "gamepad"
            return os.path.join(dev, os.path.basename(node)), name
    raise DeviceNotFoundError(f"no gamepad found under {dev}/event*: {NOT_FOUND_HINT}")


def _event_number(path: str) -> int:
    digits = os.path.basename(path).removeprefix("event")
    return int(digits) if digits.isdigit() else 1 << 30


def _has_bit(bitmap_path: str, bit: int) -> bool:
    """sysfs capability bitmaps are hex longs, most significant first, space separated."""
    try:
        with open(bitmap_path) as f:
            words = f.read().split()
    except OSError:
        return False
    value = 0
    for word in words:
        value = (value << 64) | int(word, 16)
    return bool(value >> bit & 1)


class GamepadTeleop(Teleop):
    """ee_delta teleop from a gamepad. `device` is an evdev path; default: search sysfs."""

    name = "gamepad"
    required_action_mode = "ee_delta"

    def __init__(
        self,
        robot: RobotSpec,
        device: str | None = None,
        speed: float = 1.0,
        deadzone: float = 0.15,
        axis_ranges: dict[int, tuple[int, int]] | None = None,
    ):
        super().__init__(robot)
        self.path = device or find_gamepad()[0]
        self.speed, self.deadzone = speed, deadzone
        self._fd = open_device(self.path, "gamepad", NOT_FOUND_HINT)
        self.ranges = dict(DEFAULT_RANGES)
        if stat.S_ISCHR(os.fstat(self._fd).st_mode):
            self.ranges |= self._kernel_ranges()
        self.ranges |= axis_ranges or {}
        self._tail = b""
        self._dropped = False
        # Sticks start centred and triggers released until the first event says otherwise.
        self.axes = {code: (lo + hi) / 2 for code, (lo, hi) in self.ranges.items()}
        self.axes |= {code: self.ranges[code][0] for code in TRIGGERS}
        self.reset()

    def reset(self) -> None:
        self.gripper_latched = 0.0
        self.intervene = False

    def read(self, obs: dict | None = None) -> TeleopCommand:
        events, self._tail = parse_events(self._tail + b"".join(read_available(self._fd)))
        out: list[Event] = []
        for type_, code, value in events:
            if type_ == EV_SYN:
                # After SYN_DROPPED the kernel lost events: ignore up to the next report.
                self._dropped = code == SYN_DROPPED or (self._dropped and code != SYN_REPORT)
            elif self._dropped:
                continue
            elif type_ == EV_ABS and code in self.ranges:
                self.axes[code] = value
            elif type_ == EV_KEY and value == 1:  # 1 press, 0 release, 2 auto-repeat
                if code == BTN_TR:
                    self.gripper_latched = 1.0
                elif code == BTN_TL:
                    self.gripper_latched = 0.0
                elif code in BUTTON_EVENTS:
                    if BUTTON_EVENTS[code] is Event.INTERVENE:
                        self.intervene = not self.intervene
                    out.append(BUTTON_EVENTS[code])
        lx, ly, rx, ry = (self._stick(c) for c in (ABS_X, ABS_Y, ABS_RX, ABS_RY))
        twist = np.array([-ly, -lx, -ry, 0.0, 0.0, -rx])
        gripper = max(self.gripper_latched, self._trigger(ABS_RZ))
        action = twist_action(self.robot, twist, gripper, self.speed)
        moving = bool(np.any(twist != 0))
        return TeleopCommand(action, tuple(out), intervening=self.intervene or moving)

    def _stick(self, code: int) -> float:
        lo, hi = self.ranges[code]
        unit = (2.0 * self.axes[code] - lo - hi) / (hi - lo)  # -1 .. 1
        return float(deadzone(unit, self.deadzone))

    def _trigger(self, code: int) -> float:
        lo, hi = self.ranges[code]
        unit = np.clip((self.axes[code] - lo) / (hi - lo), 0.0, 1.0)
        return float(deadzone(unit, self.deadzone))

    def _kernel_ranges(self) -> dict[int, tuple[int, int]]:
        ranges = {}
        for code in self.ranges:
            buf = bytearray(24)
            try:
                fcntl.ioctl(self._fd, eviocgabs(code), buf)
            except OSError:
                continue  # the pad lacks this axis: keep the default
            _, lo, hi = struct.unpack_from("3i", buf)
            if hi > lo:
                ranges[code] = (lo, hi)
        return ranges

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.close(self._fd)
