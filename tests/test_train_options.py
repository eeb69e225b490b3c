"""Training options beyond the defaults: network widths, the observation encoder, --focus
and a --minutes time budget (planned steps, kept across a resume)."""

import json
import time

import numpy as np
import pytest
import torch

from robotrl.errors import RobotrlError
from robotrl.policies.checkpoint import load_policy
from robotrl.policies.consistency import ConsistencyPolicy
from robotrl.policies.train import train
from tests.test_policies import Crash, _cfg


def test_channels_set_the_network_widths(reach_data, tmp_path):
    from robotrl.errors import RobotrlError

    run = train(_cfg(reach_data, tmp_path / "run", 2, channels="16,32"), progress=False)
    policy = load_policy(run)
    assert policy.config.channels == (16, 32)
    assert sum(p.numel() for p in policy.net.parameters()) < 200_000
    for bad in ("16,abc", "", "12,24"):
        with pytest.raises(RobotrlError, match="--channels"):
            train(_cfg(reach_data, tmp_path / "bad", 2, channels=bad), progress=False)


def test_obs_encoder_features_join_the_conditioning(reach_data, tmp_path):
    from robotrl.errors import RobotrlError

    run = train(_cfg(reach_data, tmp_path / "run", 2, obs_encoder_dim=16), progress=False)
    policy = load_policy(run)
    raw = policy.config.n_obs * sum(policy.config.obs_dims)
    assert policy.config.obs_encoder_dim == 16
    assert policy.cond_dim == raw + 16
    window = {
        k: torch.randn(3, policy.config.n_obs, d)
        for k, d in zip(policy.config.obs_keys, policy.config.obs_dims)
    }
    cond = policy.condition(window)
    assert cond.shape == (3, raw + 16)
    # the raw history comes first; the features are a function of it
    assert torch.equal(cond[:, raw:], policy.obs_encoder(cond[:, :raw]))
    other = {k: v + 0.5 for k, v in window.items()}
    assert not torch.allclose(policy.condition(other)[:, raw:], cond[:, raw:])
    horizon, action_dim = policy.config.horizon, policy.config.action_dim
    assert policy.predict_chunk(window).shape == (3, horizon, action_dim)
    student = ConsistencyPolicy.from_teacher(policy)  # the encoder's weights come along
    assert torch.equal(student.condition(window), cond)
    with pytest.raises(RobotrlError, match="--obs-encoder-dim"):
        train(_cfg(reach_data, tmp_path / "bad", 2, obs_encoder_dim=-1), progress=False)


def test_focus_draws_high_reward_windows_more_often(reach_data, tmp_path, monkeypatch):
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset

    reward = Dataset(reach_data).columns["next.reward"].ravel()
    above = float(np.median(reward))
    drawn = []  # the rows of every batch training draws
    get = WindowDataset.__getitem__
    monkeypatch.setattr(WindowDataset, "__getitem__", lambda s, i: drawn.append(i) or get(s, i))
    cfg = _cfg(reach_data, tmp_path / "run", 40, focus=3.0, focus_above=above)
    train(cfg, progress=False)
    rows = np.concatenate([np.atleast_1d(i) for i in drawn if np.size(i) == 16])
    high = reward[rows] > above
    share = (reward > above).mean()
    # drawn 4x as often: their share of the draws is 4s / (4s + 1 - s)
    assert high.mean() == pytest.approx(4 * share / (3 * share + 1), abs=0.08)
    with pytest.raises(RobotrlError, match="--focus must be >= 0"):
        train(_cfg(reach_data, tmp_path / "bad", 2, focus=-1.0), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_time_budget_plans_the_steps_and_a_resumed_run_keeps_the_plan(
    reach_data, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    from robotrl.policies import runs

    budget = 0.1  # minutes
    small = dict(minutes=budget, warmup=100, channels="16,32", save_every=1000)
    started = time.monotonic()
    train(_cfg(reach_data, tmp_path / "budget", 5, **small), progress=False)
    took = time.monotonic() - started
    plan = json.loads((tmp_path / "budget/plan.json").read_text())
    log = [json.loads(line) for line in (tmp_path / "budget/log.jsonl").read_text().splitlines()]
    assert plan["steps"] > runs.PROBE[1] and log[-1]["step"] == plan["steps"]
    assert 0.5 * budget * 60 < took < 1.5 * budget * 60 + 5  # + loading the dataset
    # the plan is an ordinary --steps run: the same steps give the same weights
    small.pop("minutes")
    train(_cfg(reach_data, tmp_path / "fixed", plan["steps"], **small), progress=False)
    a = load_file(tmp_path / "budget/policy/model.safetensors")
    b = load_file(tmp_path / "fixed/policy/model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

    save_state = runs.save_state

    def save_then_crash(path, step, *args):
        save_state(path, step, *args)
        if step == 2 * runs.PROBE[1]:
            raise Crash  # killed after the plan was made

    monkeypatch.setattr(runs, "save_state", save_then_crash)
    small.update(minutes=budget, save_every=runs.PROBE[1])
    cfg = _cfg(reach_data, tmp_path / "killed", 5, **small)
    with pytest.raises(Crash):
        train(cfg, progress=False)
    monkeypatch.setattr(runs, "save_state", save_state)
    planned = json.loads((tmp_path / "killed/plan.json").read_text())["steps"]
    train(_cfg(reach_data, tmp_path / "killed", 5, **small), progress=False)
    log = [json.loads(line) for line in (tmp_path / "killed/log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == planned
    with pytest.raises(RobotrlError, match="--minutes must be >= 0"):
        train(_cfg(reach_data, tmp_path / "bad", 2, minutes=-1.0), progress=False)
    assert not (tmp_path / "bad").exists()
