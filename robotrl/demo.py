"""`make demo`, the main job on one task: collect expert demonstrations, train a diffusion
policy, distill a consistency policy from it, evaluate both on unseen seeds, measure their
chunk latency, and write a report (markdown table, plots, a rollout video).

Every stage picks up where it stopped: the dataset is topped up rather than re-recorded, and
training and distillation resume from their last checkpoints, so a killed demo started again
finishes the job without redoing it. `--experts` runs the old demo instead: every task's
scripted expert on both arms.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from robotrl.errors import RobotrlError
from robotrl.rollout import RolloutConfig, rollout
from robotrl.video import write_mp4

ROBOTS = ("panda", "ur5e")
HOLD_LAST_FRAME = 15  # frames: let the viewer see how each episode ended


STATE_STEPS = 2000
CAMERA_STEPS = 2000  # at batch 64


@dataclass
class DemoConfig:
    out: str = field(default="out/demo", metadata={"help": "output directory (resumes)"})
    task: str = field(default="Lift", metadata={"help": "task of the pipeline"})
    robot: str = field(default="panda", metadata={"help": "arm"})
    demos: int = field(default=100, metadata={"help": "expert demonstrations to train on"})
    cameras: bool = field(
        default=False,
        metadata={
            "help": "the real-arm story: pixel demos and policies that see the front and "
            "wrist cameras and the robot's own state, never the object's pose"
        },
    )
    train_steps: int | None = field(
        default=None,
        metadata={
            "help": f"diffusion training steps (default: {STATE_STEPS}; {CAMERA_STEPS} with --cameras)"
        },
    )
    distill_steps: int = field(default=200, metadata={"help": "consistency distillation steps"})
    eval_episodes: int = field(default=50, metadata={"help": "unseen episodes per evaluation"})
    experts: bool = field(
        default=False, metadata={"help": "instead: every task's expert on both arms"}
    )
    episodes: int = field(default=100, metadata={"help": "with --experts: episodes per task"})


def run_demo(cfg: DemoConfig) -> Path:
    if cfg.experts:
        return run_experts(cfg.out, cfg.episodes)
    from robotrl.policies.distill import DistillConfig, distill
    from robotrl.policies.train import train

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def stage(name: str, fn):
        print(f"== {name}", flush=True)
        t = time.monotonic()
        result = fn()
        seconds[name] = time.monotonic() - t
        return result

    data = stage("collect", lambda: _collect(out / "data", cfg))
    teacher = stage("train", lambda: train(_train_config(data, out / "diffusion", cfg)))
    student = stage(
        "distill",
        lambda: distill(
            DistillConfig(
                teacher=str(teacher), out=str(out / "consistency"), steps=cfg.distill_steps
            )
        ),
    )
    rows = stage("evaluate", lambda: _evaluate(teacher, student, out, cfg))
    stage("latency", lambda: _add_latency(rows, student))
    report = write_report(out, cfg, rows, seconds)
    print(f"wrote {report}")
    return out


def _train_config(data: Path, out: Path, cfg: DemoConfig):
    from robotrl.policies.train import TrainConfig

    if not cfg.cameras:
        return TrainConfig(data=str(data), out=str(out), steps=cfg.train_steps or STATE_STEPS)
    return TrainConfig(
        data=str(data),
        out=str(out),
        steps=cfg.train_steps or CAMERA_STEPS,
        cameras="front,wrist",
        batch_size=64,
    )


def _collect(path: Path, cfg: DemoConfig) -> Path:
    from robotrl.collect import CollectConfig, collect
    from robotrl.data.dataset import Dataset

    have = Dataset(path).num_episodes if (path / "meta").is_dir() else 0
    if have and cfg.cameras and not Dataset(path).video_keys:
        raise RobotrlError(f"{path} was collected without cameras; give --cameras another --out")
    if have < cfg.demos:
        collect(
            CollectConfig(
                task=cfg.task,
                robot=cfg.robot,
                teleop="expert",
                episodes=cfg.demos - have,
                out=str(path),
                seed=have,
                obs_mode="state+pixels" if cfg.cameras else "state",
            )
        )
    return path


VARIANTS = (  # (name, run, sampler, network evaluations per chunk, warm start sigma)
    ("diffusion DDIM-10", "teacher", "ddim", 10, None),
    ("consistency 1-step", "student", "cm", 1, None),  # warm-started, the default
    ("consistency 1-step cold", "student", "cm", 1, 0.0),  # every chunk from noise
    ("consistency 3-step", "student", "cm", 3, 0.0),
)
LATENCY_ROWS = {  # demo row -> `bench_policy` row
    "diffusion DDIM-10": "DDIM-10",
    "consistency 1-step": "consistency-1-warm",
    "consistency 1-step cold": "consistency-1",
    "consistency 3-step": "consistency-3",
}


def _evaluate(teacher: Path, student: Path, out: Path, cfg: DemoConfig) -> list[dict]:
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.evaluate import evaluate

    runs = {"teacher": teacher, "student": student}
    rows = []
    for name, which, sampler, steps, warm_sigma in VARIANTS:
        policy = load_policy(runs[which] / "policy")
        policy.set_sampler(sampler, steps)
        if warm_sigma is not None:
            policy.config.warm_sigma = warm_sigma
        video = str(out / "rollout.mp4") if name == "consistency 1-step" else None
        result = evaluate(policy, cfg.task, cfg.robot, cfg.eval_episodes, video=video)
        rows.append({**result, "policy": name, "network_evals": steps})
        print(f"{name:<20} success {result['success_rate']:.0%}", flush=True)
    return rows


def _add_latency(rows: list[dict], student: Path) -> None:
    from robotrl.policies.bench import bench_policy

    timed = bench_policy(str(student / "policy"), repeats=20, only=tuple(LATENCY_ROWS.values()))
    bench = {r["sampler"]: r for r in timed}
    for row in rows:
        b = bench[LATENCY_ROWS[row["policy"]]]
        row["median_ms"], row["p99_ms"] = b["median_ms"], b["p99_ms"]


def write_report(out: Path, cfg: DemoConfig, rows: list[dict], seconds: dict) -> Path:
    (out / "summary.json").write_text(json.dumps({"rows": rows, "seconds": seconds}, indent=2))
    _plot(out / "comparison.png", rows)
    total = sum(seconds.values())
    lines = [
        f"# {cfg.task} on {cfg.robot}: {cfg.demos} expert demos → diffusion → consistency",
        "",
        "The policies see the front and wrist cameras and the robot's own state only, as on "
        "a real arm."
        if cfg.cameras
        else "The policies see the robot's state and the simulator's object pose.",
        "",
        f"Evaluated on {cfg.eval_episodes} unseen seeds; latency is one chunk at batch 1. "
        "The consistency policy warm-starts each chunk after an episode's first from the "
        "previous chunk's rest, noised (1-step); 'cold' and 3-step start every chunk from noise.",
        "",
        "| policy | network evals / chunk | success | median ms / chunk | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['network_evals']} | {r['success_rate']:.0%} | "
            f"{r['median_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    lines += [
        "",
        "Wall time: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
        + f" — total {total / 60:.1f} min.",
        "",
        "![success and latency](comparison.png)",
        "",
        "Training: ![diffusion](diffusion/curves.png) Distillation: "
        "![consistency](consistency/curves.png)",
        "",
        "A consistency 1-step rollout (with the cameras the policy sees, if any): "
        "[rollout.mp4](rollout.mp4)",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["policy"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    bars = left.bar(names, [100 * r["success_rate"] for r in rows], color="tab:green")
    left.bar_label(bars, fmt="%.0f%%", fontsize=8)
    left.set_ylabel("success (%)")
    left.set_ylim(0, 110)
    bars = right.bar(names, [r["median_ms"] for r in rows], color="tab:blue")
    right.bar_label(bars, fmt="%.1f ms", fontsize=8)
    right.set_ylabel("ms per chunk (median, log)")
    right.set_yscale("log")
    right.set_ylim(top=2 * max(r["median_ms"] for r in rows))
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=15, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_experts(out: str | Path, episodes: int = 100, tasks: tuple[str, ...] | None = None):
    from robotrl.tasks import TASKS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, frames = [], []
    for task in tasks or tuple(TASKS):
        for robot in ROBOTS:
            cfg = RolloutConfig(task=task, robot=robot, episodes=episodes)
            summary, clip = rollout(cfg, film=1 if robot == ROBOTS[0] else 0)
            frames += clip + clip[-1:] * HOLD_LAST_FRAME
            rows.append(summary.to_dict())
            print(
                f"{task:<10} {robot:<6} success {summary.success_rate:6.1%}  "
                f"length {summary.mean_episode_length:6.1f}  "
                f"{summary.env_steps_per_s:6.0f} env steps/s",
                flush=True,
            )
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    (out / "summary.md").write_text(summary_table(rows, episodes))
    video = write_mp4(out / "experts.mp4", frames, fps=20)
    print(f"wrote {out / 'summary.md'} and {video}")
    return out


def summary_table(rows: list[dict], episodes: int) -> str:
    lines = [
        f"# Scripted experts, {episodes} episodes per task and arm (seeds 0..{episodes - 1})",
        "",
        "| task | robot | success | mean episode length | env steps/s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['robot']} | {r['success_rate']:.0%} | "
            f"{r['mean_episode_length']:.1f} | {r['env_steps_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"
