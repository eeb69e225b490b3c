"""PegInsert: pick up a square peg and insert it into a square hole with 3 mm total clearance.

The hole is four box walls on a mocap body (static, but placed anew each episode); the table
is its floor. Square peg in square hole keeps the collision geometry exact and cheap, and the
clearance small enough that a policy has to align position (1.5 mm a side) and yaw (about 6
degrees): 3 mm off or 12 degrees turned, a peg pushed straight down stays on the rim.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robotrl.sim.mujoco_env import MujocoEnv
from robotrl.tasks.expert import Expert, yaw_rotation

PEG_HALF = 0.0125  # m: 25 mm square peg
PEG_HALF_HEIGHT = 0.045  # m: 90 mm tall
PEG_MASS = 0.05  # kg
HOLE_HALF = 0.014  # m: 28 mm square hole, 3 mm total clearance
HOLE_DEPTH = 0.04  # m
WALL = 0.015  # m, wall thickness
# Stiff contact (time constant 2 sim steps, the stable minimum) and a hard impedance, so a
# peg pushed down hard on a wall's rim does not sink into it.
WALL_SOLREF = [0.004, 1.0]
WALL_SOLIMP = [0.99, 0.999, 0.001, 0.5, 2.0]
INSERTED_FRACTION = 0.75  # of the hole depth, for success
UPRIGHT_COS = math.cos(math.radians(10))  # and the peg within 10 degrees of vertical
# Reset: peg on the -y side of the workspace, hole on the +y side, each jittered by this much
# (half-widths, scaled by `object_pose_scale`), and kept at least MIN_SEPARATION apart.
PEG_CENTER = np.array([0.0, -0.1])
HOLE_CENTER = np.array([0.0, 0.1])
POSE_RANGE = np.array([0.08, 0.05])
MIN_SEPARATION = 0.1  # m, peg to hole centre
GRASP_BELOW_TOP = 0.02  # m, ee site below the peg's top: fingertips clear the fixture


class PegInsertEnv(MujocoEnv):
    default_control_hz = 20.0
    max_episode_steps = 200
    environment_state_names = (
        "peg.x",
        "peg.y",
        "peg.z",
        "peg.qw",
        "peg.qx",
        "peg.qy",
        "peg.qz",
        "hole.x",
        "hole.y",
        "hole.z",
        "hole.yaw",
    )
    object_body_names = ("peg", "fixture")

    def task_build(self, spec):
        peg = spec.worldbody.add_body(name="peg", pos=[0, -0.1, PEG_HALF_HEIGHT])
        peg.add_freejoint(name="peg")
        peg.add_geom(
            name="peg",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[PEG_HALF, PEG_HALF, PEG_HALF_HEIGHT],
            mass=PEG_MASS,
            rgba=[0.85, 0.45, 0.1, 1],
            friction=[1.0, 0.01, 0.001],
            condim=4,
            # contype bit 2 as well, so the walls (which skip the table) still touch the peg.
            contype=3,
            conaffinity=1,
        )
        # The fixture's origin is the centre of the hole's opening; walls hang below it to the
        # table. Walls collide with the peg and the arm (bit 2) but not the table (bit 1):
        # both are static, so a contact between them would be wasted work.
        fixture = spec.worldbody.add_body(name="fixture", mocap=True, pos=[0, 0.1, HOLE_DEPTH])
        outer = HOLE_HALF + WALL
        mid = HOLE_HALF + WALL / 2
        walls = [
            ([0, mid, 0], [outer, WALL / 2]),
            ([0, -mid, 0], [outer, WALL / 2]),
            ([mid, 0, 0], [WALL / 2, HOLE_HALF]),
            ([-mid, 0, 0], [WALL / 2, HOLE_HALF]),
        ]
        for i, ((x, y, _), (hx, hy)) in enumerate(walls):
            fixture.add_geom(
                name=f"wall{i}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                pos=[x, y, -HOLE_DEPTH / 2],
                size=[hx, hy, HOLE_DEPTH / 2],
                rgba=[0.25, 0.35, 0.6, 1],
                # Smooth-ish metal: the peg slides down a wall it touches instead of jamming.
                # Priority makes peg-wall contacts use these values, not the peg's grippy ones.
                friction=[0.3, 0.005, 0.0001],
                solref=WALL_SOLREF,
                solimp=WALL_SOLIMP,
                priority=1,
                contype=2,
                conaffinity=2,
            )

    def task_compiled(self):
        m, d = self.model, self.data
        self._peg_body = m.body("peg").id
        self._peg_qpos = d.joint("peg").qpos  # views: always current
        self._peg_xpos = d.body("peg").xpos
        self._peg_xmat = d.body("peg").xmat
        self._hole_pos = d.mocap_pos[m.body("fixture").mocapid[0]]
        self._hole_quat = d.mocap_quat[m.body("fixture").mocapid[0]]

    def task_reset(self, rng):
        scale = self.randomization.object_pose_scale
        for _ in range(100):
            peg_xy = PEG_CENTER + rng.uniform(-1, 1, 2) * POSE_RANGE * scale
            hole_xy = HOLE_CENTER + rng.uniform(-1, 1, 2) * POSE_RANGE * scale
            if np.linalg.norm(peg_xy - hole_xy) >= MIN_SEPARATION:
                break
        else:  # only reachable with very wide scales: fall back to the nominal layout
            peg_xy, hole_xy = PEG_CENTER, HOLE_CENTER
        peg_yaw = rng.uniform(-math.pi, math.pi)
        # The hole is square, so a quarter turn covers every orientation.
        hole_yaw = rng.uniform(-math.pi / 4, math.pi / 4)
        self._peg_qpos[:] = [*peg_xy, PEG_HALF_HEIGHT, *_yaw_quat(peg_yaw)]
        self._hole_pos[:] = [*hole_xy, HOLE_DEPTH]
        self._hole_quat[:] = _yaw_quat(hole_yaw)

    def task_environment_state(self):
        return np.concatenate([self._peg_qpos, self._hole_pos, [self.hole_yaw]])

    @property
    def hole_yaw(self) -> float:
        w, _, _, z = self._hole_quat
        return 2 * math.atan2(z, w)

    def hole_pose(self) -> tuple[np.ndarray, float]:
        """Centre of the hole's opening (m) and its yaw (rad), world frame."""
        return self._hole_pos.copy(), self.hole_yaw

    def peg_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Peg centre (m) and rotation matrix, world frame."""
        return self._peg_xpos.copy(), self._peg_xmat.reshape(3, 3).copy()

    def peg_bottom(self) -> np.ndarray:
        """Centre of the peg's bottom face, world frame."""
        return self._peg_xpos - self._peg_xmat[2::3] * PEG_HALF_HEIGHT

    def peg_in_hole_frame(self) -> np.ndarray:
        """Peg bottom centre relative to the hole's opening centre, in the hole's frame."""
        return yaw_rotation(self.hole_yaw).T @ (self.peg_bottom() - self._hole_pos)

    def task_evaluate(self):
        local = self.peg_in_hole_frame()
        xy_error = float(np.linalg.norm(local[:2]))
        depth = min(max(-local[2] / HOLE_DEPTH, 0.0), 1.0)
        in_opening = bool(np.abs(local[:2]).max() < HOLE_HALF)
        upright = self._peg_xmat[8] > UPRIGHT_COS
        success = bool(in_opening and upright and depth >= INSERTED_FRACTION)
        # Staged like robosuite's: each stage's reward starts where the previous one tops out,
        # and the best stage reached counts.
        grasp_point = self._peg_xpos + [0, 0, PEG_HALF_HEIGHT - GRASP_BELOW_TOP]
        ee = self.data.site_xpos[self.arm.ee_site]
        reach = 0.1 * (1 - math.tanh(10 * np.linalg.norm(grasp_point - ee)))
        grasped = self.grasped(self._peg_body)
        lifted = min(max(self.peg_bottom()[2] / (HOLE_DEPTH + 0.02), 0.0), 1.0)
        lift = (0.35 + 0.15 * lifted) if grasped else 0.0
        hover = (0.5 + 0.2 * (1 - math.tanh(20 * xy_error))) if grasped and lifted > 0.5 else 0.0
        insert = (0.7 + 0.3 * depth) if in_opening and local[2] < 0 else 0.0
        return max(reach, lift, hover, insert, float(success)), success

    def make_expert(self):
        return PegInsertExpert(self)


def _yaw_quat(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _yaw_of(rot: np.ndarray) -> float:
    return math.atan2(rot[1, 0], rot[0, 0])


def quarter_turn_near(yaw: float, near: float) -> float:
    """`yaw` plus the multiple of 90 degrees that brings it within 45 degrees of `near`: the
    same square (peg or hole) seen the way that needs the least turning."""
    return near + (yaw - near + math.pi / 4) % (math.pi / 2) - math.pi / 4


TRAVEL = 0.04  # m, peg bottom above the hole's opening while carrying it over
HOVER = 0.012  # m, peg bottom above the hole's opening before inserting
INSERT_SPEED = 0.02  # m/s, peg bottom's descent into the hole
ALIGN_TOLERANCE = 0.0006  # m, peg bottom to hole axis before inserting


class PegInsertExpert(Expert):
    """Above the peg, aligned -> down -> close -> lift -> peg over the hole, aligned using the
    peg's measured pose in the hand -> slow straight descent.

    `aim` (hole frame, m) shifts where the peg's bottom centre is aimed and `aim_yaw` (rad)
    turns the peg against the hole: zero for demonstrations; tests set them to show that a
    peg a few millimetres or degrees off does not go in."""

    def __init__(self, env, aim: tuple[float, float] = (0.0, 0.0), aim_yaw: float = 0.0):
        self.aim = np.array([*aim, 0.0])
        self.aim_yaw = aim_yaw
        super().__init__(env)

    def plan(self):
        env = self.env
        ee, ee_rot = env.ee_pose()
        if self.phase <= 1:  # track the peg until the fingers close on it
            peg_pos, peg_rot = env.peg_pose()
            self.yaw = quarter_turn_near(_yaw_of(peg_rot), 0.0)  # fingers across two faces
            self.grasp = peg_pos + [0, 0, PEG_HALF_HEIGHT - GRASP_BELOW_TOP]
        if self.phase <= 3:
            rot = self.top_down(self.yaw)
            if self.phase == 0:  # approach from above
                above = self.grasp + [0, 0, 0.08]
                if np.linalg.norm((above - ee)[:2]) < 0.005 and abs(above[2] - ee[2]) < 0.02:
                    self.phase = 1
                return above, rot, 0.0
            if self.phase == 1:  # descend around the peg
                if np.linalg.norm(self.grasp - ee) < 0.003:
                    self.phase, self.timer = 2, 0
                return self.grasp, rot, 0.0
            if self.phase == 2:  # close, holding still (a fixed target: the peg moves with us)
                self.timer += 1
                if self.timer >= 6:
                    self.phase = 3
                return self.grasp, rot, 1.0
            # lift straight up until the peg clears the fixture
            bottom_z = env.peg_bottom()[2]
            if bottom_z > HOLE_DEPTH + TRAVEL / 2:
                self.phase, self.timer = 4, 0
            return ee + [0, 0, HOLE_DEPTH + TRAVEL - bottom_z], rot, 1.0

        # Peg over the hole: from the peg's pose in the hand, find the hand pose that puts the
        # peg upright, yaw-aligned with the hole and its bottom centre on the hole's axis.
        peg_rot = env.peg_pose()[1]
        peg_in_hand = ee_rot.T @ peg_rot
        bottom_in_hand = ee_rot.T @ (env.peg_bottom() - ee)
        hole_pos, hole_yaw = env.hole_pose()
        want_yaw = quarter_turn_near(hole_yaw + self.aim_yaw, _yaw_of(peg_rot))
        hand_rot = yaw_rotation(want_yaw) @ peg_in_hand.T
        hole = hole_pos + yaw_rotation(hole_yaw) @ self.aim
        if self.phase == 4:  # over the opening: travel high, then come down to hover
            error = env.peg_in_hole_frame() - self.aim
            far = np.linalg.norm(error[:2]) > 0.01
            bottom = hole + [0, 0, TRAVEL if far else HOVER]
            if np.linalg.norm(error[:2]) < ALIGN_TOLERANCE and abs(error[2] - HOVER) < 0.003:
                self.timer += 1
            else:
                self.timer = 0
            if self.timer >= 3:  # settled, not just passing through
                self.phase, self.depth = 5, HOVER
        else:  # straight down at a slow, steady rate, still correcting xy
            self.depth = max(self.depth - INSERT_SPEED / env.robot.control_hz, -HOLE_DEPTH - 0.003)
            bottom = hole + [0, 0, self.depth]
        return bottom - hand_rot @ bottom_in_hand, hand_rot, 1.0
