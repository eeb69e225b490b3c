"""How a Dynamixel leader arm's servo positions map onto the follower's joints.

The calibration file is JSON:

    {"joints": [{"name": "joint1", "servo_id": 1, "sign": 1, "offset": 0.0}, ...],
     "gripper": {"servo_id": 8, "open": 2048, "closed": 1400}}

follower angle (rad) = sign * (raw - 2048) * 2*pi / 4096 + offset, for X-series servos
(4096 ticks per turn, 2048 mid-travel). The gripper servo's raw positions between `open`
and `closed` map to 0 (open) .. 1 (closed). `calibrate()` finds sign and offset of every
joint from two poses in which the follower's joint angles are known.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from robotrl.teleop.base import TeleopError

TICKS_PER_TURN = 4096
MID_TICKS = 2048
MIN_POSE_GAP = 0.2  # rad: closer poses make the sign and scale check unreliable


def ticks_to_rad(raw) -> np.ndarray:
    return (np.asarray(raw, dtype=np.float64) - MID_TICKS) * (2 * math.pi / TICKS_PER_TURN)


@dataclass(frozen=True)
class JointCalibration:
    name: str  # follower joint name, as in `env.robot.joint_names`
    servo_id: int
    sign: int  # +1 or -1: whether the leader servo turns the same way as the follower joint
    offset: float  # rad


@dataclass(frozen=True)
class GripperCalibration:
    servo_id: int
    open: int  # raw servo position with the leader's gripper (trigger) open
    closed: int


@dataclass(frozen=True)
class Calibration:
    joints: tuple[JointCalibration, ...]
    gripper: GripperCalibration | None = None

    @property
    def servo_ids(self) -> tuple[int, ...]:
        ids = tuple(j.servo_id for j in self.joints)
        return ids + ((self.gripper.servo_id,) if self.gripper else ())

    def joint_positions(self, raw: dict[int, int]) -> np.ndarray:
        """Follower joint angles (rad) from raw leader positions keyed by servo id."""
        ticks = [raw[j.servo_id] for j in self.joints]
        sign = np.array([j.sign for j in self.joints], dtype=np.float64)
        offset = np.array([j.offset for j in self.joints])
        return sign * ticks_to_rad(ticks) + offset

    def gripper_closed_fraction(self, raw: dict[int, int]) -> float:
        g = self.gripper
        return float(np.clip((raw[g.servo_id] - g.open) / (g.closed - g.open), 0.0, 1.0))

    def save(self, path: str) -> None:
        data = {"joints": [asdict(j) for j in self.joints]}
        if self.gripper:
            data["gripper"] = asdict(self.gripper)
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: str) -> Calibration:
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise TeleopError(
                f"no leader arm calibration file at {path}: make one with "
                f"robotrl.teleop.leader_arm.record_calibration"
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise TeleopError(f"cannot read leader arm calibration {path}: {e}") from None
        if not isinstance(data, dict):
            raise TeleopError(
                f"leader arm calibration {path} holds a JSON {type(data).__name__} where an "
                "object with joints (and gripper) belongs"
            )
        try:
            joints = tuple(
                JointCalibration(
                    str(j["name"]), int(j["servo_id"]), int(j["sign"]), float(j["offset"])
                )
                for j in data["joints"]
            )
            g = data.get("gripper")
            gripper = (
                GripperCalibration(int(g["servo_id"]), int(g["open"]), int(g["closed"]))
                if g
                else None
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TeleopError(
                f"leader arm calibration {path} is malformed: bad or missing {e}"
            ) from None
        calibration = cls(joints, gripper)
        calibration.check()
        return calibration

    def check(self) -> None:
        ids = self.servo_ids
        if len(set(ids)) != len(ids):
            raise TeleopError(f"leader arm calibration uses a servo id twice: {list(ids)}")
        for j in self.joints:
            if j.sign not in (-1, 1):
                raise TeleopError(f"leader arm calibration: {j.name} sign must be 1 or -1")
        if self.gripper and self.gripper.open == self.gripper.closed:
            raise TeleopError("leader arm calibration: gripper open and closed positions are equal")


def calibrate(
    joint_names,
    servo_ids,
    raw_a: dict[int, int],
    q_a,
    raw_b: dict[int, int],
    q_b,
    gripper: GripperCalibration | None = None,
) -> Calibration:
    """Sign and offset per joint from two poses: raw leader positions `raw_a`/`raw_b` taken
    while the leader mirrored follower joint angles `q_a`/`q_b` (rad)."""
    q_a, q_b = np.asarray(q_a, dtype=np.float64), np.asarray(q_b, dtype=np.float64)
    joints = []
    for i, (name, sid) in enumerate(zip(joint_names, servo_ids, strict=True)):
        rad_a, rad_b = ticks_to_rad([raw_a[sid], raw_b[sid]])
        follower_gap = q_b[i] - q_a[i]
        if abs(follower_gap) < MIN_POSE_GAP:
            raise TeleopError(
                f"calibration poses differ by only {follower_gap:.2f} rad in {name}: they must "
                f"differ by at least {MIN_POSE_GAP} rad in every joint"
            )
        ratio = (rad_b - rad_a) / follower_gap
        if not 0.5 < abs(ratio) < 2.0:
            raise TeleopError(
                f"{name}: the leader servo {sid} turned {rad_b - rad_a:.2f} rad while the follower "
                f"pose changed by {follower_gap:.2f} rad; leader and follower must turn 1:1"
            )
        sign = 1 if ratio > 0 else -1
        offset = float(np.mean([q_a[i] - sign * rad_a, q_b[i] - sign * rad_b]))
        joints.append(JointCalibration(name, int(sid), sign, offset))
    calibration = Calibration(tuple(joints), gripper)
    calibration.check()
    return calibration
