"""Latency compensation for asynchronous chunk execution: plan from the observation as it will
be when the chunk lands, not as it was when inference started.

A chunk requested at tick `r` lands about `d` ticks later (the measured latency). Planned from
the observation of tick `r`, its first `d` actions are already past when it lands, and the rest
were planned for a robot and a scene that have moved on, which a policy trained on fresh
observations handles badly (docs/results.md, deploy strategies). The forecast instead builds
the observation window of tick `r + d` and the chunk is planned to start there:

- robot state entries that are also action entries (absolute action modes: `ee_pos` commands
  `ee.x`, `ee.y`, `ee.z`; `joint_pos` the joint positions) follow the queued actions for
  ticks `r .. r + d - 1` with the arm's tracking lag: each tick an entry closes a fraction `g`
  of the gap to its target, `g` fitted online by least squares from the ticks the loop has run
  (`TrackingGain`; 1, the targets themselves, until it has seen enough motion). The PushT
  Panda in `ee_pos` closes 70% a tick: taking the targets as reached leaves the pusher 5 mm
  off on average, the lag model 1 mm (100 expert demos, one tick ahead);
- every other vector entry (the rest of the robot state, the object poses) continues at its
  last velocity (the difference of the last two frames);
- camera images stay as they are.

The commanded entries come from the queued targets rather than from their own velocity
because the targets say where the arm is going; a velocity extrapolation of the robot state
misses every change of direction the queued actions contain.
"""

from __future__ import annotations

import numpy as np

STATE_KEY = "observation.state"


class TrackingGain:
    """Per commanded entry, the fraction `g` of the gap to its target closed in one tick
    (`after - before = g * (target - before)`), a least-squares fit over the ticks observed.
    Ticks where an entry's target is within `min_gap` of it carry no evidence and are skipped."""

    def __init__(self, size: int, min_samples: int = 20, min_gap: float = 1e-4):
        self.min_samples, self.min_gap = min_samples, min_gap
        self.xx, self.xy = np.zeros(size), np.zeros(size)
        self.count = np.zeros(size, dtype=int)

    def observe(self, before: np.ndarray, target: np.ndarray, after: np.ndarray) -> None:
        """One tick ([k] arrays) or many ([N, k])."""
        size = len(self.xx)
        gap, moved = (target - before).reshape(-1, size), (after - before).reshape(-1, size)
        useful = np.isfinite(gap) & np.isfinite(moved) & (np.abs(gap) > self.min_gap)
        self.xx += np.where(useful, gap * gap, 0.0).sum(axis=0)
        self.xy += np.where(useful, gap * moved, 0.0).sum(axis=0)
        self.count += useful.sum(axis=0)

    @property
    def gain(self) -> np.ndarray:
        fitted = np.clip(self.xy / np.maximum(self.xx, 1e-12), 0.0, 1.5)
        return np.where(self.count >= self.min_samples, fitted, 1.0)


class ObservationForecast:
    """Forecasts an observation window `d` ticks ahead. Works on one window (the deployment
    loop: arrays [n_obs, D]) or a batch of them (training on forecasts: [B, n_obs, D])."""

    def __init__(self, obs_keys, state_names, action_names):
        self.keys = tuple(obs_keys)
        state, actions = list(state_names), list(action_names)
        shared = [name for name in actions if name in state]
        self.action_dim = len(actions)
        self.state_index = np.array([state.index(n) for n in shared], dtype=int)
        self.action_index = np.array([actions.index(n) for n in shared], dtype=int)
        self.tracking = TrackingGain(len(shared))

    def observe(self, state_before, action, state_after) -> None:
        """Ticks run ([D] arrays for one, [N, D] for many): the robot state before and after
        `action`."""
        if len(self.state_index) == 0:
            return
        before = np.asarray(state_before, dtype=np.float64)[..., self.state_index]
        after = np.asarray(state_after, dtype=np.float64)[..., self.state_index]
        target = np.asarray(action, np.float64)[..., self.action_index]
        self.tracking.observe(before, target, after)

    def __call__(self, window: dict, queued) -> dict:
        """`window` (key -> [..., n_obs, D], newest last, of tick r) as it will be at tick
        r + d; `queued`: the actions for ticks r .. r + d - 1, a list (None where none is
        queued) or an array [..., d, A]."""
        if isinstance(queued, list):
            missing = np.full(self.action_dim, np.nan)
            queued = [missing if a is None else np.asarray(a, np.float64) for a in queued]
            queued = np.stack(queued) if queued else np.zeros((0, self.action_dim))
        ahead = queued.shape[-2]
        if ahead == 0:
            return window
        out = dict(window)
        commanded = None
        if STATE_KEY in window and len(self.state_index):
            start = np.asarray(window[STATE_KEY])[..., -1, self.state_index]
            commanded = self._commanded(start, queued)
        for key in self.keys:
            frames = np.asarray(window[key], dtype=np.float32)
            n = frames.shape[-2]
            last = frames[..., -1, :]
            velocity = last - frames[..., -2, :] if n > 1 else np.zeros_like(last)
            new = np.empty_like(frames)
            for j in range(n):
                offset = ahead - (n - 1 - j)  # ticks past the newest frame
                if offset <= 0:
                    new[..., j, :] = frames[..., n - 1 + offset, :]
                    continue
                new[..., j, :] = last + offset * velocity
                # the observation of tick r + offset follows the action of tick r + offset - 1
                if key == STATE_KEY and commanded is not None:
                    new[..., j, self.state_index] = commanded[..., offset - 1, :]
            out[key] = new
        return out

    def _commanded(self, start: np.ndarray, queued: np.ndarray) -> np.ndarray:
        """[..., d, k]: the commanded entries after each queued action, tracking lag included
        (an entry with no action queued, NaN, stays where it is)."""
        gain, now, out = self.tracking.gain, start.astype(np.float64), []
        for i in range(queued.shape[-2]):
            target = queued[..., i, self.action_index]
            now = np.where(np.isnan(target), now, now + gain * (target - now))
            out.append(now)
        return np.stack(out, axis=-2)
