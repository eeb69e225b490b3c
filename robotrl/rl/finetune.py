"""What the residual fine-tuners (`ppo`, `residual_sac`) share: the config (the CLI of
`robotrl finetune residual` is generated from it), the run directory, periodic evaluation,
checkpoints and resume. `commands.finetune` picks the algorithm; this module imports neither.

A run directory holds `policy/` (the latest residual checkpoint: it references the base's),
`best/` (the best evaluated so far), `state/` (networks, optimizer, normalizers, counters, RNG:
everything to resume, safetensors + JSON), `log.jsonl`, `curves.png` (success and loss against
env steps) and `finetune_config.json`. Every write is atomic (temp + os.replace), so a SIGKILL at any moment
leaves the last checkpoint intact; started again on the same directory, a run continues from it.
Episodes in flight at the kill are lost (env states are not saved): a resumed run starts fresh
episodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robotrl.errors import RobotrlError

ALGOS = ("ppo", "sac")
TRAIN_SEED = 1_000_000  # demos use seeds from 0 and evaluation from 100_000: RL sees neither


@dataclass
class FinetuneConfig:
    base: str = field(default="", metadata={"help": "base policy: checkpoint or training run"})
    task: str = field(default="", metadata={"help": "task (default: the base's)"})
    robot: str | None = field(default=None, metadata={"help": "arm (default: the base's)"})
    out: str = field(default="runs/residual", metadata={"help": "run directory (resumes)"})
    algo: str = field(default="ppo", metadata={"help": "algorithm", "choices": ALGOS})
    envs: int = field(default=64, metadata={"help": "parallel sim envs"})
    backend: str = field(
        default="mujoco",
        metadata={"help": "mujoco (a MuJoCo C env per env) or warp[:DEVICE] (MuJoCo Warp "
                  "worlds, e.g. warp:cuda:0; state bases)"},
    )  # fmt: skip
    steps: int = field(default=500_000, metadata={"help": "env steps in total"})
    eval_every: int = field(default=40_960, metadata={"help": "env steps between evals; 0 off"})
    eval_episodes: int = field(default=50, metadata={"help": "episodes per evaluation"})
    save_every: int = field(default=20_480, metadata={"help": "env steps between checkpoints"})
    seed: int = field(default=0, metadata={"help": "seed of everything"})
    threads: int = field(default=1, metadata={"help": "torch threads"})
    base_sampler: str | None = field(
        default=None,
        metadata={"help": "base sampler (default: the base's)", "choices": ("ddpm", "ddim", "dpm")},
    )
    base_steps: int | None = field(default=None, metadata={"help": "base sampling steps"})
    # ResiP uses 0.1; on Lift 0.1 did not move in 200k steps, 0.3 and 0.5 did
    # (docs/results.md).
    scale: float = field(default=0.5, metadata={"help": "largest correction, normalized units"})
    hidden: int = field(default=256, metadata={"help": "width of the residual and critic MLPs"})
    image_features: bool = field(
        default=False,
        metadata={"help": "a camera base: the residual also sees its encoder's image features"},
    )
    gamma: float = field(default=0.99, metadata={"help": "discount"})
    lr: float = field(default=1e-3, metadata={"help": "actor learning rate"})
    critic_lr: float = field(default=1e-3, metadata={"help": "critic learning rate"})
    # PPO
    rollout: int = field(default=64, metadata={"help": "ppo: steps per env per update"})
    epochs: int = field(default=10, metadata={"help": "ppo: passes over each rollout"})
    minibatch: int = field(default=512, metadata={"help": "ppo: samples per gradient step"})
    gae_lambda: float = field(default=0.9, metadata={"help": "ppo: GAE lambda"})
    clip: float = field(default=0.2, metadata={"help": "ppo: ratio clip"})
    ent_coef: float = field(default=0.0, metadata={"help": "ppo: entropy bonus"})
    target_kl: float = field(default=0.1, metadata={"help": "ppo: stop epochs above this KL"})
    init_log_std: float = field(default=-0.7, metadata={"help": "initial log-std of the noise"})
    # SAC
    buffer: int = field(default=200_000, metadata={"help": "sac: replay capacity"})
    batch_size: int = field(default=256, metadata={"help": "sac: batch size"})
    learning_starts: int = field(default=5_000, metadata={"help": "sac: env steps before updates"})
    updates_per_step: int = field(default=4, metadata={"help": "sac: updates per vector step"})
    tau: float = field(default=0.005, metadata={"help": "sac: target network averaging"})
    explore_steps: int = field(
        default=100_000,
        metadata={"help": "sac: env steps over which the residual's share of actions grows 0->1"},
    )
    init_alpha: float = field(default=0.01, metadata={"help": "sac: initial entropy weight"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


# A resumed run must be the same experiment: these decide the networks and the data.
SAME_RUN = ("base", "task", "algo", "envs", "hidden", "scale", "base_sampler", "base_steps",
            "image_features")  # fmt: skip


class Counters(nn.Module):
    """Scalars saved with the state (so they resume atomically with the networks)."""

    def __init__(self):
        super().__init__()
        for name in ("iteration", "episodes", "seconds", "next_eval", "next_save"):
            self.register_buffer(name, torch.zeros((), dtype=torch.float64))

    def get(self, name: str) -> float:
        return float(getattr(self, name))

    def set(self, name: str, value: float) -> None:
        getattr(self, name).fill_(float(value))


class Run:
    """The run directory of one fine-tuning run."""

    def __init__(self, cfg: FinetuneConfig, algos=ALGOS, same_run=SAME_RUN):
        """`cfg`: a `FinetuneConfig` or another algorithm's config with its fields of the
        run (base, task, robot, out, envs, steps, eval_episodes, algo); `same_run`: the
        fields a resumed run must keep."""
        from robotrl.policies.checkpoint import load_policy
        from robotrl.tasks import task_name

        if not cfg.base:
            raise RobotrlError("--base is required: a policy checkpoint or training run")
        if not Path(cfg.base).exists():
            raise RobotrlError(f"no base policy at {cfg.base}")
        if cfg.algo not in algos:
            raise RobotrlError(f"unknown algorithm '{cfg.algo}': choose {', '.join(algos)}")
        if cfg.envs < 1 or cfg.steps < 1:
            raise RobotrlError("--envs and --steps must be at least 1")
        base = load_policy(cfg.base)  # one line if it is not a policy checkpoint
        if base.kind == "residual":
            raise RobotrlError(f"{cfg.base} is already a residual policy: pass its base")
        meta = base.config.meta or {}
        task = cfg.task or meta.get("task")
        if not task:
            raise RobotrlError("--task is required: the base does not say which task it is for")
        cfg.task = task_name(task)  # an unknown task fails here, in one line
        cfg.robot = cfg.robot or meta.get("robot") or "panda"
        cfg.base = str(Path(cfg.base).resolve())
        self.cfg, self.base, self.same_run = cfg, base, same_run
        self.dir = Path(cfg.out)
        self.resuming = (self.dir / "state").is_dir()
        self._check_same_run()
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / "finetune_config.json", json.dumps(asdict(cfg), indent=2))
        self.started = time.monotonic()

    def _check_same_run(self) -> None:
        saved = self.dir / "finetune_config.json"
        if not self.resuming or not saved.is_file():
            return
        before = json.loads(saved.read_text())
        changed = [k for k in self.same_run if before.get(k) != getattr(self.cfg, k)]
        if changed:
            raise RobotrlError(
                f"{self.dir} holds a run with different {', '.join(changed)}; "
                "use another --out to start a new run"
            )

    # ---- resume -------------------------------------------------------------------------
    def resume(self, modules: dict, optimizer, schedule, rng, noise) -> int:
        """Load the last checkpoint into `modules` etc.; returns its env step (0 when new).
        Log lines written after that checkpoint are dropped: the run redoes those steps."""
        from robotrl.policies.runs import load_state

        if not self.resuming:
            return 0
        step = load_state(self.dir / "state", modules, optimizer, schedule, rng, noise)
        kept = [r for r in self.records() if r["step"] <= step]
        atomic_write(self.dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        print(f"resuming {self.dir} from env step {step}", flush=True)
        return step

    def records(self) -> list[dict]:
        path = self.dir / "log.jsonl"
        out = []
        for line in path.read_text().splitlines() if path.exists() else []:
            with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a kill
                out.append(json.loads(line))
        return out

    # ---- during the run -----------------------------------------------------------------
    def log(self, record: dict) -> None:
        with open(self.dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def evaluate(self, policy, step: int | None = None) -> float:
        """Success rate over `eval_episodes` unseen episodes. With `step`, a result above every
        earlier one also saves the policy as `best/` (`policy/` is always the latest)."""
        from robotrl.policies.checkpoint import save_policy
        from robotrl.policies.runs import success_rate

        success = success_rate(policy, self.cfg.task, self.cfg.robot, self.cfg.eval_episodes)
        earlier = [r["success"] for r in self.records() if r.get("success") is not None]
        if step is not None and success > max(earlier, default=-1.0):
            save_policy(policy, self.dir / "best", {"step": step, "success": success})
        return success

    def save(self, policy, step: int, modules: dict, optimizer, schedule, rng, noise) -> None:
        from robotrl.policies.checkpoint import save_policy
        from robotrl.policies.runs import plot_curves, save_state

        policy.config.meta.update({"env_steps": step})
        save_policy(policy, self.dir / "policy", {"step": step})
        save_state(self.dir / "state", step, modules, optimizer, schedule, rng, noise)
        plot_curves(self.dir)

    def end_iteration(self, record, bar, counters, policy, env_steps, new_steps, state) -> None:
        """What every fine-tuner does after an update: evaluate when due (and at the end), log
        `record`, move the progress bar by `new_steps`, and checkpoint when due (and at the
        end); `state`: (modules, optimizer, schedule, rng, noise) to save."""
        cfg, last = self.cfg, env_steps >= self.cfg.steps
        if self.due(counters, "eval", env_steps, cfg.eval_every) or last:
            record["success"] = self.evaluate(policy, env_steps)
        self.log(record)
        bar.update(new_steps)
        shown = ("train_success", "success")
        bar.set_postfix({k: f"{record[k]:.3g}" for k in shown if record.get(k) is not None})
        if self.due(counters, "save", env_steps, cfg.save_every) or last:
            counters.set("seconds", self.elapsed(counters))
            self.started = time.monotonic()
            self.save(policy, env_steps, *state)

    def due(self, counters: Counters, what: str, step: int, every: int) -> bool:
        """True once per `every` env steps (and at the end), for `what` = eval or save."""
        key = f"next_{what}"
        if every <= 0 or step < counters.get(key):
            return False
        counters.set(key, (step // every + 1) * every)
        return True

    def elapsed(self, counters: Counters) -> float:
        """Wall seconds of this run, including the time before any resume."""
        return counters.get("seconds") + time.monotonic() - self.started


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def metadata(cfg: FinetuneConfig) -> dict:
    return {
        "task": cfg.task,
        "robot": cfg.robot,
        "algo": cfg.algo,
        "finetune": str(Path(cfg.out).resolve()),
    }


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    var = np.var(target)
    return float("nan") if var == 0 else float(1 - np.var(target - pred) / var)


def start_episodes(run: Run, cfg, policy, counters: Counters, envs, base, env_steps: int):
    """What PPO and SAC do before their loops: fresh episodes seeded by the iteration (a
    resumed run does not replay the same ones), the progress bar, and on a new run the base's
    success as the curve's first point. Returns (obs, base_action, progress bar)."""
    from tqdm import tqdm

    from robotrl.rl.vector import on_cpu

    iteration = int(counters.get("iteration"))
    obs, _ = envs.reset(seed=cfg.seed * 7919 + TRAIN_SEED + iteration * cfg.envs)
    obs = on_cpu(obs)
    base_action = torch.as_tensor(base.act(obs))
    bar = tqdm(total=cfg.steps, initial=env_steps, desc=run.dir.name, unit="step",
               disable=None if cfg.progress else True)  # fmt: skip
    if env_steps == 0:
        counters.set("next_eval", cfg.eval_every)
        counters.set("next_save", cfg.save_every)
        if cfg.eval_every:
            success = run.evaluate(policy)  # the base's success: the curve's first point
            run.log({"step": 0, "loss": float("nan"), "success": success, "seconds": 0.0})
    return obs, base_action, bar


def new_policy(cfg, squash: bool = False):
    """The zero-initialised residual around `cfg.base` that PPO (clamped) or SAC (tanh-squashed)
    trains."""
    from robotrl.rl.residual import new_residual

    return new_residual(
        cfg.base,
        base_sampler=cfg.base_sampler,
        base_steps=cfg.base_steps,
        scale=cfg.scale,
        hidden=cfg.hidden,
        squash=squash,
        init_log_std=cfg.init_log_std,
        image_features=cfg.image_features,
        meta=metadata(cfg),
    )
