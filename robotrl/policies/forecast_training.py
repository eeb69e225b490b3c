"""Training on forecast observations (`robotrl train --forecast-delay D`): teach the policy the
observations the asynchronous runtime will show it.

With inference latency the deployment loop plans each chunk from a forecast: the window of the
tick the chunk will land, built `d` ticks ahead of the last real observation from the queued
actions (`robotrl.control.forecast.ObservationForecast`). A policy trained only on real windows
meets forecasts out of distribution: their object poses are extrapolations, their commanded
entries sit at the targets. Here a `fraction` of each batch has its window replaced by that
same forecast, built from the frames `d` ticks earlier (d uniform in 1..D) and the demo's own
actions in between, while the action targets stay the demo's from tick t on: the policy learns
what to do given the forecast, including how far to trust it. The rest of the batch keeps real
windows, which is all `sync` (and `eval`) ever shows it. The forecast's tracking lag is fitted
to the demos' own ticks, as the deployment loop fits it to the ticks it runs.
"""

from __future__ import annotations

import numpy as np
import torch

from robotrl.control.forecast import ObservationForecast


class ForecastAugment:
    """Replaces the observation windows of a `WindowDataset(lookback=D)` batch: a real window of
    `n_obs` frames for most samples, a forecast `d` ticks ahead for a `fraction` of them."""

    def __init__(
        self,
        obs_keys: tuple[str, ...],
        state_names,
        action_names,
        n_obs: int,
        max_delay: int,
        fraction: float = 0.5,
        seed: int = 0,
        demos=None,
    ):
        """`demos`: the `Dataset` whose ticks the tracking lag is fitted to (None: no lag)."""
        self.forecast = ObservationForecast(obs_keys, state_names, action_names)
        if demos is not None:
            fit_tracking(self.forecast, demos)
        self.keys, self.n_obs, self.max_delay, self.fraction = obs_keys, n_obs, max_delay, fraction
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: dict) -> dict:
        n, top = self.n_obs, self.n_obs + self.max_delay  # the history holds `top` frames
        before = batch["frames_before"].numpy()
        delay = self.rng.integers(1, self.max_delay + 1, len(before))
        # a forecast needs its n_obs real frames inside the episode
        use = (self.rng.random(len(before)) < self.fraction) & (before >= delay + n - 1)
        delay = np.where(use, delay, 0)
        history = {k: batch[k].numpy() for k in self.keys}
        past = batch["action.past"].numpy().astype(np.float64)
        out = dict(batch)
        windows = {k: np.empty(v[:, :n].shape, v.dtype) for k, v in history.items()}
        for d in np.unique(delay):
            rows = np.flatnonzero(delay == d)
            window = {k: v[rows, top - n - d : top - d] for k, v in history.items()}
            if d:
                window = self.forecast(window, past[rows, self.max_delay - d :])
            for k in self.keys:
                windows[k][rows] = window[k]
        for k in self.keys:
            out[k] = torch.from_numpy(windows[k])
        return out


def fit_tracking(forecast: ObservationForecast, demos) -> None:
    """Feed every tick of every episode (state, action, next state) to the forecast's lag fit."""
    state, action = demos.columns["observation.state"], demos.columns["action"]
    has_next = np.ones(len(state), dtype=bool)
    has_next[np.asarray(demos.ends) - 1] = False  # an episode's last frame has no next one
    rows = np.flatnonzero(has_next)
    forecast.observe(state[rows], action[rows], state[rows + 1])
