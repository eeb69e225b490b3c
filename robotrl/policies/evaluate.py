"""`robotrl eval`: success rate of a policy on a task over unseen seeds."""

from __future__ import annotations

from robotrl.rollout import RolloutConfig, rollout

EVAL_SEED = 100_000  # demonstrations use seeds from 0: evaluation episodes are unseen


def evaluate(
    policy,
    task: str,
    robot: str = "panda",
    episodes: int = 50,
    seed: int = EVAL_SEED,
    video: str | None = None,
    progress: bool = True,
) -> dict:
    cfg = RolloutConfig(
        task=task,
        robot=robot,
        episodes=episodes,
        seed=seed,
        video=video,
        video_episodes=1,
        progress=progress,
    )
    summary, frames = rollout(cfg, policy=policy)
    if video:
        from robotrl.video import write_mp4

        write_mp4(video, frames, fps=policy.config.fps)
    return summary.to_dict()
