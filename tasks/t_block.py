"""The T-shaped block of PushT, what the task (`push_t`) and its scripted expert
(`push_t_expert`) both build on: its geometry (two rectangles, in a frame at the T's area
centroid), its MuJoCo bodies and planar joints, frame transforms and goal coverage.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

# ---- the T (m). Bar across the top, stem below it along -y, in the T's own frame whose
# origin is the T's area centroid (so the hinge turns it about its centre of mass).
BAR_HALF = (0.08, 0.02)
STEM_HALF = (0.02, 0.06)
HEIGHT_HALF = 0.015
_BAR_Y, _STEM_Y = BAR_HALF[1], -STEM_HALF[1]  # centres with the crossbar's lower edge at y = 0
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
