"""`robotrl eval`: success rate of a policy on a task over unseen seeds."""

from __future__ import annotations

from robotrl.errors import RobotrlError
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
    from robotrl.tasks import make

    cfg = RolloutConfig(
        task=task,
        robot=robot,
        policy=getattr(policy, "kind", type(policy).__name__),
        **env_options(policy),
        episodes=episodes,
        seed=seed,
        video=video,
        video_episodes=1,
        progress=progress,
    )
    env = make(
        task,
        robot=robot,
        obs_mode=cfg.obs_mode,
        action_mode=cfg.action_mode,
        render_mode="rgb_array" if video else None,
    )
    check_compatible(policy, env)
    summary, frames = rollout(cfg, env=env, policy=policy)
    env.close()
    if video:
        from robotrl.video import write_mp4

        write_mp4(video, frames, fps=policy.config.fps)
    return summary.to_dict()


def env_options(policy) -> dict:
    """How to make an env for `policy`: cameras if it sees images, and the action mode it was
    trained in (checkpoints from before the mode was recorded: the env's default)."""
    return {
        "obs_mode": "state+pixels" if policy.config.image_keys else "state",
        "action_mode": (policy.config.meta or {}).get("action_mode"),
    }


def check_compatible(policy, env) -> None:
    """A policy trained for other observations or actions fails here, in one line, rather
    than deep inside a matrix multiply."""
    config, spaces = policy.config, env.observation_space.spaces
    where = f"{env.spec.id if env.spec else type(env).__name__} ({env.unwrapped.robot.robot_type})"
    for key, dim in zip(config.obs_keys, config.obs_dims):
        name = key.removeprefix("observation.")
        if name not in spaces or spaces[name].shape != (dim,):
            got = spaces[name].shape if name in spaces else "nothing"
            raise RobotrlError(f"policy expects {name} of shape ({dim},); {where} gives {got}")
    for key, shape in zip(config.image_keys, config.image_shapes):
        name = key.removeprefix("observation.")
        if name not in spaces or spaces[name].shape != tuple(shape):
            raise RobotrlError(f"policy expects camera {name} {tuple(shape)}; {where} lacks it")
    mode, env_mode = (config.meta or {}).get("action_mode"), env.unwrapped.robot.action.mode
    if mode and mode != env_mode:
        raise RobotrlError(f"policy was trained on {mode} actions; {where} takes {env_mode}")
    if env.action_space.shape != (config.action_dim,):
        raise RobotrlError(
            f"policy outputs {config.action_dim} action values; {where} takes "
            f"{env.action_space.shape[0]}"
        )
