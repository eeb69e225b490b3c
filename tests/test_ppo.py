"""Residual PPO: GAE by hand, the clipped update learns a trivially learnable objective, and a
`robotrl finetune residual` process killed with SIGKILL resumes from its last checkpoint
(real MuJoCo, real processes, a tiny untrained base)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from robotrl.rl.finetune import FinetuneConfig
from robotrl.rl.ppo import gae, mlp, ppo_update
from robotrl.rl.residual import ResidualActor
from tests.test_residual import tiny_base


def test_gae_matches_a_hand_computation():
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[0.0], [1.0], [0.0]])
    values = torch.tensor([[0.5], [0.6], [0.7]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends at step 1
    next_value = torch.tensor([0.8])
    d2 = 0.0 + gamma * 0.8 - 0.7
    d1 = 1.0 - 0.6  # terminal: no bootstrap
    d0 = 0.0 + gamma * 0.6 - 0.5
    expected = [d0 + gamma * lam * d1, d1, d2]
    got = gae(rewards, values, dones, next_value, gamma, lam)[:, 0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_ppo_update_learns_a_trivial_objective():
    """Advantage = closeness of the sampled correction to a target: the zero-initialised mean
    must move to the target, and the critic must fit its targets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: more threads only contend for the cores
    try:
        _learn_trivial_objective()
    finally:
        torch.set_num_threads(threads)


def _learn_trivial_objective():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    target = torch.tensor([0.6, -0.4])
    actor, critic = ResidualActor(3, 2, 32, squash=False, init_log_std=-1.0), mlp(3, 32, 1)
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=3e-3)
    cfg = FinetuneConfig(epochs=4, minibatch=128, target_kl=1.0)
    features = torch.randn(512, 3)
    value_targets = features[:, 0].clone()
    first_v_loss = None
    for _ in range(15):
        with torch.no_grad():
            mean, log_std = actor(features)
            samples = mean + log_std.exp() * torch.randn(mean.shape)
            logprobs = torch.distributions.Normal(mean, log_std.exp()).log_prob(samples).sum(-1)
        batch = {
            "features": features,
            "samples": samples,
            "logprobs": logprobs,
            "advantages": -(samples - target).pow(2).sum(-1),
            "targets": value_targets,
        }
        stats = ppo_update(actor, critic, optimizer, batch, cfg, rng)
        first_v_loss = first_v_loss or stats["v_loss"]
    with torch.no_grad():
        mean, _ = actor(features)
    assert (mean.mean(0) - target).abs().max() < 0.15
    assert stats["v_loss"] < 0.3 * first_v_loss


def test_finetune_resumes_after_sigkill(tmp_path):
    base = tiny_base(tmp_path / "base")
    run = tmp_path / "run"

    def command(steps: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "robotrl.cli.main",
            *("finetune", "residual", "--base", str(base), "--out", str(run)),
            *("--envs", "2", "--rollout", "16", "--minibatch", "16", "--steps", str(steps)),
            *("--save-every", "32", "--eval-every", "0", "--eval-episodes", "1"),
            "--no-progress",
        ]

    env = {**os.environ, "MUJOCO_GL": "egl"}
    first = subprocess.Popen(command(10**6), env=env, stdout=subprocess.PIPE, text=True)
    state = run / "state" / "state.json"
    deadline = time.monotonic() + 120
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 64):
        assert first.poll() is None, "the run ended before it was killed"
        assert time.monotonic() < deadline, "no checkpoint at env step 64 within 120 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = json.loads(state.read_text())["step"]  # the checkpoint survived the kill

    second = subprocess.run(command(killed_at + 32), env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert f"resuming {run} from env step {killed_at}" in second.stdout
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(32, killed_at + 32 + 1, 32))  # no step lost or done twice
    saved = json.loads((run / "policy" / "config.json").read_text())
    assert saved["step"] == killed_at + 32 and saved["policy"] == "residual"
