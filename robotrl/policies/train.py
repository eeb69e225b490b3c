"""`robotrl train`: fit a diffusion policy to a dataset. One readable loop, top to bottom.

A run directory holds `policy/` (the EMA weights: the checkpoint to deploy), `state/` (raw
weights, optimizer, schedule and RNG states: everything to resume, as safetensors + JSON, no
pickle), `log.jsonl` and `curves.png`. Started again on the same directory after a kill,
training continues from the last saved step and draws the same batches it would have.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robotrl.errors import RobotrlError

OBS_KEYS = ("observation.state", "observation.environment_state")


@dataclass
class TrainConfig:
    data: str = field(default="", metadata={"help": "dataset directory"})
    out: str = field(default="runs/diffusion", metadata={"help": "run directory (resumes)"})
    policy: str = field(default="diffusion", metadata={"help": "policy type"})
    steps: int = field(default=4000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=256, metadata={"help": "windows per step"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    warmup: int = field(default=200, metadata={"help": "warm-up steps"})
    n_obs: int = field(default=2, metadata={"help": "observation history"})
    horizon: int = field(default=16, metadata={"help": "predicted action chunk"})
    n_action_steps: int = field(default=8, metadata={"help": "actions executed per chunk"})
    ema_decay: float = field(default=0.995, metadata={"help": "EMA decay of the weights"})
    save_every: int = field(default=500, metadata={"help": "steps between checkpoints"})
    eval_every: int = field(default=1000, metadata={"help": "steps between success evals; 0 off"})
    eval_episodes: int = field(default=10, metadata={"help": "episodes per evaluation"})
    seed: int = field(default=0, metadata={"help": "seed of everything"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: all cores)"})


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset
    from robotrl.policies.checkpoint import save_policy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    if cfg.policy != "diffusion":
        raise RobotrlError(f"unknown policy type '{cfg.policy}': choose diffusion")
    if not cfg.data:
        raise RobotrlError("--data is required: a dataset directory")
    run = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    # ---- data and model ------------------------------------------------------------------
    dataset = Dataset(cfg.data)
    obs_keys = tuple(k for k in OBS_KEYS if k in dataset.features)
    windows = WindowDataset(dataset, cfg.n_obs, cfg.horizon, obs_keys=obs_keys, image_keys=())
    stats = dataset.stats
    task = next(iter(dataset.tasks.values()), "")
    config = DiffusionConfig(
        obs_keys=obs_keys,
        obs_dims=tuple(dataset.features[k]["shape"][0] for k in obs_keys),
        action_dim=dataset.features["action"]["shape"][0],
        n_obs=cfg.n_obs,
        horizon=cfg.horizon,
        n_action_steps=cfg.n_action_steps,
        fps=dataset.fps,
        meta={"task": task, "robot": dataset.info.get("robot_type"), "data": str(cfg.data)},
    )
    model = DiffusionPolicy(
        config,
        [(stats[k]["min"], stats[k]["max"]) for k in obs_keys],
        (stats["action"]["min"], stats["action"]["max"]),
    )
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine(s, cfg))
    rng = np.random.default_rng(cfg.seed)  # which windows each batch draws
    noise = torch.Generator().manual_seed(cfg.seed)  # diffusion noise and steps
    step = 0
    if (run / "state").is_dir():
        step = _load_state(run / "state", model, ema, optimizer, schedule, rng, noise)
        print(f"resuming {run} from step {step}")
    run.mkdir(parents=True, exist_ok=True)
    (run / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    # ---- loop ----------------------------------------------------------------------------
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=f"train {run.name}",
        unit="step",
        disable=None if progress else True,
    )
    started, losses = time.monotonic(), []
    model.train()
    while step < cfg.steps:
        batch = windows[rng.integers(0, len(windows), cfg.batch_size)]
        loss = model.loss(batch, generator=noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # EMA warm-up
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        bar.update(1)
        if step % 50 == 0 or step % cfg.save_every == 0 or step == cfg.steps:
            record = {
                "step": step,
                "loss": float(np.mean(losses)),
                "lr": schedule.get_last_lr()[0],
                "seconds": time.monotonic() - started,
            }
            losses = []
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps) and task:
                record["success"] = _evaluate(ema, task, config.meta["robot"], cfg)
            bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "success") if k in record})
            with open(run / "log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_policy(ema, run / "policy", {"step": step})
            _save_state(run / "state", step, model, ema, optimizer, schedule, rng, noise)
            plot_curves(run)
    bar.close()
    return run


def _cosine(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _evaluate(policy, task: str, robot: str, cfg: TrainConfig) -> float:
    from robotrl.policies.evaluate import evaluate

    policy.eval()
    result = evaluate(policy, task, robot=robot, episodes=cfg.eval_episodes, progress=False)
    return result["success_rate"]


# ---- resumable state: safetensors for tensors, JSON for the rest ---------------------------
def _save_state(path: Path, step, model, ema, optimizer, schedule, rng, noise) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value)
    tensors["rng.noise"] = noise.get_state()
    meta = {
        "step": step,
        "param_groups": opt["param_groups"],
        "schedule": schedule.state_dict(),
        "rng": rng.bit_generator.state,
    }
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(
        {k: v.detach().contiguous().clone() for k, v in tensors.items()}, tmp / "state.safetensors"
    )
    (tmp / "state.json").write_text(json.dumps(meta, default=_json_default))
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)  # a kill before this line leaves the previous state in place
    shutil.rmtree(old, ignore_errors=True)


def _load_state(path: Path, model, ema, optimizer, schedule, rng, noise) -> int:
    from safetensors.torch import load_file

    tensors = load_file(path / "state.safetensors")
    meta = json.loads((path / "state.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    schedule.load_state_dict(meta["schedule"])
    rng.bit_generator.state = meta["rng"]
    noise.set_state(tensors["rng.noise"])
    return int(meta["step"])


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the training state")


def plot_curves(run: Path) -> Path:
    """Loss and success rate against steps, as `curves.png` in the run directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = run / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("denoising loss")
    evals = [r for r in records if "success" in r]
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r["success"] for r in evals], "o-", color="C1")
        ax2.set_ylabel("success rate", color="C1")
        ax2.set_ylim(0, 1.05)
    ax.set_title(run.name)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=90)
    plt.close(fig)
    return run / "curves.png"
