"""Residual policy around a frozen chunked base: starts as the base, stays within its bound,
round-trips through a checkpoint, runs in the control loop, and `robotrl finetune residual`
fails in one line on bad input (real MuJoCo, tiny untrained bases)."""

import json

import numpy as np
import pytest
import torch

from robotrl.errors import RobotrlError

FPS = 100.0  # Lift's 120 steps take 1.2 s when the control loop paces them


def tiny_base(path, fps: float = 20.0):
    """An untrained diffusion policy for Lift (state 15 + cube 7, 7 actions), saved at `path`."""
    from robotrl.policies.checkpoint import save_policy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    config = DiffusionConfig(
        obs_dims=(15, 7),
        action_dim=7,
        horizon=8,
        n_action_steps=4,
        channels=(8, 16),
        inference_steps=2,
        fps=fps,
        meta={"task": "Lift", "robot": "panda"},
    )
    torch.manual_seed(0)
    high = np.array([0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0])
    low = np.array([-0.01, -0.01, -0.01, -0.05, -0.05, -0.05, 0.0])
    obs_stats = [(-np.ones(15), np.ones(15)), (-np.ones(7), np.ones(7))]
    return save_policy(DiffusionPolicy(config, obs_stats, (low, high)), path)


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("residual") / "base")


def lift_obs(seed: int = 0):
    from robotrl import make

    env = make("Lift")
    obs, _ = env.reset(seed=seed)
    env.close()
    return obs


def test_zero_initialised_residual_acts_exactly_like_its_base(base_path):
    from robotrl.policies.checkpoint import load_policy
    from robotrl.rl.residual import new_residual

    base, residual = load_policy(base_path), new_residual(base_path)
    obs = lift_obs()
    for policy in (base, residual):
        policy.reset()
    torch.manual_seed(1)
    base_actions = [base.select_action(obs) for _ in range(6)]  # two chunks
    torch.manual_seed(1)
    residual_actions = [residual.select_action(obs) for _ in range(6)]
    np.testing.assert_allclose(residual_actions, base_actions, atol=1e-6)


@pytest.mark.parametrize("squash", [False, True])
def test_correction_never_exceeds_the_scale(base_path, squash):
    from robotrl.rl.residual import new_residual

    policy = new_residual(base_path, scale=0.1, squash=squash)
    with torch.no_grad():  # a residual that wants corrections far beyond its bound
        policy.actor.mean.weight.normal_(0, 10.0)
        policy.actor.mean.bias.fill_(5.0)
    obs = {"state": np.random.randn(64, 15), "environment_state": np.random.randn(64, 7)}
    base_action = torch.rand(64, 7) * 0.02 - 0.01
    corrected = policy.correct_batch(obs, base_action)
    norm = policy.base.action_norm
    shift = norm.normalize(corrected) - norm.normalize(base_action)
    assert shift.abs().max() <= 0.1 + 1e-5
    assert shift.abs().max() > 0.09  # and the bound is reached: the correction is not inert


def test_checkpoint_round_trip_references_the_base(base_path, tmp_path):
    from robotrl.policies.checkpoint import load_policy, save_policy
    from robotrl.rl.residual import new_residual

    policy = new_residual(base_path, scale=0.05, meta={"task": "Lift", "robot": "panda"})
    with torch.no_grad():
        policy.actor.mean.bias.normal_(0, 1.0)
    save_policy(policy, tmp_path / "res")
    saved = json.loads((tmp_path / "res" / "config.json").read_text())
    assert saved["policy"] == "residual"
    assert saved["config"]["base"] == str(base_path.resolve())

    loaded = load_policy(tmp_path / "res")
    assert loaded.kind == "residual" and loaded.config.scale == 0.05
    assert loaded.config.horizon == 8 and loaded.config.meta["task"] == "Lift"  # the base's
    obs = {"state": np.random.randn(5, 15), "environment_state": np.random.randn(5, 7)}
    base_action = torch.zeros(5, 7)
    torch.testing.assert_close(
        loaded.correct_batch(obs, base_action), policy.correct_batch(obs, base_action)
    )
    assert not torch.equal(loaded.correct_batch(obs, base_action), base_action)


def test_residual_checkpoint_without_its_base_fails_in_one_line(base_path, tmp_path):
    import shutil

    from robotrl.policies.checkpoint import load_policy, save_policy
    from robotrl.rl.residual import new_residual

    base_copy = shutil.copytree(base_path, tmp_path / "base")
    save_policy(new_residual(base_copy), tmp_path / "res")
    shutil.rmtree(base_copy)
    with pytest.raises(RobotrlError, match="no checkpoint at"):
        load_policy(tmp_path / "res")


def test_control_loop_corrects_every_tick_through_the_safety_layer(tmp_path):
    """Deploy path: the loop's inference worker plans base chunks, the loop applies the
    residual's correction at every tick with that tick's observation."""
    from robotrl import make
    from robotrl.control.inference import InferenceWorker, policy_inference
    from robotrl.control.loop import ControlLoop, LoopConfig
    from robotrl.control.safety import safe
    from robotrl.rl.residual import new_residual

    policy = new_residual(tiny_base(tmp_path / "base", fps=FPS))
    calls = []
    correct = policy.correct_action
    policy.correct_action = lambda obs, action: calls.append(1) or correct(obs, action)
    env = safe(make("Lift", control_hz=FPS))
    worker = InferenceWorker(policy_inference(policy))
    loop = ControlLoop(env, policy, LoopConfig(strategy="sync"), worker=worker)
    try:
        (result,) = loop.run(1, seed=0)
    finally:
        loop.close()
        env.close()
    assert result.steps == 120 and len(calls) == result.steps


@pytest.mark.parametrize(
    "problem, message",
    [
        ("missing", "no base policy at"),
        ("not_a_policy", "no checkpoint at"),
        ("task", "unknown task"),
    ],
)
def test_finetune_user_errors_end_in_one_line(problem, message, base_path, tmp_path, capsys):
    from robotrl.cli.main import main

    base = {"missing": tmp_path / "nope", "not_a_policy": tmp_path}.get(problem, base_path)
    task = ["--task", "Juggle"] if problem == "task" else []
    code = main(["finetune", "residual", "--base", str(base), "--out", str(tmp_path / "r"), *task])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_finetune_sac_writes_a_bounded_residual_that_loads(base_path, tmp_path, capsys):
    from robotrl.cli.main import main
    from robotrl.policies.checkpoint import load_policy

    run = tmp_path / "sac"
    args = ["finetune", "residual", "--base", str(base_path), "--out", str(run), "--algo", "sac"]
    args += ["--envs", "2", "--steps", "64", "--learning-starts", "32", "--buffer", "256"]
    args += ["--batch-size", "32", "--eval-every", "0", "--eval-episodes", "1", "--no-progress"]
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 64 and records[-1]["loss"] > 0  # the critic was updated
    policy = load_policy(run)
    assert policy.kind == "residual" and policy.config.squash
    assert policy.config.meta["algo"] == "sac" and (run / "curves.png").is_file()
