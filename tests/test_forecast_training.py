"""Training on forecast observations: the windows a `ForecastAugment` batch holds are the
deployment loop's forecasts of real PushT demo frames, and the rest are the real windows."""

import numpy as np
import pytest

from robotrl.control.forecast import ObservationForecast
from robotrl.data.dataset import Dataset
from robotrl.data.windows import WindowDataset
from robotrl.policies.forecast_training import ForecastAugment
from tests.test_data import record

KEYS = ("observation.state", "observation.environment_state")


@pytest.fixture(scope="module")
def push_t(tmp_path_factory):
    root = tmp_path_factory.mktemp("forecast") / "push_t"
    record(root, task="PushT", episodes=1, action_mode="ee_pos")
    return Dataset(root)


def names(dataset):
    return [dataset.features[k]["names"] for k in ("observation.state", "action")]


def test_lookback_windows_reach_back_and_carry_the_actions_in_between(push_t):
    windows = WindowDataset(push_t, n_obs=2, horizon=8, obs_keys=KEYS, lookback=3)
    t = 40
    sample = windows[t]
    columns = push_t.columns
    np.testing.assert_array_equal(
        sample["observation.state"], columns["observation.state"][t - 4 : t + 1]
    )
    np.testing.assert_array_equal(sample["action.past"], columns["action"][t - 3 : t])
    assert int(sample["frames_before"]) == t
    first = windows[1]  # clamped at the episode's first frame
    np.testing.assert_array_equal(first["action.past"][0], columns["action"][0])


def test_forecast_windows_are_the_deploy_forecast_of_earlier_frames(push_t):
    delay, n_obs = 3, 2
    windows = WindowDataset(push_t, n_obs=n_obs, horizon=8, obs_keys=KEYS, lookback=delay)
    rows = np.arange(2, 80)
    batch = windows[rows]
    everything = ForecastAugment(KEYS, *names(push_t), n_obs, delay, fraction=1.0, seed=0)
    out = everything(batch)
    forecast = ObservationForecast(KEYS, *names(push_t))
    columns = push_t.columns
    forecasts = 0
    for i, t in enumerate(rows):
        got = {k: out[k][i].numpy() for k in KEYS}
        assert got["observation.state"].shape == (n_obs, columns["observation.state"].shape[1])
        matches = []
        for d in range(0, delay + 1):
            start = t - d - n_obs + 1
            if start < 0:
                continue
            window = {k: columns[k][start : t - d + 1] for k in KEYS}
            if d:
                window = forecast(window, list(columns["action"][t - d : t]))
            matches.append(all(np.allclose(got[k], window[k], atol=1e-6) for k in KEYS))
        assert any(matches)  # every window is one of these: real (d = 0) or a forecast
        forecasts += not matches[0]
    assert forecasts > 0.8 * len(rows)  # fraction 1: a forecast wherever the episode allows
    # a fraction of ~0: the real windows, the newest n_obs frames of the history
    none = ForecastAugment(KEYS, *names(push_t), n_obs, delay, fraction=1e-9, seed=0)(batch)
    np.testing.assert_array_equal(none["observation.state"], batch["observation.state"][:, -n_obs:])
