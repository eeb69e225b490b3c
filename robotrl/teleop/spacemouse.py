"""3Dconnexion SpaceMouse over Linux hidraw: raw HID input reports, no driver or daemon.

Reports (first byte is the report id, values int16 little-endian, about +-350 full scale):
    1: translation x, y, z (6 bytes); newer devices (SpaceMouse Compact, Wireless, Pro
       Wireless, Enterprise, Universal Receiver) send x, y, z, rx, ry, rz in one 12-byte report
    2: rotation rx, ry, rz (6 bytes; older devices only)
    3: buttons, a little-endian bitmask (bit 0 left, bit 1 right)

The device frame is x right, y toward the operator, z down, and rotations are about those
axes (right-handed). The operator is taken to stand behind the robot facing world +x, so:
    push the cap forward -> +x,  push left -> +y,  lift up -> +z
    tilt forward / left -> rotation about world +y / -x,  twist counter-clockwise -> +yaw
i.e. world = R @ device with R = [[0, -1, 0], [-1, 0, 0], [0, 0, -1]], for both translation
and rotation vectors. Left button toggles the gripper, right button sends SUCCESS.
`intervening` is true while the cap is deflected (the human is touching it).

A read(2) of /dev/hidrawN returns exactly one report. A FIFO or a file (e.g. a recording
made with `cat /dev/hidraw3 > gesture.bin`) is a byte stream instead, so it is split into
reports by their known sizes; pass `combined=True` when it holds 12-byte report 1s.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass

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

FULL_SCALE = 350.0
DEVICE_TO_WORLD = np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1]], dtype=np.float64)
STREAM_BUTTON_BYTES = 2  # report 3 payload size assumed when splitting a byte stream

# (vendor id, product id) -> name; all 3Dconnexion 6-DoF devices.
KNOWN_DEVICES = {
    (0x046D, 0xC603): "SpaceMouse Plus XT",
    (0x046D, 0xC605): "CADman",
    (0x046D, 0xC606): "SpaceMouse Classic",
    (0x046D, 0xC621): "SpaceBall 5000",
    (0x046D, 0xC623): "SpaceTraveler",
    (0x046D, 0xC625): "SpacePilot",
    (0x046D, 0xC626): "SpaceNavigator",
    (0x046D, 0xC627): "SpaceExplorer",
    (0x046D, 0xC628): "SpaceNavigator for Notebooks",
    (0x046D, 0xC629): "SpacePilot Pro",
    (0x046D, 0xC62B): "SpaceMouse Pro",
    (0x256F, 0xC62E): "SpaceMouse Wireless (cable)",
    (0x256F, 0xC62F): "SpaceMouse Wireless (receiver)",
    (0x256F, 0xC631): "SpaceMouse Pro Wireless (cable)",
    (0x256F, 0xC632): "SpaceMouse Pro Wireless (receiver)",
    (0x256F, 0xC633): "SpaceMouse Enterprise",
    (0x256F, 0xC635): "SpaceMouse Compact",
    (0x256F, 0xC636): "SpaceMouse Module",
    (0x256F, 0xC652): "3Dconnexion Universal Receiver",
}
NOT_FOUND_HINT = (
    "plug it in or pass --device PATH; on Linux you may need a udev rule for read access"
)


@dataclass
class Report:
    translation: tuple[int, int, int] | None = None  # raw device-frame counts
    rotation: tuple[int, int, int] | None = None
    buttons: int | None = None


def parse_report(report: bytes) -> Report | None:
    """One HID input report (report id first); None for ids this device does not use."""
    if len(report) < 2:
        return None
    rid, payload = report[0], report[1:]
    if rid in (1, 2) and len(payload) >= 6:
        n = 6 if len(payload) >= 12 and rid == 1 else 3
        axes = np.frombuffer(payload[: 2 * n], dtype="<i2").tolist()
        if rid == 2:
            return Report(rotation=tuple(axes))
        return Report(translation=tuple(axes[:3]), rotation=tuple(axes[3:]) or None)
    if rid == 3:
        return Report(buttons=int.from_bytes(payload, "little"))
    return None


def split_reports(stream: bytes, combined: bool) -> tuple[list[bytes], bytes]:
    """Cut a byte stream of concatenated reports into reports; return them and a partial
    tail. An unknown report id cannot be framed, so the rest of the stream is dropped."""
    sizes = {1: 13 if combined else 7, 2: 7, 3: 1 + STREAM_BUTTON_BYTES}
    reports, i = [], 0
    while i < len(stream):
        size = sizes.get(stream[i])
        if size is None:
            return reports, b""
        if i + size > len(stream):
            break
        reports.append(stream[i : i + size])
        i += size
    return reports, stream[i:]


def find_spacemouse(sysfs: str = "/sys/class/hidraw", dev: str = "/dev") -> tuple[str, str]:
    """(device path, product name) of the first 3Dconnexion 6-DoF device found."""
    for node in sorted(glob.glob(os.path.join(sysfs, "hidraw*"))):
        ids = hid_ids(os.path.join(node, "device", "uevent"))
        if ids in KNOWN_DEVICES:
            return os.path.join(dev, os.path.basename(node)), KNOWN_DEVICES[ids]
    raise DeviceNotFoundError(f"no SpaceMouse found under {dev}/hidraw*: {NOT_FOUND_HINT}")


def hid_ids(uevent_path: str) -> tuple[int, int] | None:
    """(vendor, product) from a hid uevent file's `HID_ID=bus:vendor:product` line."""
    try:
        with open(uevent_path) as f:
            for line in f:
                if line.startswith("HID_ID="):
                    _, vendor, product = line.strip().split("=", 1)[1].split(":")
                    return int(vendor, 16), int(product, 16)
    except (OSError, ValueError):
        pass
    return None


class SpaceMouseTeleop(Teleop):
    """ee_delta teleop from a SpaceMouse. `device` is a hidraw path; default: search sysfs."""

    name = "spacemouse"
    required_action_mode = "ee_delta"

    def __init__(
        self,
        robot: RobotSpec,
        device: str | None = None,
        speed: float = 1.0,
        deadzone: float = 0.1,
        combined: bool = False,
    ):
        super().__init__(robot)
        self.path = device or find_spacemouse()[0]
        self.speed, self.deadzone, self.combined = speed, deadzone, combined
        self._fd = open_device(self.path, "SpaceMouse", NOT_FOUND_HINT)
        # A character device delivers one report per read; anything else is a byte stream.
        self._stream = not stat.S_ISCHR(os.fstat(self._fd).st_mode)
        self._tail = b""
        self.translation = np.zeros(3)
        self.rotation = np.zeros(3)
        self.buttons = 0
        self.reset()

    def reset(self) -> None:
        self.gripper = 0.0

    def read(self, obs: dict | None = None) -> TeleopCommand:
        chunks = read_available(self._fd)
        if self._stream:
            reports, self._tail = split_reports(self._tail + b"".join(chunks), self.combined)
        else:
            reports = chunks
        events: list[Event] = []
        for raw in reports:
            report = parse_report(raw)
            if report is None:
                continue
            if report.translation is not None:
                self.translation = np.array(report.translation, dtype=np.float64)
            if report.rotation is not None:
                self.rotation = np.array(report.rotation, dtype=np.float64)
            if report.buttons is not None:
                pressed = report.buttons & ~self.buttons  # act on press, not on release
                self.buttons = report.buttons
                if pressed & 1:
                    self.gripper = 1.0 - self.gripper
                if pressed & 2:
                    events.append(Event.SUCCESS)
        device_twist = deadzone(
            np.concatenate([self.translation, self.rotation]) / FULL_SCALE, self.deadzone
        )
        twist = np.concatenate(
            [DEVICE_TO_WORLD @ device_twist[:3], DEVICE_TO_WORLD @ device_twist[3:]]
        )
        action = twist_action(self.robot, twist, self.gripper, self.speed)
        return TeleopCommand(action, tuple(events), intervening=bool(np.any(twist != 0)))

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.close(self._fd)
