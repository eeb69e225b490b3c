"""Joint-space trajectories: the speed-limited drive home, and what the sim robot node does
with a `trajectory_msgs/JointTrajectory` (linear interpolation between points, as
joint_trajectory_controller does with positions only)."""

from __future__ import annotations

import numpy as np


class Trajectory:
    """Positions `points[i]` reached `times[i]` seconds after `start`, from `initial`."""

    def __init__(self, start: float, initial: np.ndarray, times, points):
        self.start = start
        self.times = np.concatenate([[0.0], np.asarray(times, float)])
        self.points = np.vstack([initial, *points]) if len(points) else initial[None]

    def sample(self, now: float) -> np.ndarray:
        t = now - self.start
        if t >= self.times[-1]:
            return self.points[-1].copy()
        i = int(np.searchsorted(self.times, t, side="right"))
        t0, t1 = self.times[i - 1], self.times[i]
        w = 0.0 if t1 <= t0 else (t - t0) / (t1 - t0)
        return (1 - w) * self.points[i - 1] + w * self.points[i]

    @property
    def duration(self) -> float:
        return float(self.times[-1])


def home_trajectory(
    q: np.ndarray, home: np.ndarray, max_velocity: np.ndarray, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Waypoints (times, positions) from `q` to `home` in a straight joint-space line whose
    slowest-allowed joint sets the pace: no joint exceeds its `max_velocity`. The profile
    eases in and out (smoothstep) so the start and the stop are gentle; the peak speed of a
    smoothstep is 1.5x the mean, so the duration is stretched by that factor."""
    q, home = np.asarray(q, float), np.asarray(home, float)
    distance = np.abs(home - q)
    duration = float(np.max(1.5 * distance / np.asarray(max_velocity, float), initial=0.0))
    if duration < 1e-6:
        return np.array([0.0]), home[None]
    n = max(2, int(np.ceil(duration * rate)))
    s = np.linspace(0.0, 1.0, n + 1)[1:]
    ease = s * s * (3 - 2 * s)
    return s * duration, q + ease[:, None] * (home - q)
