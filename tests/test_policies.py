"""Diffusion policy: checkpoints (no pickle), the action queue, resumable deterministic training."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from robotrl.errors import RobotrlError
from robotrl.policies.checkpoint import CheckpointError, load_policy, save_policy
from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robotrl.policies.train import TrainConfig, train

ROBOTRL = [sys.executable, "-m", "robotrl.cli.main"]


def tiny_policy(**overrides) -> DiffusionPolicy:
    config = DiffusionConfig(
        obs_keys=("observation.state",),
        obs_dims=(5,),
        action_dim=3,
        n_obs=2,
        horizon=8,
        n_action_steps=4,
        channels=(16, 32),
        **overrides,
    )
    torch.manual_seed(0)
    return DiffusionPolicy(config, [(np.zeros(5), np.ones(5))], (-np.ones(3), np.ones(3)))


def test_checkpoint_round_trip_is_exact(tmp_path):
    policy = tiny_policy()
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    window = {"observation.state": torch.rand(3, 2, 5)}
    a = policy.eval().predict_chunk(window, generator=torch.Generator().manual_seed(1))
    b = loaded.predict_chunk(window, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 8, 3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert json.loads((tmp_path / "ckpt/config.json").read_text())["policy"] == "diffusion"


def test_pickles_are_refused(tmp_path):
    torch.save(tiny_policy().state_dict(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="refusing to load .* pickle"):
        load_policy(tmp_path / "model.pt")
    disguised = tmp_path / "weights.data"
    disguised.write_bytes((tmp_path / "model.pt").read_bytes())
    with pytest.raises(CheckpointError, match="pickle"):
        load_policy(disguised)
    result = subprocess.run(
        [*ROBOTRL, "eval", "--policy", str(tmp_path / "model.pt"), "--task", "Reach"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "refusing to load" in result.stderr


class RenamedDiffusion(DiffusionPolicy):
    kind = "renamed-diffusion"


def test_a_checkpoint_picks_a_registered_kind_and_never_names_a_module(tmp_path, monkeypatch):
    from robotrl.policies import checkpoint

    save_policy(tiny_policy(), tmp_path / "ckpt")
    config = tmp_path / "ckpt/config.json"
    meta = json.loads(config.read_text())
    config.write_text(json.dumps({**meta, "policy": "os.system"}))
    with pytest.raises(CheckpointError, match="'os.system'; this version knows diffusion, "):
        load_policy(tmp_path / "ckpt")
    monkeypatch.setitem(
        checkpoint.POLICY_KINDS, "renamed-diffusion", checkpoint.POLICY_KINDS["diffusion"]
    )
    checkpoint.register_policy_kind(
        "renamed-diffusion", __name__, "RenamedDiffusion", "DiffusionConfig"
    )
    config.write_text(json.dumps({**meta, "policy": "renamed-diffusion"}))
    assert type(load_policy(tmp_path / "ckpt")) is RenamedDiffusion


def test_select_action_executes_n_action_steps_per_chunk():
    policy = tiny_policy().eval()
    calls = []
    original = policy.predict_chunk
    policy.predict_chunk = lambda window: calls.append(window) or original(window)
    policy.reset()
    actions = [policy.select_action({"state": np.full(5, 0.5, np.float32)}) for _ in range(9)]
    assert len(calls) == 3  # steps 0, 4, 8 plan; the rest come from the queue
    assert all(a.shape == (3,) and np.all(np.abs(a) <= 1 + 1e-6) for a in actions)
    first_window = calls[0]["observation.state"]
    torch.testing.assert_close(first_window[0, 0], first_window[0, 1])  # history padded at start


def test_deterministic_samplers_solve_the_same_ode():
    """DDIM and DPM-Solver integrate the probability-flow ODE. With the exact noise predictor
    of Gaussian data N(mu, s^2), that ODE carries noise z to mu + s * z, so 10 steps of either
    must land there. (DPM-Solver without clipping its x0 estimate divided by alpha ~ 0 at the
    cosine schedule's first step: every chunk saturated at +-1 and PushT scored 0%.) At as many
    solver steps as training steps diffusers' DPM-Solver gives NaN: refused with a clear error."""
    policy = tiny_policy().eval()
    mu, s = 0.3, 0.2
    alphas = policy.train_scheduler.alphas_cumprod

    def slightly_wrong_eps(sample, step, cond):  # a trained network is never exact
        a = alphas[step].view(-1, 1, 1)
        return (1 - a).sqrt() * (sample - a.sqrt() * mu) / (a * s**2 + 1 - a) + 0.05

    policy.net.forward = slightly_wrong_eps
    noise = torch.randn(64, policy.config.horizon, policy.config.action_dim)
    cond = torch.zeros(64, policy.cond_dim)
    target = (mu + s * noise).clamp(-1, 1)
    for kind in ("ddim", "dpm"):
        policy.set_sampler(kind, 10)
        error = (policy.sample(cond, noise.clone()) - target).abs().mean().item()
        assert error < 0.1, (kind, error)
    with pytest.raises(RobotrlError, match="at most 99 steps"):
        policy.set_sampler("dpm", policy.config.train_steps)


def test_candidates_continue_the_previous_chunk():
    """With several candidates per plan, the executed chunk is the one whose start lies
    closest to what the previous chunk planned for those ticks: the seam between chunks
    shrinks against single sampling, at one batched network pass per plan."""

    def seams(candidates: int) -> float:
        policy = tiny_policy(candidates=candidates).eval()
        passes, chunks = [], []
        plan, predict = policy.plan, policy.predict_chunk
        policy.predict_chunk = lambda window: (
            passes.append(len(window["observation.state"])) or (predict(window))
        )
        policy.plan = lambda window: chunks.append(plan(window)) or chunks[-1]
        torch.manual_seed(0)
        for _ in range(4 * 20):
            policy.select_action({"state": np.full(5, 0.5, np.float32)})
        assert passes == [1] + [candidates] * 19  # the first plan has nothing to continue
        gaps = [(b[:4] - a[4:]).pow(2).sum().item() for a, b in zip(chunks, chunks[1:])]
        return float(np.mean(gaps))

    assert seams(16) < 0.5 * seams(1)


def _cfg(data, out, steps, **kw):
    small = dict(batch_size=16, warmup=2, save_every=5, eval_every=0, horizon=8, n_action_steps=4)
    return TrainConfig(data=str(data), out=str(out), steps=steps, threads=1, **{**small, **kw})


class Crash(Exception):
    pass


def test_resumed_training_matches_uninterrupted(reach_data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from robotrl.policies import runs as train_module

    train(_cfg(reach_data, tmp_path / "straight", 10), progress=False)
    save_state = train_module.save_state

    def save_then_crash(path, step, *args):
        save_state(path, step, *args)
        if step == 5:
            raise Crash  # dies right after the step-5 checkpoint, as a kill would

    monkeypatch.setattr(train_module, "save_state", save_then_crash)
    with pytest.raises(Crash):
        train(_cfg(reach_data, tmp_path / "resumed", 10), progress=False)
    monkeypatch.setattr(train_module, "save_state", save_state)
    train(_cfg(reach_data, tmp_path / "resumed", 10), progress=False)  # continues from step 5
    a = load_file(tmp_path / "straight/policy/model.safetensors")
    b = load_file(tmp_path / "resumed/policy/model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    log = [json.loads(line) for line in (tmp_path / "resumed/log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 10


def test_sigkill_during_training_then_restart_resumes(reach_data, tmp_path):
    run = tmp_path / "run"

    def args(steps):
        return [
            *ROBOTRL,
            "train",
            "--data",
            str(reach_data),
            "--out",
            str(run),
            "--steps",
            str(steps),
            "--batch-size",
            "16",
            "--save-every",
            "5",
            "--eval-every",
            "0",
            "--horizon",
            "8",
            "--n-action-steps",
            "4",
            "--threads",
            "1",
        ]

    proc = subprocess.Popen(args(200), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / "state/state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads((run / "state/state.json").read_text())["step"]
    assert 0 < saved < 200
    load_policy(run)  # the checkpoint left by the killed run loads
    result = subprocess.run(args(saved + 10), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"resuming {run} from step {saved}" in result.stdout
    assert json.loads((run / "state/state.json").read_text())["step"] > saved


def test_image_policy_trains_and_runs_in_eval(tmp_path):
    from robotrl.policies.evaluate import evaluate
    from tests.test_data import record

    record(tmp_path / "pixels", task="Lift", episodes=2, obs_mode="state+pixels")
    cfg = _cfg(tmp_path / "pixels", tmp_path / "run", 6, cameras="all")
    cfg.batch_size = 8
    run = train(cfg, progress=False)
    policy = load_policy(run)
    assert policy.config.image_keys == ("observation.images.front", "observation.images.wrist")
    assert policy.config.obs_keys == ("observation.state",)  # no privileged state with cameras
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert np.isfinite(log[-1]["loss"])
    result = evaluate(policy, "Lift", episodes=1, progress=False)
    assert result["episodes"] == 1 and result["mean_episode_length"] > 0


def test_evaluation_gives_the_same_figures_in_any_number_of_processes(reach_data, tmp_path):
    """Episode i runs on seed + i for env and sampling noise: two worker processes (the
    policy travels as a checkpoint, with its sampler override) reproduce one process exactly,
    a later episode alone reproduces itself, and the caller's torch RNG is left untouched."""
    from robotrl.policies.evaluate import evaluate

    policy = load_policy(train(_cfg(reach_data, tmp_path / "run", 4), progress=False)).eval()
    policy.set_sampler("ddpm", 5)  # stochastic at every step: scores depend on the noise
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    one = evaluate(policy, "Reach", episodes=3, seed=7, progress=False)
    assert torch.equal(torch.rand(1), before)
    two = evaluate(policy, "Reach", episodes=3, seed=7, progress=False, workers=2)
    assert one["scores"] == two["scores"] and one["lengths"] == two["lengths"]
    assert len(set(one["scores"])) == 3  # episodes differ: the comparison is not vacuous
    alone = evaluate(policy, "Reach", episodes=1, seed=9, progress=False)
    assert alone["scores"] == one["scores"][2:]
    policy.set_sampler("ddpm", 6)
    other = evaluate(policy, "Reach", episodes=3, seed=7, progress=False, workers=2)
    assert other["scores"] != one["scores"]  # the workers sample the way the policy was set


def test_unknown_camera_is_a_one_line_error(reach_data, tmp_path):
    result = subprocess.run(
        [
            *ROBOTRL,
            "train",
            "--data",
            str(reach_data),
            "--out",
            str(tmp_path / "r"),
            "--cameras",
            "top",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no camera 'observation.images.top'" in result.stderr


def test_policy_remembers_its_action_mode(tmp_path):
    """A policy trained on ee_pos demos is evaluated in ee_pos, and an env in another mode is
    refused in one line rather than fed absolute positions as deltas."""
    from robotrl.errors import RobotrlError
    from robotrl.policies.evaluate import check_compatible, evaluate
    from robotrl.tasks import make
    from tests.test_data import record

    record(tmp_path / "pos", task="Reach", episodes=2, action_mode="ee_pos")
    policy = load_policy(train(_cfg(tmp_path / "pos", tmp_path / "run", 4), progress=False))
    assert policy.config.meta["action_mode"] == "ee_pos"
    result = evaluate(policy, "Reach", episodes=1, progress=False)
    assert result["episodes"] == 1
    with pytest.raises(RobotrlError, match="trained on ee_pos actions; .* takes ee_delta"):
        check_compatible(policy, make("Reach"))


def test_state_selection_conditions_on_the_named_entries_only(reach_data, tmp_path):
    """`--state ee.x,ee.y,ee.z`: the policy sees those entries of observation.state (and all
    of the other inputs); the entries left out do not change its chunk, the kept ones do."""
    from robotrl.data.dataset import Dataset
    from robotrl.errors import RobotrlError

    names = list(Dataset(reach_data).features["observation.state"]["names"])
    run = train(_cfg(reach_data, tmp_path / "run", 4, state="ee.x,ee.y,ee.z"), progress=False)
    policy = load_policy(run).eval()
    kept = [names.index(n) for n in ("ee.x", "ee.y", "ee.z")]
    assert policy.config.obs_select[0] == tuple(kept)
    dims = policy.config.obs_dims
    assert policy.cond_dim == 2 * (3 + sum(dims[1:]))
    window = {k: torch.rand(1, 2, d) for k, d in zip(policy.config.obs_keys, dims)}

    def chunk(w):
        return policy.predict_chunk(w, generator=torch.Generator().manual_seed(0))

    other = {k: v.clone() for k, v in window.items()}
    dropped = [i for i in range(dims[0]) if i not in kept]
    other["observation.state"][..., dropped] += 5.0
    torch.testing.assert_close(chunk(window), chunk(other), rtol=0, atol=0)
    other["observation.state"][..., kept[0]] += 5.0
    assert not torch.equal(chunk(window), chunk(other))
    with pytest.raises(RobotrlError, match="observation.state has no 'ee.w'"):
        train(_cfg(reach_data, tmp_path / "bad", 4, state="ee.x,ee.w"), progress=False)
