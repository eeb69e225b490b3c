"""PushT: push a T-shaped block to a fixed target pose on the table with a round pusher.

Diffusion Policy's PushT benchmark brought to a 3-D arm. The block moves in the table plane
only (planar joints: slide x, slide y, hinge z), with joint damping and friction standing in
for table friction, so it stops as soon as it is no longer pushed. Success is DP's: the block
covers at least 95% of the target T's area. The scripted expert plans each push by simulating
candidate pushes in a small private MuJoCo model of the block and pusher.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robotrl.data.mirror import MirrorSymmetry
from robotrl.errors import RobotrlError
from robotrl.sim.mujoco_env import MujocoEnv
from robotrl.sim.scene import aim_camera

# ---- the T (m). Bar across the top, stem below it along -y, in the T's own frame whose
# origin is the T's area centroid (so the hinge turns it about its centre of mass).
BAR_HALF = (0.08, 0.02)
STEM_HALF = (0.02, 0.06)
HEIGHT_HALF = 0.015
_BAR_Y, _STEM_Y = BAR_HALF[1], -STEM_HALF[1]  # centres with the bar's lower edge at y = 0
_AREAS = (4 * BAR_HALF[0] * BAR_HALF[1], 4 * STEM_HALF[0] * STEM_HALF[1])
_CENTROID_Y = (_AREAS[0] * _BAR_Y + _AREAS[1] * _STEM_Y) / sum(_AREAS)
# (centre x, centre y, half x, half y) of the two rectangles in the block frame
RECTS = np.array(
    [
        [0.0, _BAR_Y - _CENTROID_Y, *BAR_HALF],
        [0.0, _STEM_Y - _CENTROID_Y, *STEM_HALF],
    ]
)
T_AREA = sum(_AREAS)

# The block floats a hair above the table (no table contact: the joints carry it), so its
# "table friction" is the joint friction and damping below.
BLOCK_Z = HEIGHT_HALF + 0.0005
BLOCK_MASS = 0.2  # kg
SLIDE_DAMPING = 8.0  # N s/m: let go at 0.1 m/s (the expert's push speed) it slides 1 mm
SLIDE_FRICTION = 0.6  # N: Coulomb friction, so it comes to a full stop rather than creeping
CONTACT_FRICTION = 0.3  # block-pusher sliding friction

GOAL_POSE = (0.0, 0.0, math.pi / 4)  # x, y, yaw: fixed, like DP's (256, 256, pi/4)
RESET_HALF = (0.08, 0.16, math.pi)  # half-ranges of the block's reset pose about the goal
MAX_RESET_COVERAGE = 0.1  # reject reset poses that already cover more of the goal than this
SUCCESS_COVERAGE = 0.95
COVERAGE_GRID = 0.0025  # m between coverage sample points


def _rotational_inertia() -> float:
    """Moment of inertia of the T about its centroid (vertical axis) per unit mass."""
    total = 0.0
    for (cx, cy, hx, hy), area in zip(RECTS, _AREAS):
        total += area * ((4 * hx * hx + 4 * hy * hy) / 12 + cx * cx + cy * cy)
    return total / T_AREA


# The hinge gets the slide values times the squared radius of gyration, so a push decays
# translation and rotation on the same time scale (what area-distributed table friction does).
GYRATION_SQ = _rotational_inertia()
HINGE_DAMPING = SLIDE_DAMPING * GYRATION_SQ
HINGE_FRICTION = SLIDE_FRICTION * math.sqrt(GYRATION_SQ)


def add_t_block(parent, name: str, rgba, pos, yaw: float = 0.0, collide: bool = True):
    """Add a T body (two boxes) to `parent` (an MjSpec body)."""
    body = parent.add_body(name=name, pos=pos, quat=[math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
    for part, (cx, cy, hx, hy) in zip(("bar", "stem"), RECTS):
        hz = HEIGHT_HALF if collide else 0.0005
        geom = body.add_geom(
            name=f"{name}_{part}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[hx, hy, hz],
            pos=[cx, cy, 0.0],
            rgba=rgba,
        )
        if collide:
            # Collides with the pusher and arm (contype 2) but not the table (contype 1).
            geom.contype, geom.conaffinity = 0, 2
            geom.friction = [CONTACT_FRICTION, 0.005, 0.0001]
            geom.mass = BLOCK_MASS * (4 * hx * hy) / T_AREA
        else:
            geom.contype, geom.conaffinity = 0, 0
    return body


def add_planar_joints(body, name: str) -> None:
    for axis, suffix in (([1, 0, 0], "x"), ([0, 1, 0], "y")):
        body.add_joint(
            name=f"{name}_{suffix}",
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=axis,
            damping=SLIDE_DAMPING,
            frictionloss=SLIDE_FRICTION,
        )
    body.add_joint(
        name=f"{name}_yaw",
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=[0, 0, 1],
        damping=HINGE_DAMPING,
        frictionloss=HINGE_FRICTION,
    )


def wrap_angle(a):
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi


def _grid_in_t(spacing: float) -> np.ndarray:
    """Cell centres of a square grid covering the T, in the T's frame (N x 2)."""
    points = []
    for i, (cx, cy, hx, hy) in enumerate(RECTS):
        nx, ny = round(2 * hx / spacing), round(2 * hy / spacing)
        xs = cx - hx + (np.arange(nx) + 0.5) * 2 * hx / nx
        ys = cy - hy + (np.arange(ny) + 0.5) * 2 * hy / ny
        grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        if i == 1:  # the rectangles only touch along an edge; keep cells of one of them
            grid = grid[~_inside(grid, RECTS[:1])]
        points.append(grid)
    return np.concatenate(points)


def _inside(points: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Whether each point (N x 2, T frame) lies in any of `rects`."""
    d = np.abs(points[:, None, :] - rects[None, :, :2])
    return ((d[..., 0] <= rects[None, :, 2]) & (d[..., 1] <= rects[None, :, 3])).any(axis=1)


_GOAL_POINTS = _grid_in_t(COVERAGE_GRID)  # sampled once, T frame


def to_frame(points: np.ndarray, pose) -> np.ndarray:
    """Points (N x 2, T frame at `pose`) in world coordinates."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return points @ np.array([[c, s], [-s, c]]) + np.asarray(pose[:2])


def from_frame(points: np.ndarray, pose) -> np.ndarray:
    """World points (N x 2) expressed in the frame of a T at `pose`."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return (points - np.asarray(pose[:2])) @ np.array([[c, -s], [s, c]])


def coverage(block_pose, goal_pose=GOAL_POSE) -> float:
    """Fraction of the goal T's area that the block's T covers.

    The goal grid goes straight into the block frame by one composed 2-D transform, and both
    rectangles are centred on the T's x = 0 axis: this runs every env step, so it stays lean.
    """
    dyaw = goal_pose[2] - block_pose[2]
    c, s = math.cos(dyaw), math.sin(dyaw)
    cb, sb = math.cos(block_pose[2]), math.sin(block_pose[2])
    dx, dy = goal_pose[0] - block_pose[0], goal_pose[1] - block_pose[1]
    offset = np.array([dx * cb + dy * sb, -dx * sb + dy * cb])
    local = _GOAL_POINTS @ np.array([[c, s], [-s, c]]) + offset
    ax, y = np.abs(local[:, 0]), local[:, 1]
    (_, bar_y, bar_hx, bar_hy), (_, stem_y, stem_hx, stem_hy) = RECTS
    inside = (ax <= bar_hx) & (np.abs(y - bar_y) <= bar_hy)
    inside |= (ax <= stem_hx) & (np.abs(y - stem_y) <= stem_hy)
    return np.count_nonzero(inside) / len(local)


class PushTEnv(MujocoEnv):
    default_control_hz = 10.0
    max_episode_steps = 300
    tool = "pusher"
    # yaw as cos/sin: the wrapped angle jumps by 2 pi inside the reset range, which a policy
    # would have to learn around
    environment_state_names = ("block.x", "block.y", "block.cos_yaw", "block.sin_yaw")
    object_body_names = ("block",)
    # The scene is its own mirror image about the goal T's stem line: the T is symmetric about
    # its own y axis and the block's x and y slide joints are alike (`train --mirror`).
    mirror_symmetry = MirrorSymmetry(
        point=GOAL_POSE[:2], angle=GOAL_POSE[2] + math.pi / 2, objects={"block": math.pi / 2}
    )

    def __init__(self, *args, success_coverage: float = SUCCESS_COVERAGE, **kwargs):
        # Demos recorded to a stricter line than the task's (collect --success-coverage 0.97)
        # train policies that clear the task's own 0.95 more often: README, PushT.
        if not 0.0 < success_coverage <= 1.0:
            raise RobotrlError(f"success coverage must be in (0, 1], got {success_coverage}")
        self.success_coverage = float(success_coverage)
        super().__init__(*args, **kwargs)

    def task_build(self, spec):
        # The T is small: look down on the pushing region from above the far side, where
        # the arm (coming from -x) hides the least of it.
        aim_camera(spec.camera("front"), (0.3, 0.0, 0.55), (-0.02, 0.0, 0.0), 50.0)
        gx, gy, gyaw = GOAL_POSE
        # Target drawn just above the table, under the block; it collides with nothing.
        add_t_block(spec.worldbody, "goal", [0.2, 0.8, 0.3, 0.5], [gx, gy, 0.001], gyaw, False)
        block = add_t_block(spec.worldbody, "block", [0.85, 0.4, 0.15, 1], [0, 0, BLOCK_Z])
        add_planar_joints(block, "block")

    def task_reset(self, rng):
        scale = self.randomization.object_pose_scale
        half = np.array(RESET_HALF) * scale
        half[2] = min(half[2], math.pi)
        for _ in range(100):
            pose = np.array(GOAL_POSE) + rng.uniform(-half, half)
            pose[2] = wrap_angle(pose[2])
            if coverage(pose) <= MAX_RESET_COVERAGE:
                break
        self.data.qpos[self._block_qadr] = pose

    def task_compiled(self):
        first = int(self.model.joint("block_x").qposadr[0])  # x, y, yaw are consecutive
        self._block_qadr = slice(first, first + 3)

    def block_pose(self) -> np.ndarray:
        """Block x, y (m) and yaw (rad, wrapped to [-pi, pi))."""
        pose = self.data.qpos[self._block_qadr].copy()
        pose[2] = wrap_angle(pose[2])
        return pose

    def task_environment_state(self):
        x, y, yaw = self.block_pose()
        return np.array([x, y, math.cos(yaw), math.sin(yaw)])

    def task_evaluate(self):
        cov = coverage(self.block_pose())
        return min(cov / self.success_coverage, 1.0), cov >= self.success_coverage

    def make_expert(self):
        from robotrl.tasks.push_t_expert import PushTExpert

        return PushTExpert(self)
