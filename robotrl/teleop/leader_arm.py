"""A Dynamixel leader arm (GELLO / Koch style, XL330 / XL430 servos) moved by hand.

Each tick one protocol 2.0 SYNC_READ of Present Position (address 132, 4 bytes, X-series)
fetches every servo; the calibration (`leader_calibration.py`) turns the raw positions into
absolute follower joint angles, sent as a `joint_pos` action clipped to the action limits,
plus the gripper's closed fraction. Torque is switched off on connect so the arm moves
freely. The arm has no buttons: pair it with the keyboard for episode events.

The official `dynamixel_sdk` does the protocol; its reads time out after a few tens of ms,
so a missing or garbled reply never stalls the loop: `read()` returns no action for that
tick (hold), and only `max_missed_reads` failures in a row raise.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import numpy as np

from robotrl.env import RobotSpec
from robotrl.teleop.base import (
    DeviceIOError,
    DeviceNotFoundError,
    Teleop,
    TeleopCommand,
    TeleopError,
)
from robotrl.teleop.leader_calibration import Calibration, GripperCalibration, calibrate

ADDR_TORQUE_ENABLE = 64
ADDR_PRESENT_POSITION = 132
LEN_PRESENT_POSITION = 4
DEFAULT_BAUDRATE = 57600  # X-series factory default
CONNECT_ATTEMPTS = 3  # per servo and transfer at connect


class DynamixelBus:
    """Present Position of a fixed set of X-series servos on one serial port."""

    def __init__(self, port: str, servo_ids, baudrate: int = DEFAULT_BAUDRATE):
        try:
            import dynamixel_sdk as sdk
        except ImportError:
            raise TeleopError(
                "the leader arm needs dynamixel-sdk: pip install 'robotrl[hw]'"
            ) from None
        self.sdk, self.port_name, self.baudrate = sdk, port, baudrate
        self.servo_ids = tuple(int(i) for i in servo_ids)
        self.port = sdk.PortHandler(port)
        self.packets = sdk.PacketHandler(2.0)
        self._open()
        try:
            for sid in self.servo_ids:
                self._check(self._retried(self._ping, sid), sid, "did not answer a ping")
                # Moved by hand: make sure no servo holds its position.
                self._check(self._retried(self._torque_off, sid), sid, "did not accept torque off")
        except DeviceIOError:
            self.close()
            raise
        self.sync_read = sdk.GroupSyncRead(
            self.port, self.packets, ADDR_PRESENT_POSITION, LEN_PRESENT_POSITION
        )
        for sid in self.servo_ids:
            self.sync_read.addParam(sid)

    def _open(self) -> None:
        if not os.path.exists(self.port_name):
            raise DeviceNotFoundError(
                f"no leader arm at {self.port_name}: plug in its USB adapter (U2D2) or pass "
                f"--port PATH (see ls /dev/serial/by-id)"
            )
        try:
            opened = self.port.setBaudRate(self.baudrate)  # opens the port at this rate
        except OSError as e:
            if e.errno == errno.EACCES:
                raise DeviceNotFoundError(
                    f"no permission to open {self.port_name}: add yourself to the dialout "
                    f"group (sudo usermod -aG dialout $USER) and log in again"
                ) from None
            raise DeviceIOError(f"cannot open leader arm port {self.port_name}: {e}") from None
        if not opened:
            raise TeleopError(
                f"baud rate {self.baudrate} is not supported by dynamixel_sdk: use one the "
                f"servos are set to, e.g. 57600 or 1000000"
            )

    def _ping(self, sid: int) -> int:
        return self.packets.ping(self.port, sid)[1]

    def _torque_off(self, sid: int) -> int:
        return self.packets.write1ByteTxRx(self.port, sid, ADDR_TORQUE_ENABLE, 0)[0]

    def _retried(self, transfer, sid: int) -> int:
        """A connect-time transfer, tried again after a lost or corrupt reply: one packet lost
        on a bus (or a reply later than the SDK's ~35 ms timeout) does not fail the connect; a
        servo that is not there still fails within a few timeouts."""
        for _ in range(CONNECT_ATTEMPTS):
            result = transfer(sid)
            if result not in (self.sdk.COMM_RX_TIMEOUT, self.sdk.COMM_RX_CORRUPT):
                break
        return result

    def _check(self, result: int, sid: int, what: str) -> None:
        if result == self.sdk.COMM_SUCCESS:
            return
        if result == self.sdk.COMM_RX_TIMEOUT:
            why = "no reply"
        elif result == self.sdk.COMM_RX_CORRUPT:
            why = "corrupt reply: bad CRC or noise on the bus"
        else:
            why = self.packets.getTxRxResult(result).removeprefix("[TxRxResult] ")
        raise DeviceIOError(
            f"leader servo {sid} {what} on {self.port_name} at {self.baudrate} baud ({why}): "
            f"check its id, wiring, power and the baud rate"
        )

    def read_positions(self) -> dict[int, int]:
        """Raw Present Position (signed ticks) per servo id; raises `DeviceIOError`."""
        result = self.sync_read.txRxPacket()
        if result != self.sdk.COMM_SUCCESS:
            # The SDK stops at the first servo whose reply failed; its data is left empty.
            failed = next(
                (s for s in self.servo_ids if len(self.sync_read.data_dict[s]) != 4),
                self.servo_ids[0],
            )
            self._check(result, failed, "failed a position read")
        positions = {}
        for sid in self.servo_ids:
            raw = self.sync_read.getData(sid, ADDR_PRESENT_POSITION, LEN_PRESENT_POSITION)
            positions[sid] = raw - (1 << 32) if raw >= 1 << 31 else raw  # int32
        return positions

    def close(self) -> None:
        if self.port.is_open:
            self.port.closePort()


class LeaderArmTeleop(Teleop):
    """joint_pos teleop: the follower copies the leader arm's joint angles."""

    name = "leader"
    required_action_mode = "joint_pos"

    def __init__(
        self,
        robot: RobotSpec,
        port: str | None = None,
        calibration: str | Calibration | None = None,
        baudrate: int = DEFAULT_BAUDRATE,
        max_missed_reads: int = 10,
    ):
        super().__init__(robot)
        if port is None or calibration is None:
            raise TeleopError(
                "the leader arm needs port= (e.g. /dev/ttyUSB0) and calibration= (a JSON file "
                "made by robotrl.teleop.leader_arm.record_calibration)"
            )
        if not isinstance(calibration, Calibration):
            calibration = Calibration.load(calibration)
        self.calibration = calibration
        names = tuple(j.name for j in calibration.joints)
        if names != tuple(robot.joint_names):
            raise TeleopError(
                f"leader arm calibration is for joints {', '.join(names)} but the robot has "
                f"{', '.join(robot.joint_names)}"
            )
        if (calibration.gripper is not None) != self.has_gripper:
            want = "has a gripper" if self.has_gripper else "has no gripper"
            raise TeleopError(f"the robot {want} but the leader arm calibration does not match")
        self.max_missed_reads = max_missed_reads
        self.missed_reads = 0
        spec = robot.action
        self._low, self._high = np.array(spec.low), np.array(spec.high)
        self.bus = DynamixelBus(port, calibration.servo_ids, baudrate)

    def action_from_raw(self, raw: dict[int, int]) -> np.ndarray:
        action = self.calibration.joint_positions(raw)
        if self.calibration.gripper is not None:
            action = np.append(action, self.calibration.gripper_closed_fraction(raw))
        return np.clip(action, self._low, self._high).astype(np.float32)

    def read(self, obs: dict | None = None) -> TeleopCommand:
        try:
            raw = self.bus.read_positions()
        except DeviceIOError as e:
            self.missed_reads += 1
            if self.missed_reads >= self.max_missed_reads:
                raise DeviceIOError(f"{e}; {self.missed_reads} reads failed in a row") from None
            return TeleopCommand(None, intervening=True)  # one lost reply: hold this tick
        self.missed_reads = 0
        return TeleopCommand(self.action_from_raw(raw), intervening=True)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.bus.close()


def record_calibration(
    robot: RobotSpec,
    port: str,
    servo_ids,
    pose_a,
    pose_b,
    path: str,
    gripper_id: int | None = None,
    baudrate: int = DEFAULT_BAUDRATE,
    prompt: Callable[[str], object] = input,
) -> Calibration:
    """Capture two poses (and the gripper's open/closed ends) and write the calibration.

    `pose_a` / `pose_b` are follower joint angles (rad), e.g. the follower's home pose and
    that pose with every joint turned by a quarter turn; the operator holds the leader arm so
    that it mirrors each pose when prompted.
    """
    ids = tuple(servo_ids) + ((gripper_id,) if gripper_id is not None else ())
    bus = DynamixelBus(port, ids, baudrate)
    try:
        prompt(f"hold the leader arm in pose A {np.round(pose_a, 3).tolist()} and press Enter")
        raw_a = bus.read_positions()
        prompt(f"hold the leader arm in pose B {np.round(pose_b, 3).tolist()} and press Enter")
        raw_b = bus.read_positions()
        gripper = None
        if gripper_id is not None:
            prompt("open the leader gripper fully and press Enter")
            opened = bus.read_positions()[gripper_id]
            prompt("close the leader gripper fully and press Enter")
            gripper = GripperCalibration(gripper_id, opened, bus.read_positions()[gripper_id])
    finally:
        bus.close()
    calibration = calibrate(robot.joint_names, servo_ids, raw_a, pose_a, raw_b, pose_b, gripper)
    calibration.save(path)
    return calibration
