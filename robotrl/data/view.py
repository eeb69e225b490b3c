"""`robotrl dataset info|view`: a summary, and per-episode plots and camera video."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robotrl.data.dataset import Dataset


def summary(dataset: Dataset) -> dict:
    eps = dataset.episodes
    lengths = [e["length"] for e in eps]
    achieved = [e["achieved_fps"] for e in eps if e.get("achieved_fps") is not None]
    return {
        "root": str(dataset.root),
        "codebase_version": dataset.info["codebase_version"],
        "robot_type": dataset.info.get("robot_type"),
        "fps": dataset.fps,
        "episodes": dataset.num_episodes,
        "frames": dataset.num_frames,
        "tasks": list(dataset.tasks.values()),
        "mean_episode_length": float(np.mean(lengths)) if lengths else 0.0,
        "successes": sum(bool(e.get("success")) for e in eps),
        "intervention_frames": sum(int(e.get("intervention_frames") or 0) for e in eps),
        "min_achieved_fps": float(min(achieved)) if achieved else None,
        "below_nominal_rate": [e["episode_index"] for e in eps if e.get("below_nominal_rate")],
        "features": {k: f"{f['dtype']}{list(f['shape'])}" for k, f in dataset.features.items()},
    }


def format_summary(s: dict) -> str:
    lines = [
        f"{s['root']}  (LeRobot {s['codebase_version']}, robot {s['robot_type']}, {s['fps']:g} fps)",
        f"  {s['episodes']} episodes, {s['frames']} frames, mean length "
        f"{s['mean_episode_length']:.1f}, {s['successes']} marked successful",
        f"  tasks: {', '.join(s['tasks']) or '-'}",
    ]
    if s["min_achieved_fps"] is not None:
        flagged = s["below_nominal_rate"]
        lines.append(
            f"  slowest episode ran at {s['min_achieved_fps']:.1f} fps; "
            f"{len(flagged)} below 95% of nominal" + (f": {flagged}" if flagged else "")
        )
    if s["intervention_frames"]:
        lines.append(f"  {s['intervention_frames']} frames with human intervention")
    lines.append("  features:")
    lines += [f"    {k:<40} {v}" for k, v in s["features"].items()]
    return "\n".join(lines)


def view_episode(dataset: Dataset, episode: int, out: str | Path) -> list[Path]:
    """Write `episode_N.png` (state and action over time) and, if the dataset has cameras,
    `episode_N.mp4` (all cameras side by side). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robotrl.data.layout import DatasetError
    from robotrl.video import write_mp4

    if not 0 <= episode < dataset.num_episodes:
        raise DatasetError(
            f"no episode {episode} in {dataset.root} ({dataset.num_episodes} episodes)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = dataset.episode(episode)
    t = data["timestamp"]
    keys = [
        k for k in ("observation.state", "observation.environment_state", "action") if k in data
    ]
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 3 * len(keys)), sharex=True)
    for ax, key in zip(np.atleast_1d(axes), keys):
        names = dataset.features[key].get("names") or []
        for j in range(data[key].shape[1]):
            ax.plot(t, data[key][:, j], label=names[j] if j < len(names) else str(j), lw=1)
        ax.set_ylabel(key)
        ax.legend(fontsize=6, ncol=4, loc="upper right")
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    row = dataset.episodes[episode]
    fig.suptitle(
        f"{dataset.root.name}: episode {episode}, {row['length']} frames"
        + (", success" if row.get("success") else "")
    )
    fig.tight_layout()
    written = [out / f"episode_{episode}.png"]
    fig.savefig(written[0], dpi=90)
    plt.close(fig)
    if dataset.video_keys:
        frames = np.concatenate([data[k] for k in dataset.video_keys], axis=2)
        written.append(write_mp4(out / f"episode_{episode}.mp4", list(frames), fps=dataset.fps))
    return written
