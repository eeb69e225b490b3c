"""`make demo`: every task's scripted expert on both arms -> a summary table and a video."""

from __future__ import annotations

import json
from pathlib import Path

from robotrl.rollout import RolloutConfig, rollout
from robotrl.video import write_mp4

ROBOTS = ("panda", "ur5e")
HOLD_LAST_FRAME = 15  # frames: let the viewer see how each episode ended


def run_demo(out: str | Path, episodes: int = 100, tasks: tuple[str, ...] | None = None) -> Path:
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
