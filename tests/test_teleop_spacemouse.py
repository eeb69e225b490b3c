"""SpaceMouse: recorded HID reports through a FIFO standing in for /dev/hidrawN."""

import os
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from robotrl.env import ActionSpec, RobotSpec
from robotrl.teleop import DeviceNotFoundError, Event, make_teleop
from robotrl.teleop.spacemouse import (
    SpaceMouseTeleop,
    find_spacemouse,
    parse_report,
    split_reports,
)

DATA = Path(__file__).parent / "data" / "teleop"
HIGH = np.array([0.025, 0.025, 0.025, 0.1, 0.1, 0.1])


def robot_spec(gripper=True) -> RobotSpec:
    names = ("ee.dx", "ee.dy", "ee.dz", "ee.drx", "ee.dry", "ee.drz") + (("gripper",) * gripper)
    n = len(names)
    low = tuple(-HIGH) + (0.0,) * gripper
    high = tuple(HIGH) + (1.0,) * gripper
    return RobotSpec("panda", 20.0, ActionSpec("ee_delta", names, ("m",) * n, low, high), (), ())


def scaled(raw: float, deadzone: float = 0.1) -> float:
    """What the device should make of one raw axis value, as a fraction of the limit."""
    u = raw / 350
    return np.sign(u) * max(abs(u) - deadzone, 0) / (1 - deadzone)


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "hidraw0")
    os.mkfifo(path)
    return path


class Writer:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY)  # a reader holds it open, so this does not block

    def replay(self, name: str) -> None:
        os.write(self.fd, (DATA / name).read_bytes())

    def close(self):
        os.close(self.fd)


def test_parse_report_formats():
    assert parse_report(b"\x01" + struct.pack("<3h", 1, -2, 350)).translation == (1, -2, 350)
    r = parse_report(b"\x02" + struct.pack("<3h", -350, 0, 7))
    assert r.rotation == (-350, 0, 7) and r.translation is None
    r = parse_report(b"\x01" + struct.pack("<6h", 1, 2, 3, 4, 5, 6))
    assert (r.translation, r.rotation) == ((1, 2, 3), (4, 5, 6))
    assert parse_report(b"\x03\x02\x00").buttons == 2
    assert parse_report(b"\x17\x64") is None  # battery level: not ours
    reports, tail = split_reports(b"\x01" + bytes(12) + b"\x03\x01\x00\x02\x00", combined=True)
    assert [r[0] for r in reports] == [1, 3] and tail == b"\x02\x00"


def test_recorded_gestures_through_a_fifo(fifo):
    with SpaceMouseTeleop(robot_spec(), device=fifo) as mouse:
        writer = Writer(fifo)
        command = mouse.read()  # nothing yet
        assert not command.action.any() and not command.intervening

        writer.replay("spacemouse_push_forward.bin")
        command = mouse.read()
        # Pushed fully forward (device -y) -> world +x at the limit; the noise is deadzoned.
        np.testing.assert_allclose(command.action, [0.025, 0, 0, 0, 0, 0, 0], atol=1e-7)
        assert command.intervening and command.action.dtype == np.float32
        assert mouse.read().action[0] == pytest.approx(0.025)  # state holds between reports

        writer.replay("spacemouse_release.bin")
        command = mouse.read()
        assert not command.action.any() and not command.intervening

        writer.replay("spacemouse_tilt_back_push_down.bin")
        action = mouse.read().action
        # +rx (about device x = right, with z down) tips the cap's top toward the operator:
        # a rotation about world -y. Pushing down (+z device) -> world -z.
        expected = [0, 0, -0.025 * scaled(200), 0, -0.1, 0, 0]
        np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-7)

        writer.replay("spacemouse_release.bin")
        writer.replay("spacemouse_buttons.bin")
        command = mouse.read()
        # Left press (close), release, right press (SUCCESS), release, left press (open).
        assert command.events == (Event.SUCCESS,)
        assert command.action[6] == 0.0
        writer.replay("spacemouse_buttons.bin")  # starts with left still held: no toggle there,
        command = mouse.read()  # only at the press after the release: closed
        assert command.events == (Event.SUCCESS,) and command.action[6] == 1.0
        mouse.reset()
        assert mouse.read().action[6] == 0.0
        writer.close()


def test_combined_six_axis_reports(fifo):
    with make_teleop(
        "spacemouse", SimpleNamespace(robot=robot_spec()), device=fifo, combined=True
    ) as mouse:
        writer = Writer(fifo)
        writer.replay("spacemouse_compact_twist.bin")
        action = mouse.read().action
        # Counter-clockwise from above (device -rz, z points down) -> world +yaw.
        np.testing.assert_allclose(action, [0, 0, 0, 0, 0, 0.1 * scaled(300), 0], rtol=1e-5)
        writer.close()


def test_report_split_across_reads(fifo):
    data = (DATA / "spacemouse_push_forward.bin").read_bytes()
    with SpaceMouseTeleop(robot_spec(gripper=False), device=fifo) as mouse:
        writer = Writer(fifo)
        os.write(writer.fd, data[:-5])
        mouse.read()
        os.write(writer.fd, data[-5:])
        action = mouse.read().action
        assert action.shape == (6,) and action[0] == pytest.approx(0.025)
        writer.close()


def test_find_spacemouse_in_sysfs(tmp_path):
    sysfs = tmp_path / "sys"
    for node, hid_id in (
        ("hidraw0", "0003:0000046D:0000C31C"),
        ("hidraw2", "0003:0000256F:0000C635"),
    ):
        (sysfs / node / "device").mkdir(parents=True)
        (sysfs / node / "device" / "uevent").write_text(
            f"DRIVER=hid-generic\nHID_ID={hid_id}\nHID_NAME=some device\n"
        )
    assert find_spacemouse(str(sysfs), "/dev") == ("/dev/hidraw2", "SpaceMouse Compact")
    (sysfs / "hidraw2" / "device" / "uevent").write_text("HID_ID=0003:0000046D:0000C31C\n")
    with pytest.raises(DeviceNotFoundError, match=r"no SpaceMouse found under /dev/hidraw\*"):
        find_spacemouse(str(sysfs), "/dev")


def test_missing_and_forbidden_device(tmp_path):
    with pytest.raises(DeviceNotFoundError, match="no SpaceMouse at /nonexistent/hidraw9"):
        SpaceMouseTeleop(robot_spec(), device="/nonexistent/hidraw9")
    if os.geteuid() != 0:  # root may open anything
        locked = tmp_path / "hidraw1"
        locked.write_bytes(b"")
        locked.chmod(0)
        with pytest.raises(DeviceNotFoundError, match="no permission .* udev rule"):
            SpaceMouseTeleop(robot_spec(), device=str(locked))
