"""Leader arm: dynamixel_sdk talking protocol 2.0 over a pty to a simulated servo bus."""

import math
import os
import pty
import time
import tty
from types import SimpleNamespace

import numpy as np
import pytest

from robotrl.env import ActionSpec, RobotSpec
from robotrl.teleop import DeviceIOError, DeviceNotFoundError, TeleopError, make_teleop
from robotrl.teleop.leader_arm import DynamixelBus, LeaderArmTeleop, record_calibration
from robotrl.teleop.leader_calibration import (
    Calibration,
    GripperCalibration,
    JointCalibration,
    calibrate,
)
from tests.dynamixel_bus import (
    ADDR_TORQUE_ENABLE,
    PING,
    SYNC_READ,
    WRITE,
    Servo,
    ServoBus,
    crc16,
    instruction_packet,
)

JOINTS = ("joint1", "joint2", "joint3")
LOW, HIGH = (-2.0, -1.5, -3.0), (2.0, 1.5, 3.0)
TICK = 2 * math.pi / 4096


def robot_spec(mode="joint_pos", gripper=True) -> RobotSpec:
    names = tuple(f"{j}.pos" for j in JOINTS) + (("gripper",) if gripper else ())
    low, high = LOW + ((0.0,) if gripper else ()), HIGH + ((1.0,) if gripper else ())
    action = ActionSpec(mode, names, ("rad",) * len(names), low, high)
    return RobotSpec("koch_follower", 20.0, action, JOINTS, tuple(names))


CALIBRATION = Calibration(
    (
        JointCalibration("joint1", 1, 1, 0.0),
        JointCalibration("joint2", 2, -1, -0.5),
        JointCalibration("joint3", 3, 1, -math.pi / 2),
    ),
    GripperCalibration(4, open=2000, closed=1000),
)


@pytest.fixture
def bus():
    master, slave = pty.openpty()
    tty.setraw(slave)  # as a USB serial adapter would be: no echo, no line editing
    servos = {sid: Servo() for sid in (1, 2, 3, 4)}
    with ServoBus(master, servos) as sim:
        sim.path = os.ttyname(slave)
        yield sim
    os.close(slave)
    os.close(master)


def test_positions_become_follower_joint_angles(bus):
    s = bus.servos
    s[1].position = 2048 + 512  # +pi/4
    s[2].position = 2048 - 1024  # -pi/2 on the leader, sign -1 -> +pi/2, then -0.5 offset
    s[3].position = 2048 + 100
    s[4].position = 1250  # a quarter of the way from closed (1000) to open (2000)
    with make_teleop(
        "leader", SimpleNamespace(robot=robot_spec()), port=bus.path, calibration=CALIBRATION
    ) as arm:
        # Torque is switched off on every servo so the leader moves by hand.
        assert all(servo.table[ADDR_TORQUE_ENABLE] == 0 for servo in s.values())
        command = arm.read()
        assert command.action.dtype == np.float32 and command.intervening
        expected = [math.pi / 4, math.pi / 2 - 0.5, 100 * TICK - math.pi / 2, 0.75]
        np.testing.assert_allclose(command.action, expected, atol=1e-6)
        assert (0xFE, SYNC_READ) in bus.instructions  # one broadcast SYNC_READ per tick

        s[1].position = 2048 + 4096  # a full extra turn: clipped to the joint limit
        s[4].position = 500  # past the closed end: clipped to 1
        action = arm.read().action
        assert action[0] == pytest.approx(HIGH[0]) and action[3] == 1.0


def test_negative_and_stuffed_positions_round_trip(bus):
    # -131073 is FF FF FD FF on the wire: the status packet needs byte stuffing.
    bus.servos[2].position = -131073
    dxl = DynamixelBus(bus.path, (1, 2))
    try:
        assert dxl.read_positions() == {1: 0, 2: -131073}
    finally:
        dxl.close()


def test_dropped_reply_holds_then_recovers(bus):
    bus.servos[1].position = 2048
    with LeaderArmTeleop(robot_spec(), bus.path, CALIBRATION, max_missed_reads=3) as arm:
        bus.drop_replies[3] = 1
        start = time.monotonic()
        assert arm.read().action is None  # lost reply: nothing this tick, no exception
        assert time.monotonic() - start < 0.5  # the SDK's timeout, not a hang
        assert arm.read().action[0] == pytest.approx(0.0)
        # Failing on every tick eventually raises, naming the servo.
        bus.drop_replies[3] = 10
        assert arm.read().action is None and arm.read().action is None
        with pytest.raises(DeviceIOError, match=r"leader servo 3 .*no reply.*3 reads failed"):
            arm.read()


def test_bad_crc_reply_is_a_clear_error(bus):
    dxl = DynamixelBus(bus.path, (1, 2, 3))
    try:
        bus.corrupt_replies[2] = 1
        with pytest.raises(DeviceIOError, match=r"leader servo 2 .*corrupt reply: bad CRC"):
            dxl.read_positions()
        assert set(dxl.read_positions()) == {1, 2, 3}  # the next read is fine again
    finally:
        dxl.close()


def test_a_reply_lost_at_connect_is_tried_again(bus):
    """A lost ping reply and corrupt replies do not fail the connect: tried again."""
    for servo, fault, replies, pings, writes in ((2, "drop", 1, 2, 1), (3, "corrupt", 2, 3, 1)):
        getattr(bus, f"{fault}_replies")[servo] = replies
        before = len(bus.instructions)
        DynamixelBus(bus.path, (1, 2, 3)).close()
        sent = bus.instructions[before:]
        assert (sent.count((servo, PING)), sent.count((servo, WRITE))) == (pings, writes)


def test_missing_servo_fails_at_connect(bus):
    del bus.servos[3]
    start = time.monotonic()
    with pytest.raises(DeviceIOError, match=r"leader servo 3 did not answer a ping .*no reply"):
        LeaderArmTeleop(robot_spec(), bus.path, CALIBRATION)
    assert time.monotonic() - start < 1.0


def test_simulator_rejects_bad_crc_instruction(bus):
    good = instruction_packet(1, PING)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    assert crc16(good[:-2]) == int.from_bytes(good[-2:], "little")
    fd = os.open(bus.path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, bad)
        deadline = time.monotonic() + 2
        while bus.bad_crc_instructions == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bus.bad_crc_instructions == 1 and bus.instructions == []
    finally:
        os.close(fd)


def test_port_and_calibration_errors(bus, tmp_path):
    with pytest.raises(DeviceNotFoundError, match="no leader arm at /dev/ttyNOPE"):
        LeaderArmTeleop(robot_spec(), "/dev/ttyNOPE", CALIBRATION)
    with pytest.raises(TeleopError, match="the leader arm needs port= .* and calibration="):
        make_teleop("leader", SimpleNamespace(robot=robot_spec()))
    with pytest.raises(TeleopError, match="baud rate 12345 is not supported"):
        DynamixelBus(bus.path, (1,), baudrate=12345)
    with pytest.raises(TeleopError, match="produces joint_pos actions but this robot takes"):
        LeaderArmTeleop(robot_spec("ee_delta"), bus.path, CALIBRATION)
    with pytest.raises(TeleopError, match="robot has no gripper"):
        LeaderArmTeleop(robot_spec(gripper=False), bus.path, CALIBRATION)
    with pytest.raises(TeleopError, match="no leader arm calibration file"):
        Calibration.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"joints": [{"name": "joint1"}]}')
    with pytest.raises(TeleopError, match="malformed"):
        Calibration.load(str(tmp_path / "bad.json"))


def test_calibrate_from_two_poses_round_trips_through_the_file(bus, tmp_path):
    q_a, q_b = np.array([0.0, 0.3, -1.0]), np.array([math.pi / 2, -0.6, 0.0])
    # The leader as built: joint2 mounted mirrored, joint3 a quarter turn off.
    true = Calibration(
        (
            JointCalibration("joint1", 1, 1, 0.1),
            JointCalibration("joint2", 2, -1, -0.2),
            JointCalibration("joint3", 3, 1, math.pi / 2),
        )
    )

    def pose(q):
        return {
            j.servo_id: round(2048 + j.sign * (qi - j.offset) / TICK)
            for j, qi in zip(true.joints, q)
        }

    poses = iter([pose(q_a), pose(q_b), {4: 2000}, {4: 1100}])

    def operator(message):  # the operator moves the leader when prompted
        for sid, raw in next(poses).items():
            bus.servos[sid].position = raw

    path = str(tmp_path / "leader.json")
    record_calibration(robot_spec(), bus.path, (1, 2, 3), q_a, q_b, path, 4, prompt=operator)
    loaded = Calibration.load(path)
    assert [j.sign for j in loaded.joints] == [1, -1, 1]
    np.testing.assert_allclose(
        [j.offset for j in loaded.joints], [0.1, -0.2, math.pi / 2], atol=2e-3
    )
    assert loaded.gripper == GripperCalibration(4, 2000, 1100)
    q = np.array([0.4, 0.2, -0.5])
    np.testing.assert_allclose(loaded.joint_positions(pose(q)), q, atol=2e-3)


def test_calibrate_rejects_poses_too_close_or_not_one_to_one():
    raw_a, raw_b = {1: 2048}, {1: 2048 + 1024}
    with pytest.raises(TeleopError, match="differ by only 0.10 rad in joint1"):
        calibrate(["joint1"], [1], raw_a, [0.0], raw_b, [0.1])
    with pytest.raises(TeleopError, match="must turn 1:1"):
        calibrate(["joint1"], [1], raw_a, [0.0], raw_b, [math.pi])
