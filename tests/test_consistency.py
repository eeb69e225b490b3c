"""Consistency policy: the EDM view of the teacher, boundary condition, distillation, chained
sampling, checkpoints, latency benchmark and the errors a user can cause."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from robotrl.policies.checkpoint import load_policy, save_policy
from robotrl.policies.consistency import ConsistencyPolicy, karras_indices
from robotrl.policies.distill import DistillConfig, distill
from robotrl.policies.train import TrainConfig, train
from tests.test_policies import tiny_policy

ROBOTRL = [sys.executable, "-m", "robotrl.cli.main"]


def test_karras_grid_uses_trained_timesteps_below_sigma_max():
    sigmas = np.geomspace(0.02, 2000, 100)
    grid = karras_indices(sigmas, 20, 7.0, 80.0)
    assert grid[0] == 0 and np.all(np.diff(grid) > 0)
    assert sigmas[grid[-1]] <= 80.0 and sigmas[grid[-1] + 1] > 80.0
    # Karras spacing packs the grid at low noise: the first gap is the smallest in sigma
    assert np.diff(sigmas[grid])[0] == np.diff(sigmas[grid]).min()


def test_student_starts_as_the_teacher_and_keeps_the_boundary_condition():
    teacher = tiny_policy().eval()
    student = ConsistencyPolicy.from_teacher(teacher, sigma_max=80.0).eval()
    window = {"observation.state": torch.rand(4, 2, 5)}
    cond = student.condition(window)
    x = torch.randn(4, 8, 3)
    lowest = torch.zeros(4, dtype=torch.long)
    # f(x, sigma_min) = x exactly: the consistency boundary condition
    torch.testing.assert_close(student.consistency(x, lowest, cond), x, rtol=0, atol=0)
    # at the top of the grid f is (almost exactly) the teacher's denoiser
    top = torch.full((4,), len(student.grid_sigmas) - 1, dtype=torch.long)
    sigma = student.grid_sigmas[top]
    teacher_d = student.denoise(teacher.net, x * sigma[0], student.grid_timesteps[top], sigma, cond)
    torch.testing.assert_close(
        student.consistency(x * sigma[0], top, cond), teacher_d, atol=1e-2, rtol=0
    )
    # with LCM-sharp c_skip that holds at sigma_max = 2 too (EDM's c_skip keeps 6% of x there)
    sharp = ConsistencyPolicy.from_teacher(teacher, sigma_max=2.0).eval()
    top = torch.full((4,), len(sharp.grid_sigmas) - 1, dtype=torch.long)
    sigma = sharp.grid_sigmas[top]
    teacher_d = sharp.denoise(teacher.net, x * sigma[0], sharp.grid_timesteps[top], sigma, cond)
    torch.testing.assert_close(
        sharp.consistency(x * sigma[0], top, cond), teacher_d, atol=2e-3, rtol=0
    )


@pytest.mark.parametrize("steps", [1, 3])
def test_chained_sampling_evaluates_the_network_once_per_step(steps):
    student = ConsistencyPolicy.from_teacher(tiny_policy()).eval()
    student.set_sampler("cm", steps)
    calls = []
    student.net.register_forward_hook(lambda *a: calls.append(1))
    chunk = student.predict_chunk({"observation.state": torch.rand(2, 2, 5)})
    assert chunk.shape == (2, 8, 3) and len(calls) == steps
    assert torch.all(chunk.abs() <= 1 + 1e-6)  # within the action normalizer's range


def test_warm_start_continues_the_previous_chunk_in_one_evaluation():
    student = ConsistencyPolicy.from_teacher(tiny_policy()).eval()
    timesteps = []
    student.net.register_forward_hook(lambda net, args, out: timesteps.append(int(args[1][0])))
    for _ in range(12):  # plans at ticks 0, 4 and 8
        student.select_action({"state": np.full(5, 0.5, np.float32)})
    warm = int((student.grid_sigmas - student.config.warm_sigma).abs().argmin())
    top, warm_t = student.grid_timesteps[-1], student.grid_timesteps[warm]
    assert 0 < warm < len(student.grid_sigmas) - 1
    assert timesteps == [top, warm_t, warm_t]  # the first chunk from noise, then warm

    # At the lowest level f is the identity: what comes back is the previous chunk's
    # unexecuted rest, its last action held to fill the horizon (plus sigma_min noise).
    window = {"observation.state": torch.rand(1, 2, 5)}
    previous = student.predict_chunk(window)[0]
    student.config.warm_sigma = float(student.grid_sigmas[0])
    chunk = student.continue_chunk(window, previous)[0]
    held = torch.cat([previous[4:], previous[-1:].expand(4, -1)])
    assert (chunk - held).abs().max() < 0.15 < (student.predict_chunk(window)[0] - held).abs().max()


@pytest.fixture(scope="module")
def teacher_run(reach_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "run"
    cfg = TrainConfig(
        data=str(reach_data),
        out=str(run),
        steps=30,
        batch_size=32,
        warmup=2,
        save_every=30,
        eval_every=0,
        horizon=8,
        n_action_steps=4,
        threads=1,
    )
    train(cfg, progress=False)
    return run


def test_distillation_lowers_its_loss_and_saves_a_consistency_checkpoint(teacher_run, tmp_path):
    cfg = DistillConfig(
        teacher=str(teacher_run),
        out=str(tmp_path / "cm"),
        steps=40,
        batch_size=32,
        warmup=2,
        lr=3e-4,
        save_every=20,
        eval_every=0,
        threads=1,
    )
    run = distill(cfg, progress=False)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 40 and log[-1]["loss"] < log[0]["loss"]
    student = load_policy(run)
    assert student.kind == "consistency" and student.config.meta["teacher"] == str(teacher_run)
    c = student.config
    window = {k: torch.rand(1, 2, d) for k, d in zip(c.obs_keys, c.obs_dims)}
    a = student.predict_chunk(window, generator=torch.Generator().manual_seed(3))
    save_policy(student, tmp_path / "copy")
    b = load_policy(tmp_path / "copy").predict_chunk(
        window, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the round trip is exact


def test_sample_term_pulls_one_step_chunks_to_the_teachers_own_samples(
    teacher_run,
    reach_data,  # noqa: F811
):
    """Descending the sample term brings the student's 1-step chunks toward what the
    teacher's own sampler makes from the same noise."""
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset
    from robotrl.policies.distill import sample_distance

    torch.manual_seed(0)
    teacher = load_policy(teacher_run).eval()
    student = ConsistencyPolicy.from_teacher(teacher)
    c = teacher.config
    windows = WindowDataset(Dataset(reach_data), c.n_obs, c.horizon, c.obs_keys, c.image_keys)
    items = [windows[i] for i in range(0, len(windows), max(1, len(windows) // 32))]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
    z = torch.randn(len(items), c.horizon, c.action_dim)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-4)
    distances = []
    for _ in range(10):
        loss = sample_distance(student, teacher, batch, z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        distances.append(loss.item())
    assert all(b < a for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] < 0.95 * distances[0], distances


def _run(*args, timeout=120):
    return subprocess.run([*ROBOTRL, *args], capture_output=True, text=True, timeout=timeout)


def test_distill_refuses_a_consistency_teacher_and_mismatched_data(teacher_run, tmp_path):
    student = ConsistencyPolicy.from_teacher(tiny_policy())
    save_policy(student, tmp_path / "student")
    result = _run("distill", "--teacher", str(tmp_path / "student"), "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "must be a diffusion policy" in result.stderr
    from tests.test_data import record

    record(tmp_path / "push", task="PushT", episodes=1)  # other features than the teacher's
    result = _run(
        "distill",
        "--teacher",
        str(teacher_run),
        "--data",
        str(tmp_path / "push"),
        "--out",
        str(tmp_path / "x"),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_corrupt_and_foreign_checkpoints_fail_in_one_line(teacher_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(teacher_run / "policy", bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = _run("eval", "--policy", str(bad), "--task", "Reach", "--episodes", "1")
    assert result.returncode == 2 and "corrupt checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    other = tmp_path / "other"
    shutil.copytree(teacher_run / "policy", other)
    meta = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**meta, "policy": "act"}))
    result = _run("eval", "--policy", str(other), "--task", "Reach", "--episodes", "1")
    assert result.returncode == 2 and "type 'act'" in result.stderr
    result = _run("eval", "--policy", str(teacher_run), "--warm-sigma", "1", "--episodes", "1")
    assert result.returncode == 2 and "--warm-sigma is for consistency" in result.stderr
    # a Reach policy on PushT: observation shapes differ
    result = _run("eval", "--policy", str(teacher_run), "--task", "PushT", "--episodes", "1")
    assert result.returncode == 2 and "policy expects" in result.stderr, result.stderr


def test_bench_policy_measures_the_consistency_speed_up():
    result = _run("bench", "policy", "--json", "--repeats", "5", "--threads", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {r["sampler"]: r for r in json.loads(result.stdout)}
    names = {"DDPM-100", "DDIM-10", "consistency-1", "consistency-3", "consistency-1-warm"}
    assert set(rows) == names
    assert rows["consistency-1-warm"]["warm_start"]
    # 10 network evaluations against 1: even a busy machine shows most of that
    assert rows["consistency-1"]["median_ms"] * 3 < rows["DDIM-10"]["median_ms"]
    assert rows["DDIM-10"]["median_ms"] * 3 < rows["DDPM-100"]["median_ms"]
    assert rows["consistency-1-warm"]["median_ms"] * 3 < rows["DDIM-10"]["median_ms"]


def test_bench_policy_times_the_camera_network_with_its_encoder():
    from robotrl.policies.bench import bench_policy

    only = ("DDIM-10", "consistency-1")
    state = {r["sampler"]: r for r in bench_policy(repeats=3, threads=1, only=only)}
    camera = {r["sampler"]: r for r in bench_policy(repeats=3, threads=1, only=only, cameras=True)}
    assert camera["DDIM-10"]["cameras"] == 2 and state["DDIM-10"]["cameras"] == 0
    # the encoder's two cameras x two frames are in every chunk: the 1-step chunk costs more
    assert camera["consistency-1"]["median_ms"] > state["consistency-1"]["median_ms"]
    assert camera["consistency-1"]["median_ms"] * 2 < camera["DDIM-10"]["median_ms"]
