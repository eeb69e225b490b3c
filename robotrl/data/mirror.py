"""Mirror augmentation (`train --mirror`): train on the mirror image of demonstrations too.

A planar task whose scene is its own mirror image about a vertical plane (PushT: the T is
symmetric about its stem, the goal T's stem line is the plane, and the block's x and y slide
joints carry the same friction) has a mirrored twin for every demonstration: the same motion
reflected is a demonstration as good as the original, from a state the expert never visited.
A task declares the plane as `mirror_symmetry` (a `MirrorSymmetry`); `MirrorAugment` reflects a
random half of each training batch's windows, observations and actions together.

What reflects, by feature name: `<p>.x`/`<p>.y` pairs are points (reflected across the line);
`<p>.z` stays; `<obj>.cos_yaw`/`<obj>.sin_yaw` of an object the task names are its yaw, which
maps to `2 (angle - object_axis) - yaw` (the reflected object, turned onto its own mirror axis,
is the same shape); `<p>.drx/.dry/.drz` rotation increments are pseudo-vectors (reflected, then
negated). Any other entry the policy looks at (joint angles, a quaternion) has no mirror image
here: `MirrorAugment` refuses it with a one-line error instead of training on wrong twins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from robotrl.errors import RobotrlError


@dataclass(frozen=True)
class MirrorSymmetry:
    """The vertical mirror plane of a planar scene: through world `point` (x, y), along world
    direction `angle` (rad); `objects` maps each object to the direction of its own symmetry
    axis in its frame (rad)."""

    point: tuple[float, float]
    angle: float
    objects: dict[str, float] = field(default_factory=dict)

    def matrix(self) -> np.ndarray:
        c, s = math.cos(2 * self.angle), math.sin(2 * self.angle)
        return np.array([[c, s], [s, -c]])

    def yaw_offset(self, obj: str) -> float:
        """yaw' = offset - yaw for object `obj`."""
        return 2 * (self.angle - self.objects[obj])


@dataclass(frozen=True)
class _Plan:
    """Index groups of one feature vector, by how each reflects."""

    points: tuple[tuple[int, int], ...] = ()  # (x, y)
    yaws: tuple[tuple[int, int, float], ...] = ()  # (cos, sin, offset)
    pseudo: tuple[tuple[int, int, int], ...] = ()  # (drx, dry, drz)


def _plan(names: list[str], looked_at: set[int], mirror: MirrorSymmetry, what: str) -> _Plan:
    index = {n: i for i, n in enumerate(names)}
    points, yaws, pseudo = [], [], []
    handled = {i for i, n in enumerate(names) if n.endswith(".z")}
    for i, name in enumerate(names):
        prefix, _, entry = name.rpartition(".")
        if entry == "x" and f"{prefix}.y" in index:
            group = (i, index[f"{prefix}.y"])
            points.append(group)
        elif entry == "cos_yaw" and f"{prefix}.sin_yaw" in index and prefix in mirror.objects:
            group = (i, index[f"{prefix}.sin_yaw"])
            yaws.append((*group, mirror.yaw_offset(prefix)))
        elif entry == "drx" and {f"{prefix}.dry", f"{prefix}.drz"} <= index.keys():
            group = (i, index[f"{prefix}.dry"], index[f"{prefix}.drz"])
            pseudo.append(group)
        else:
            continue
        handled.update(group)
    unmirrored = sorted(looked_at - handled)
    if unmirrored:
        raise RobotrlError(
            f"--mirror: {what} entry {names[unmirrored[0]]!r} has no mirror image "
            "(points .x/.y/.z, a named object's cos_yaw/sin_yaw and rotation increments do); "
            "narrow what the policy sees, e.g. --state ee.x,ee.y,ee.z"
        )
    return _Plan(tuple(points), tuple(yaws), tuple(pseudo))


class MirrorAugment:
    """Reflects a random `fraction` of a `WindowDataset` batch (observation windows and action
    chunks together) across a task's mirror plane."""

    def __init__(
        self,
        mirror: MirrorSymmetry,
        names: dict[str, list[str]],
        looked_at: dict[str, set[int]],
        fraction: float = 0.5,
        seed: int = 0,
    ):
        """`names`: the entry names of each feature to reflect (the obs keys and `action`);
        `looked_at`: per key, the entries the policy reads (every one must reflect)."""
        self.fraction = fraction
        # float64 masters, cast to each batch's dtype: the normalizer ranges reflect in float64
        self.matrix = torch.as_tensor(mirror.matrix(), dtype=torch.float64)
        self.point = torch.as_tensor(mirror.point, dtype=torch.float64)
        self.plans = {
            key: _plan(list(entries), looked_at.get(key, set()), mirror, key)
            for key, entries in names.items()
        }
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: dict) -> dict:
        rows = torch.from_numpy(self.rng.random(len(batch["action"])) < self.fraction)
        mirrored = self.reflect_batch(batch)
        out = dict(batch)
        for key in self.plans:
            chosen = rows.view(-1, *[1] * (batch[key].dim() - 1))
            out[key] = torch.where(chosen, mirrored[key], batch[key])
        return out

    def reflect_batch(self, batch: dict) -> dict:
        """Every window of `batch` mirrored."""
        out = dict(batch)
        for key, plan in self.plans.items():
            out[key] = self.reflect(batch[key], plan)
        return out

    def widen(self, low: np.ndarray, high: np.ndarray, key: str, columns) -> tuple:
        """Min/max of feature `key` over its rows `columns` and their mirror images (the
        normalizers must span both, or mirrored targets fall outside [-1, 1])."""
        mirrored = self.reflect(
            torch.as_tensor(np.asarray(columns), dtype=torch.float64), self.plans[key]
        ).numpy()
        return np.minimum(low, mirrored.min(0)), np.maximum(high, mirrored.max(0))

    def reflect(self, values: torch.Tensor, plan: _Plan) -> torch.Tensor:
        """The mirror image of feature vectors [..., D]."""
        out = values.clone()
        m, point = self.matrix.to(values.dtype), self.point.to(values.dtype)
        for x, y in plan.points:
            out[..., [x, y]] = (values[..., [x, y]] - point) @ m.T + point
        for c, s, offset in plan.yaws:
            cos_b, sin_b = math.cos(offset), math.sin(offset)
            cos_a, sin_a = values[..., c], values[..., s]
            out[..., c] = cos_b * cos_a + sin_b * sin_a  # cos(offset - yaw)
            out[..., s] = sin_b * cos_a - cos_b * sin_a  # sin(offset - yaw)
        for rx, ry, rz in plan.pseudo:
            out[..., [rx, ry]] = -(values[..., [rx, ry]] @ m.T)
            out[..., rz] = -values[..., rz]
        return out
