"""DPPO: the denoising chain's log-likelihoods are those of its Gaussian steps, a few updates
move the chunk and leave a plain diffusion checkpoint, and a killed run resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from tests.test_residual import lift_obs, tiny_base


def _ddim_mean(policy, x, t, t_prev, cond):
    """DDIM (eta = 0; the x0 estimate clipped to [-1, 1], the noise estimate kept) written
    out from the noise schedule."""
    alphas = policy.train_scheduler.alphas_cumprod
    a_t = alphas[t]
    a_prev = alphas[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    eps = policy.net(x, torch.full((len(x),), t), cond)
    x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def test_chain_log_likelihoods_are_the_gaussian_steps_of_ddim(tmp_path):
    from robotrl.policies.checkpoint import load_policy
    from robotrl.rl.dppo import Chain

    policy = load_policy(tiny_base(tmp_path / "base")).eval()
    std, steps = 0.2, 4
    chain = Chain(policy, steps, std)
    cond = torch.randn(5, policy.cond_dim)
    chains, logps = chain.sample(cond, torch.Generator().manual_seed(0))
    assert chains.shape == (5, steps + 1, policy.config.horizon, policy.config.action_dim)
    stride = policy.config.train_steps // steps
    with torch.no_grad():
        for k in range(steps):
            t = policy.config.train_steps - stride * (k + 1)  # DDIM's timesteps, high to low
            mean = _ddim_mean(policy, chains[:, k], t, t - stride, cond)
            direct = torch.distributions.Normal(mean, std).log_prob(chains[:, k + 1]).mean((1, 2))
            torch.testing.assert_close(logps[:, k], direct, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(chain.log_probs(chains, cond), logps, rtol=1e-5, atol=1e-5)
    # the mean chain (no exploration noise) is the policy's own DDIM sampler, as `eval` runs it
    noise = torch.randn(5, policy.config.horizon, policy.config.action_dim)
    x = noise
    with torch.no_grad():
        for k in range(steps):
            x = chain.mean(k, x, cond)
        torch.testing.assert_close(x.clamp(-1, 1), policy.sample(cond, noise))


def _dppo_command(base, run, steps, lr="1e-5"):
    return [
        sys.executable,
        "-m",
        "robotrl.cli.main",
        *("finetune", "dppo", "--base", str(base), "--out", str(run), "--steps", str(steps)),
        *("--envs", "2", "--rollout", "16", "--minibatch", "8", "--epochs", "2", "--lr", lr),
        *("--denoise-steps", "2", "--save-every", "32", "--eval-every", "0", "--no-progress"),
    ]


def test_a_few_dppo_updates_move_the_chunk_and_stay_a_diffusion_checkpoint(tmp_path):
    from robotrl.policies.checkpoint import load_policy

    base = tiny_base(tmp_path / "base")
    run = tmp_path / "run"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    result = subprocess.run(
        _dppo_command(base, run, 64, lr="1e-3"), env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tuned, before = load_policy(run / "policy").eval(), load_policy(base).eval()
    assert tuned.kind == "diffusion" and (tuned.config.sampler, tuned.sampler_steps) == ("ddim", 2)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 64 and log[-1]["decisions"] > 0
    obs = lift_obs()
    window = {
        "observation.state": torch.as_tensor(obs["state"])[None, None].expand(1, 2, -1),
        "observation.environment_state": torch.as_tensor(obs["environment_state"])[
            None, None
        ].expand(1, 2, -1),
    }
    before.set_sampler("ddim", 2)
    a = before.predict_chunk(window, generator=torch.Generator().manual_seed(1))
    b = tuned.predict_chunk(window, generator=torch.Generator().manual_seed(1))
    assert (a - b).abs().max() > 1e-4  # the updates moved the denoiser


def test_dppo_resumes_after_sigkill(tmp_path):
    base = tiny_base(tmp_path / "base")
    run = tmp_path / "run"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    first = subprocess.Popen(_dppo_command(base, run, 10**6), env=env, stdout=subprocess.PIPE)
    state = run / "state" / "state.json"
    deadline = time.monotonic() + 120
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 64):
        assert first.poll() is None, "the run ended before it was killed"
        assert time.monotonic() < deadline, "no checkpoint at env step 64 within 120 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = json.loads(state.read_text())["step"]
    second = subprocess.run(
        _dppo_command(base, run, killed_at + 32), env=env, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming {run} from env step {killed_at}" in second.stdout
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(32, killed_at + 32 + 1, 32))
