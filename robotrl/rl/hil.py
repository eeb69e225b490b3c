"""`robotrl hil train`: human-in-the-loop RL in one process (HIL-SERL's recipe).

Episodes run with the current policy and a (real or simulated) human who may take over;
after each episode the learner makes `utd` gradient updates per new transition, sampling
half from demonstrations + interventions and half from online data. Every `eval_every`
seconds the policy alone (no human) is evaluated on unseen seeds. The run stops after
`minutes` of wall time or once an evaluation reaches `stop_at`.

The actor/learner split of the same loop is `robotrl hil learner` + `robotrl hil actor`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from robotrl.errors import RobotrlError
from robotrl.rl.learner import LearnConfig


@dataclass
class HILConfig(LearnConfig):
    env: str = field(default="sim:Lift", metadata={"help": "sim:TASK or ros:CONFIG"})
    teleop: str = field(
        default="sim-human", metadata={"help": "sim-human, spacemouse, keyboard, gamepad, none"}
    )
    classifier: str = field(default="", metadata={"help": "reward classifier directory"})
    obs_mode: str = field(default="state", metadata={"help": "sim: state, pixels, state+pixels"})


def make_reward(cfg) -> object:
    from robotrl.rl.actor import RewardSource

    if cfg.reward == "classifier":
        if not cfg.classifier:
            raise RobotrlError("--reward classifier needs --classifier DIR")
        from robotrl.rl.classifier import load_classifier

        return RewardSource("classifier", load_classifier(cfg.classifier))
    return RewardSource(cfg.reward)


def train(cfg: HILConfig, progress: bool = True) -> Path:
    from robotrl.rl.actor import make_hil_env, policy_fn, run_episode
    from robotrl.rl.learner import obs_shapes_of

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not cfg.demos and not (Path(cfg.out) / "state").is_dir():
        raise RobotrlError("--demos is required: a dataset of demonstrations")
    env = make_hil_env(cfg.env, cfg.teleop, cfg.seed, cfg.obs_mode)
    reward = make_reward(cfg)
    shapes = obs_shapes_of(env)
    space = env.action_space
    trainer = cfg.trainer(shapes, space.low, space.high)
    run = trainer.run
    (run / "hil_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    act = policy_fn(trainer.agent, generator=generator)
    c = trainer.counters
    started = time.monotonic() - c["seconds"]
    last_eval = last_ckpt = time.monotonic()
    if c["episodes"] == 0:  # the offline starting point, for the curve
        evaluate_and_log(trainer, cfg.env, cfg.eval_episodes, progress)
    while time.monotonic() - started < cfg.minutes * 60:
        trainer.agent.eval()
        rows, stats = run_episode(env, act, cfg.seed * 1_000_000 + c["episodes"], reward, shapes)
        trainer.add(rows)
        c["episodes"] += 1
        metrics = trainer.train(trainer.updates_owed())
        c["seconds"] = time.monotonic() - started
        record = {"episode": c["episodes"], "env_steps": c["env_steps"], "updates": c["updates"]}
        record.update({**stats, "wall_s": c["seconds"], **metrics})
        trainer.log("episodes.jsonl", record)
        if progress:
            print(
                f"\repisode {c['episodes']} success {stats['success']:d} interventions "
                f"{stats['intervention_rate']:.0%} wall {c['seconds'] / 60:.1f} min",
                end="", flush=True,
            )  # fmt: skip
        if time.monotonic() - last_eval >= cfg.eval_every:
            last_eval = time.monotonic()
            if evaluate_and_log(trainer, cfg.env, cfg.eval_episodes, progress) >= cfg.stop_at:
                break
        if time.monotonic() - last_ckpt >= cfg.checkpoint_every:
            trainer.checkpoint()
            last_ckpt = time.monotonic()
    trainer.checkpoint()
    plot_hil(run)
    env.close()
    return run


def evaluate_and_log(trainer, env: str, episodes: int, progress: bool = True) -> float:
    """Success of the policy alone on unseen seeds, acting as the actor does (sampled
    actions) and with its mean action, appended to `log.jsonl` (the format
    `policies.runs.plot_curves` reads) with the wall time and data counts. The weights are
    kept in `snapshots/` so a curve can be re-measured with more episodes later."""
    from safetensors.torch import save_file

    from robotrl.rl.actor import evaluate_agent

    t0 = time.monotonic()
    success = evaluate_agent(trainer.agent, env, episodes)
    mean_action = evaluate_agent(trainer.agent, env, episodes, deterministic=True)
    c = trainer.counters
    record = {"step": c["updates"], "loss": trainer.last_metrics.get("critic_loss", 1.0),
              "success": success, "success_mean_action": mean_action, "wall_s": c["seconds"],
              "episodes": c["episodes"], "env_steps": c["env_steps"],
              "eval_s": time.monotonic() - t0}  # fmt: skip
    trainer.log("log.jsonl", record)
    snapshots = trainer.run / "snapshots"
    snapshots.mkdir(exist_ok=True)
    state = {k: v.contiguous() for k, v in trainer.agent.acting_state().items()}
    save_file(state, snapshots / f"{c['updates']:08d}.safetensors", {"wall_s": str(c["seconds"])})
    if progress:
        print(f"\neval at {c['seconds'] / 60:.1f} min: success {success:.0%} "
              f"(mean action {mean_action:.0%})", flush=True)  # fmt: skip
    plot_hil(trainer.run)
    return success


def plot_hil(run: Path) -> Path:
    """`hil.png`: policy-alone success and the intervention rate against wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def read(name):
        path = run / name
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(x) for x in lines if x.strip()]

    episodes, evals = read("episodes.jsonl"), read("log.jsonl")
    fig, ax = plt.subplots(figsize=(8, 4))
    if episodes:
        t = np.array([e["wall_s"] for e in episodes]) / 60
        rate = np.array([e["intervention_rate"] for e in episodes])
        k = max(1, min(20, len(rate) // 5))
        smooth = np.convolve(rate, np.ones(k) / k, mode="valid")
        ax.plot(t, rate, ".", color="C0", alpha=0.25, ms=3)
        ax.plot(t[k - 1 :], smooth, color="C0", label=f"intervention rate ({k}-episode mean)")
    both = bool(evals) and "success_mean_action" in evals[-1]  # older logs: mean action only
    if evals:
        ax.plot([e["wall_s"] / 60 for e in evals], [e["success"] for e in evals], "o-",
                color="C1", label="success, policy alone" + (" (sampled)" if both else ""))  # fmt: skip
        if both:
            ax.plot([e["wall_s"] / 60 for e in evals], [e.get("success_mean_action", np.nan)
                     for e in evals], "s--", color="C2", ms=4, label="success, mean action")  # fmt: skip
    ax.set_xlabel("wall time (min)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="center right")
    ax.set_title(run.name)
    fig.tight_layout()
    fig.savefig(run / "hil.png", dpi=90)
    plt.close(fig)
    if evals:
        from robotrl.policies.runs import plot_curves

        plot_curves(run)
    return run / "hil.png"
