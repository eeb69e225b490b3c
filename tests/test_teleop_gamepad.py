"""Gamepad: recorded evdev event streams through a FIFO standing in for /dev/input/eventN."""

import os
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from robotrl.env import ActionSpec, RobotSpec
from robotrl.teleop import DeviceNotFoundError, Event, TeleopError, make_teleop
from robotrl.teleop.gamepad import EVENT, GamepadTeleop, find_gamepad, parse_events

DATA = Path(__file__).parent / "data" / "teleop"
HIGH = np.array([0.025, 0.025, 0.025, 0.1, 0.1, 0.1])


def robot_spec(mode="ee_delta") -> RobotSpec:
    names = ("ee.dx", "ee.dy", "ee.dz", "ee.drx", "ee.dry", "ee.drz", "gripper")
    low, high = tuple(-HIGH) + (0.0,), tuple(HIGH) + (1.0,)
    return RobotSpec("ur5e", 20.0, ActionSpec(mode, names, ("m",) * 7, low, high), (), ())


def unit(value, lo=-32768, hi=32767, deadzone=0.15):
    u = (2 * value - lo - hi) / (hi - lo)
    return np.sign(u) * max(abs(u) - deadzone, 0) / (1 - deadzone)


@pytest.fixture
def pad(tmp_path):
    path = str(tmp_path / "event7")
    os.mkfifo(path)
    with GamepadTeleop(robot_spec(), device=path) as device:
        writer = os.open(path, os.O_WRONLY)
        device.replay = lambda name: os.write(writer, (DATA / name).read_bytes())
        device.writer = writer
        yield device
        os.close(writer)


def test_event_struct_and_parser():
    assert EVENT.size == 24  # struct input_event on 64-bit Linux
    raw = (DATA / "gamepad_sticks.bin").read_bytes()
    events, tail = parse_events(raw[:-10])
    assert events[0] == (3, 1, -12000) and len(events) == len(raw) // 24 - 1
    assert tail == raw[-24:-10]


def test_sticks(pad):
    command = pad.read()
    assert not command.action.any() and not command.intervening  # centred, released
    pad.replay("gamepad_sticks.bin")
    command = pad.read()
    # left stick full up -> +x; half right -> -y; right stick full down -> -z;
    # right stick slightly right (1000) stays inside the deadzone: no yaw.
    expected = [0.025, -0.025 * unit(16384), -0.025, 0, 0, 0, 0]
    np.testing.assert_allclose(command.action, expected, rtol=1e-5, atol=1e-7)
    assert command.intervening and command.action.dtype == np.float32
    np.testing.assert_array_equal(pad.read().action, command.action)  # state is kept
    pad.replay("gamepad_centre.bin")
    command = pad.read()
    assert not command.action.any() and not command.intervening


def test_buttons(pad):
    pad.replay("gamepad_buttons.bin")
    command = pad.read()
    # A, RB (closes the gripper, no event), Y with auto-repeat (one toggle), START.
    assert command.events == (Event.SUCCESS, Event.INTERVENE, Event.START)
    assert command.action[6] == 1.0 and command.intervening
    assert pad.read().events == ()
    pad.reset()  # new episode: gripper open, intervention off
    command = pad.read()
    assert command.action[6] == 0.0 and not command.intervening


def test_trigger_dropped_events_and_select(pad):
    pad.replay("gamepad_buttons.bin")
    pad.read()
    pad.replay("gamepad_trigger_dropped_select.bin")
    command = pad.read()
    # LB opened the latch; the right trigger (700 of 1023) holds the gripper part-closed.
    assert command.action[6] == pytest.approx((700 / 1023 - 0.15) / 0.85, rel=1e-6)
    # B and the full-up stick sent after SYN_DROPPED were discarded until SYN_REPORT.
    assert command.events == (Event.FAILURE, Event.QUIT)
    assert command.action[0] == 0.0


def test_event_split_across_reads(pad):
    raw = (DATA / "gamepad_sticks.bin").read_bytes()
    os.write(pad.writer, raw[:100])
    pad.read()
    os.write(pad.writer, raw[100:])
    assert pad.read().action[0] == pytest.approx(0.025)


def test_axis_ranges_option(tmp_path):
    path = str(tmp_path / "event3")
    os.mkfifo(path)
    # A pad with 0..255 sticks centred at 128 (e.g. a PlayStation pad on hid-sony).
    ranges = {code: (0, 255) for code in (0, 1, 3, 4)}
    with GamepadTeleop(robot_spec(), device=path, axis_ranges=ranges) as pad:
        writer = os.open(path, os.O_WRONLY)
        assert not pad.read().action.any()
        os.write(writer, EVENT.pack(0, 0, 3, 3, 0) + EVENT.pack(0, 0, 0, 0, 0))
        assert pad.read().action[5] == pytest.approx(0.1)  # right stick full left: +yaw
        os.close(writer)


def _write_caps(node, key: str, abs_: str, name: str):
    caps = node / "device" / "capabilities"
    caps.mkdir(parents=True)
    (caps / "key").write_text(key + "\n")
    (caps / "abs").write_text(abs_ + "\n")
    (node / "device" / "name").write_text(name + "\n")


def test_find_gamepad_in_sysfs(tmp_path):
    sysfs = tmp_path / "input"
    # A keyboard (lots of keys, no BTN_SOUTH, no axes), a mouse, then an Xbox pad.
    _write_caps(
        sysfs / "event2",
        "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe",
        "0",
        "kbd",
    )
    _write_caps(sysfs / "event5", "1f0000 0 0 0 0", "0", "mouse")
    _write_caps(sysfs / "event11", "7cdb000000000000 0 0 0 0", "3003f", "Microsoft X-Box 360 pad")
    assert find_gamepad(str(sysfs), "/dev/input") == (
        "/dev/input/event11",
        "Microsoft X-Box 360 pad",
    )
    (sysfs / "event11" / "device" / "capabilities" / "abs").write_text("0\n")
    with pytest.raises(DeviceNotFoundError, match=r"no gamepad found under /dev/input/event\*"):
        find_gamepad(str(sysfs), "/dev/input")


def test_errors(tmp_path):
    with pytest.raises(DeviceNotFoundError, match="no gamepad at /nonexistent/event0"):
        make_teleop("gamepad", SimpleNamespace(robot=robot_spec()), device="/nonexistent/event0")
    with pytest.raises(
        TeleopError, match="produces ee_delta actions but this robot takes joint_delta"
    ):
        GamepadTeleop(robot_spec("joint_delta"), device="/nonexistent/event0")


def test_struct_matches_the_kernel_layout():
    # timeval (two longs), type, code, value, native order: as read from /dev/input/event*.
    packed = EVENT.pack(1, 2, 3, 4, -5)
    assert struct.unpack("qqHHi", packed) == (1, 2, 3, 4, -5)
