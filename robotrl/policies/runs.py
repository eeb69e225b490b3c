"""What every policy-fitting run shares (`train` and `distill`): the optimizer loop with
warm-up + cosine LR, EMA weights, periodic success evaluation, `log.jsonl` + `curves.png`,
and resumable state.

With a time budget (`minutes`), the loop times steps `PROBE` and plans the run's length
from that before the warm-up ends, so the LR schedule is the one `--steps K` would give; the
plan is kept in `plan.json` and a resumed run follows it.

A run directory holds `policy/` (the EMA weights: the checkpoint to deploy), `state/` (raw
weights, optimizer, schedule and RNG states: everything to resume, as safetensors + JSON, no
pickle), `log.jsonl` and `curves.png`. Started again on the same directory after a kill, a
run continues from the last saved step and draws the same batches it would have.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robotrl.errors import RobotrlError
from robotrl.policies.distributed import Ranks, min_over_ranks


@dataclass
class LoopConfig:
    steps: int = field(default=4000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=256, metadata={"help": "windows per step"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    warmup: int = field(default=200, metadata={"help": "warm-up steps"})
    ema_decay: float = field(default=0.995, metadata={"help": "EMA decay of the weights"})
    save_every: int = field(default=500, metadata={"help": "steps between checkpoints"})
    eval_every: int = field(default=1000, metadata={"help": "steps between success evals; 0 off"})
    eval_episodes: int = field(default=10, metadata={"help": "episodes per evaluation"})
    seed: int = field(default=0, metadata={"help": "seed of everything"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: all cores)"})
    minutes: float = field(
        default=0.0,
        metadata={
            "help": "training-time budget: time the first steps, then plan --steps to end "
            "within it (saved in plan.json; periodic evaluations not counted; 0: use --steps)"
        },
    )


def fit(
    run: Path,
    cfg: LoopConfig,
    model: torch.nn.Module,
    loss_fn: Callable[[dict, torch.Generator], torch.Tensor],
    windows,
    modules: dict[str, torch.nn.Module] | None = None,
    after_step: Callable[[int], None] | None = None,
    progress: bool = True,
    fine_tune: bool = False,
    draw_weights: np.ndarray | None = None,
    clock: float | None = None,
) -> torch.nn.Module:
    """Minimize `loss_fn(batch, noise_generator)` over `model`'s parameters; returns the EMA
    copy (also saved as `run/policy`). `modules` are further networks whose state belongs
    to the run (e.g. a distillation target; those that require grad are optimized with the
    model), `after_step(step)` runs after each update;
    `draw_weights` (summing to 1) are how often each window is drawn (None: uniformly);
    `clock` is the `time.monotonic()` a time budget counts from (None: now)."""
    import copy

    from robotrl.policies import distributed
    from robotrl.policies.checkpoint import save_policy

    ranks = distributed.ranks()
    ema = copy.deepcopy(model).requires_grad_(False)
    # the modules' parameters that require grad (an auxiliary head) train with the model
    extra = [p for m in (modules or {}).values() for p in m.parameters()]
    trainable = [p for p in (*model.parameters(), *extra) if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine(s, cfg))
    rng = np.random.default_rng(cfg.seed)  # which windows each batch draws
    noise = torch.Generator().manual_seed(cfg.seed)  # diffusion noise and steps
    rank_noise = distributed.ShardedGenerator(noise, ranks) if ranks.world > 1 else noise
    ranks.share(cfg.batch_size)  # a global batch the ranks cannot split evenly fails here
    step_loss = distributed.data_parallel(model, modules or {}, loss_fn, ranks)
    state_modules = {"model": model, "ema": ema, **(modules or {})}
    step = 0
    if (run / "state").is_dir():
        step = load_state(run / "state", state_modules, optimizer, schedule, rng, noise)
        if ranks.main:
            print(f"resuming {run} from step {step}", flush=True)
    if ranks.main:
        run.mkdir(parents=True, exist_ok=True)
    task, robot = model.config.meta.get("task"), model.config.meta.get("robot")

    planner = BudgetPlanner(run, cfg, step, time.monotonic() if clock is None else clock, ranks)
    bar = tqdm(
        total=None if cfg.steps == UNPLANNED else cfg.steps,
        initial=step,
        desc=f"{run.name}",
        unit="step",
        disable=None if progress and ranks.main else True,
    )
    started, losses = time.monotonic(), []
    model.train()
    while step < cfg.steps:
        if draw_weights is None:
            drawn = rng.integers(0, len(windows), cfg.batch_size)
        else:
            drawn = rng.choice(len(windows), cfg.batch_size, p=draw_weights)
        batch = windows[ranks.shard(drawn, cfg.batch_size)]
        loss = step_loss(batch, rank_noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        # EMA warm-up for a network trained from scratch; one fine-tuned from trained weights
        # (distillation) starts its average at them and keeps it long from the first step.
        decay = cfg.ema_decay if fine_tune else min(cfg.ema_decay, (1 + step) / (10 + step))
        ema_update(ema, model, decay)
        if after_step:
            after_step(step)
        losses.append(loss.item())
        if planner.observe(step):
            bar.total = cfg.steps
            bar.refresh()
            if ranks.main:
                print(planner.summary, flush=True)
        bar.update(1)
        checkpoint = step % cfg.save_every == 0 or step == cfg.steps
        if checkpoint and ranks.main:  # saved before anything that can fail after it
            save_policy(ema, run / "policy", {"step": step})
            save_state(run / "state", step, state_modules, optimizer, schedule, rng, noise)
        if step % 50 == 0 or checkpoint:
            mean_loss = distributed.mean_over_ranks(float(np.mean(losses)), ranks)
            losses = []
            if not ranks.main:
                continue
            record = {
                "step": step,
                "loss": mean_loss,
                "lr": schedule.get_last_lr()[0],
                "seconds": time.monotonic() - started,
            }
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps) and task:
                record["success"] = success_rate(ema, task, robot, cfg.eval_episodes)
                if record["success"] is None:
                    task = None  # not a task here: no later evaluation either
            bar.set_postfix(
                {k: f"{record[k]:.4g}" for k in ("loss", "success") if record.get(k) is not None}
            )
            with open(run / "log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
        if checkpoint and ranks.main:
            plot_curves(run)
    bar.close()
    return ema


PROBE = (10, 60)  # steps timed for a budget: past the first steps' one-off costs, in warm-up
UNPLANNED = 10**9  # cfg.steps of a budgeted run before its plan
PLAN_MARGIN = 0.97  # of the time left, for checkpoints and a machine that slows a little


class BudgetPlanner:
    """Sets `cfg.steps` from `cfg.minutes`: times steps PROBE, then plans the steps that fit
    in what is left of the budget, and keeps the plan in `run/plan.json` for a resumed run."""

    def __init__(self, run: Path, cfg: LoopConfig, step: int, clock: float, ranks=None):
        self.path, self.cfg, self.clock = run / "plan.json", cfg, clock
        self.ranks = ranks or Ranks()
        self.summary, self.probe_started = "", None
        check_loop_config(cfg)
        if not cfg.minutes:
            return
        plan = json.loads(self.path.read_text()) if self.path.is_file() else None
        if plan and plan["minutes"] == cfg.minutes and plan["steps"] >= step:
            cfg.steps = plan["steps"]
        elif step and step + PROBE[1] > cfg.warmup:
            raise RobotrlError(
                f"--minutes: {run} was not started with a {cfg.minutes:g}-minute budget; "
                "resume it with the options it was started with"
            )
        else:  # a kill before the plan was made: time again from here
            self.probe = (step + PROBE[0], step + PROBE[1])
            cfg.steps = UNPLANNED  # until planned; the warm-up LR does not depend on it

    def observe(self, step: int) -> bool:
        """Call after each step; True when this step made the plan."""
        if self.cfg.steps != UNPLANNED:
            return False
        if step == self.probe[0]:
            self.probe_started = time.monotonic()
            return False
        if step < self.probe[1] or self.probe_started is None:
            return False
        now = time.monotonic()
        per_step = (now - self.probe_started) / (self.probe[1] - self.probe[0])
        left = self.cfg.minutes * 60 - (now - self.clock)
        steps = max(step + 1, step + int(PLAN_MARGIN * left / per_step))
        # every rank must stop at the same step: the most cautious rank's plan
        self.cfg.steps = min_over_ranks(steps, self.ranks)
        self.summary = (
            f"budget {self.cfg.minutes:g} min: {self.cfg.steps} steps at {per_step:.3f} s/step "
            f"(--steps {self.cfg.steps} repeats this run)"
        )
        if not self.ranks.main:
            return True
        plan = {
            "minutes": self.cfg.minutes,
            "steps": self.cfg.steps,
            "seconds_per_step": round(per_step, 4),
            "planned_at_step": step,
        }
        tmp = self.path.with_name("plan.json.tmp")
        tmp.write_text(json.dumps(plan, indent=2))
        os.replace(tmp, self.path)
        return True


def check_loop_config(cfg: LoopConfig) -> None:
    """Refuse numbers no run can use, before anything is written."""
    problems = [
        (cfg.steps < 1 and not cfg.minutes, f"--steps must be >= 1, got {cfg.steps}"),
        (cfg.batch_size < 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (not cfg.lr > 0, f"--lr must be > 0, got {cfg.lr}"),
        (cfg.warmup < 0, f"--warmup must be >= 0, got {cfg.warmup}"),
        (not 0 <= cfg.ema_decay < 1, f"--ema-decay must be in [0, 1), got {cfg.ema_decay}"),
        (cfg.save_every < 1, f"--save-every must be >= 1, got {cfg.save_every}"),
        (cfg.eval_every < 0, f"--eval-every must be >= 0, got {cfg.eval_every}"),
        (cfg.eval_episodes < 1, f"--eval-episodes must be >= 1, got {cfg.eval_episodes}"),
        (cfg.threads < 0, f"--threads must be >= 0, got {cfg.threads}"),
        (cfg.minutes < 0, f"--minutes must be >= 0, got {cfg.minutes}"),
    ]
    for bad, message in problems:
        if bad:
            raise RobotrlError(message)


def cosine(step: int, cfg: LoopConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


def success_rate(policy, task: str, robot: str | None, episodes: int) -> float | None:
    """The EMA policy's success on `task`; None (with one line on stderr) when it cannot be
    evaluated here, e.g. a dataset from another tool names its task in plain words."""
    from robotrl.policies.evaluate import evaluate

    policy.eval()
    try:
        result = evaluate(policy, task, robot=robot or "panda", episodes=episodes, progress=False)
    except RobotrlError as e:
        print(f"not evaluated (the checkpoint is saved): {e}", file=sys.stderr, flush=True)
        return None
    return result["success_rate"]


# ---- resumable state: safetensors for tensors, JSON for the rest ---------------------------
def save_state(path: Path, step, modules: dict, optimizer, schedule, rng, noise) -> None:
    """Everything to resume a run: `modules` ({name: nn.Module}), optimizer, LR schedule,
    the numpy batch RNG and the torch noise generator, swapped into place atomically."""
    from safetensors.torch import save_file

    tensors = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
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


def load_state(path: Path, modules: dict, optimizer, schedule, rng, noise) -> int:
    from safetensors.torch import load_file

    tensors = load_file(path / "state.safetensors")
    meta = json.loads((path / "state.json").read_text())
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
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
    ax.set_ylabel("loss")
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
