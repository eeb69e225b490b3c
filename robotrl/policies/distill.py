"""`robotrl distill`: consistency distillation of a trained diffusion policy (the teacher)
into a consistency policy that samples a chunk in 1 (or a few) network evaluations.

The loss, per batch (Song et al. 2023, consistency distillation, as in Consistency Policy):
  pick a grid level n, noise the demonstrated chunk to x_n = x0 + sigma_n z,
  take k Heun steps of the teacher's probability-flow ODE down to sigma_{n-k} (multistep
  consistency distillation; k = 1 is Song et al.'s original),
  and pull the student's f(x_n, sigma_n) toward the target network's f(x_{n-k}, sigma_{n-k})
  (pseudo-Huber distance; the target is a slow EMA of the student),
  plus the teacher's own denoising loss on the student (as CTM and Consistency Policy add):
  over a few hundred steps it keeps the student a good denoiser while the consistency term
  moves it;
  plus, with `sample_weight`, the student's 1-step chunk from sigma_max z pulled to the
  teacher's own DDIM sample from the same z (the s = 0 end of CTM's soft consistency, with
  the teacher's whole trajectory as the solver). The grid stops at sigma_max = 2, where the
  teacher's ODE started from noise ends in a worse chunk than its full sampler does; the
  consistency term alone can only reach the former, this term aims at the latter (measured
  effects of both terms: docs/results.md).
Both sides of a step land on the same trajectory's end point exactly when the student is
consistent along the teacher's ODE. The student starts from the teacher's weights.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from robotrl.errors import RobotrlError
from robotrl.policies.distributed import randint, randn, ranks
from robotrl.policies.runs import LoopConfig, check_loop_config, ema_update, fit


@dataclass
class DistillConfig(LoopConfig):
    teacher: str = field(default="", metadata={"help": "diffusion run or checkpoint directory"})
    out: str = field(default="runs/consistency", metadata={"help": "run directory (resumes)"})
    data: str = field(default="", metadata={"help": "dataset (default: the teacher's)"})
    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=64, metadata={"help": "windows per step"})
    lr: float = field(default=3e-5, metadata={"help": "peak learning rate"})
    warmup: int = field(default=50, metadata={"help": "warm-up steps"})
    target_decay: float = field(default=0.95, metadata={"help": "EMA decay of the target net"})
    grid_points: int = field(default=20, metadata={"help": "noise levels of the ODE grid"})
    sigma_max: float = field(default=2.0, metadata={"help": "top noise level of the grid"})
    sample_steps: int = field(default=1, metadata={"help": "default sampling steps per chunk"})
    skip_scale: float = field(default=10.0, metadata={"help": "how sharply c_skip falls off"})
    teacher_steps: int = field(
        default=1, metadata={"help": "grid levels the teacher descends per target"}
    )
    dsm_weight: float = field(
        default=1.0, metadata={"help": "weight of the denoising loss that anchors the student"}
    )
    sample_weight: float = field(
        default=1.0,
        metadata={"help": "weight of pulling the 1-step chunk to the teacher's own sample"},
    )
    freeze_encoder: bool = field(
        default=True,
        metadata={
            "help": "camera teachers: keep the teacher's image encoder in the student as it "
            "is and encode each batch once for teacher, target and student"
        },
    )


def distill(cfg: DistillConfig, progress: bool = True) -> Path:
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.consistency import ConsistencyPolicy

    if not cfg.teacher:
        raise RobotrlError("--teacher is required: a diffusion run or checkpoint directory")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    teacher = load_policy(cfg.teacher)
    if teacher.kind != "diffusion":
        raise RobotrlError(f"--teacher must be a diffusion policy, {cfg.teacher} is {teacher.kind}")
    teacher.requires_grad_(False).eval()
    data = cfg.data or teacher.config.meta.get("data", "")
    if not data:
        raise RobotrlError("--data is required: the teacher does not name its dataset")
    config = teacher.config
    dataset = Dataset(data)
    needed = (*config.obs_keys, *config.image_keys, "action")
    missing = [k for k in needed if k not in dataset.features]
    if missing:
        raise RobotrlError(f"{data} lacks {', '.join(missing)}, which the teacher was trained on")
    expected = {**dict(zip(config.obs_keys, config.obs_dims)), "action": config.action_dim}
    for key, dim in expected.items():
        if tuple(dataset.features[key]["shape"]) != (dim,):
            raise RobotrlError(
                f"{data}: {key} has shape {tuple(dataset.features[key]['shape'])}, the teacher "
                f"was trained on ({dim},)"
            )
    windows = WindowDataset(
        dataset, config.n_obs, config.horizon, config.obs_keys, config.image_keys
    )
    if config.image_keys:  # every frame decoded once, up front
        dataset.preload_videos()

    student = ConsistencyPolicy.from_teacher(
        teacher,
        grid_points=cfg.grid_points,
        sigma_max=cfg.sigma_max,
        sample_steps=cfg.sample_steps,
        skip_scale=cfg.skip_scale,
    )
    student.config.meta = {**config.meta, "teacher": str(cfg.teacher)}
    frozen = cfg.freeze_encoder and student.image_encoder is not None
    if frozen:  # teacher, student and target then share one encoder: one pass per batch
        student.image_encoder.requires_grad_(False)
    target = copy.deepcopy(student).requires_grad_(False)
    sigmas = student.grid_sigmas
    levels = len(sigmas)

    def heun_step(x, hi, lo, cond):
        """One Heun step of the teacher's ODE from grid level `hi` down to level `lo`."""
        s_hi, s_lo = sigmas[hi].view(-1, 1, 1), sigmas[lo].view(-1, 1, 1)
        t_hi, t_lo = student.grid_timesteps[hi], student.grid_timesteps[lo]
        d_hi = (x - student.denoise(teacher.net, x, t_hi, s_hi, cond).clamp(-1, 1)) / s_hi
        x_lo = x + (s_lo - s_hi) * d_hi
        d_lo = (x_lo - student.denoise(teacher.net, x_lo, t_lo, s_lo, cond).clamp(-1, 1)) / s_lo
        return x + (s_lo - s_hi) * (d_hi + d_lo) / 2

    def teacher_descent(x, level, cond):
        """`cfg.teacher_steps` Heun steps down the grid (stopping at its lowest level): the
        target then sits several levels below the student's input, so what the boundary
        condition pins down reaches the top of the grid in fewer hops of the EMA target."""
        for _ in range(cfg.teacher_steps):
            moving = level > 0
            if not moving.any():
                break
            lower = (level - 1).clamp(min=0)
            stepped = heun_step(x, level, lower, cond)
            x = torch.where(moving.view(-1, 1, 1), stepped, x)
            level = lower
        return x, level

    def loss_fn(batch: dict, generator: torch.Generator) -> torch.Tensor:
        x0 = student.encode_actions(batch["action"].float(), batch)
        level = randint(1, levels, (len(x0),), generator)
        z = randn(x0.shape, generator)
        x_hi = x0 + sigmas[level].view(-1, 1, 1) * z
        with torch.no_grad():  # the student's encoder: its train-time crops, once
            features = student.image_encoder(batch) if frozen else None
            x_lo, lower = teacher_descent(x_hi, level, teacher.condition(batch, features))
            goal = target.consistency(x_lo, lower, target.condition(batch, features))
        predicted = student.consistency(x_hi, level, student.condition(batch, features))
        diff = predicted - goal
        if "action_is_pad" in batch:  # padded steps past the episode end teach nothing
            diff = diff * (~batch["action_is_pad"])[..., None]
        loss = pseudo_huber(diff).mean()
        if cfg.dsm_weight:
            loss = loss + cfg.dsm_weight * student.loss(batch, generator, features)
        if cfg.sample_weight:
            z = randn(batch["action"].shape, generator)
            distance = sample_distance(student, teacher, batch, z, features)
            loss = loss + cfg.sample_weight * distance
        return loss

    def after_step(step: int) -> None:
        ema_update(target, student, cfg.target_decay)

    check_loop_config(cfg)
    run = Path(cfg.out)
    if ranks().main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "distill_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    modules = {"target": target}
    fit(run, cfg, student, loss_fn, windows, modules, after_step, progress, fine_tune=True)
    return run


def pseudo_huber(diff: torch.Tensor) -> torch.Tensor:
    """Song & Dhariwal 2023's distance per chunk of `diff` [B, H, A], c = 0.00054 sqrt(H A)."""
    c = 0.00054 * diff[0].numel() ** 0.5
    return (diff.flatten(1).pow(2).sum(1) + c**2).sqrt() - c


def sample_distance(student, teacher, batch: dict, z: torch.Tensor, features=None) -> torch.Tensor:
    """How far the student's 1-step chunk from sigma_max * z lies from the teacher's full
    sampler (DDIM from its first timestep) run on the same z, averaged over the batch: the
    top of the grid learns where the teacher's whole trajectory ends, not where its ODE ends
    when started at sigma_max. `features`: the batch's image features, shared by both."""
    goal = teacher.sample(teacher.condition(batch, features), z)
    top = torch.full((len(z),), len(student.grid_sigmas) - 1)
    cond = student.condition(batch, features)
    chunk = student.consistency(student.grid_sigmas[-1] * z, top, cond)
    return pseudo_huber(chunk - goal).mean()
