"""Run a policy on a task for some episodes; summarise success, length and speed."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from robotrl.control import SafeEnv, safe
from robotrl.env import OBS_MODE_HELP
from robotrl.errors import RobotrlError
from robotrl.video import caption, check_output, with_cameras


@dataclass
class RolloutConfig:
    task: str = field(default="PushT", metadata={"help": "task name, e.g. Lift or robotrl/Lift-v0"})
    policy: str = field(
        default="expert", metadata={"help": "'expert' (the task's scripted expert)"}
    )
    episodes: int = field(default=10, metadata={"help": "number of episodes"})
    robot: str = field(default="panda", metadata={"help": "panda, ur5e, or a path to an MJCF arm"})
    obs_mode: str = field(default="state", metadata={"help": OBS_MODE_HELP})
    action_mode: str | None = field(
        default=None, metadata={"help": "ee_delta, ee_pos, joint_delta or joint_pos"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the first episode; then seed+1, ..."})
    video: str | None = field(default=None, metadata={"help": "write an MP4 of the episodes here"})
    video_episodes: int = field(default=3, metadata={"help": "episodes to put in the video"})
    json: bool = field(default=False, metadata={"help": "print a JSON summary"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


@dataclass
class RolloutSummary:
    task: str
    robot: str
    policy: str
    episodes: int
    success_rate: float
    mean_episode_length: float
    env_steps_per_s: float
    wall_time_s: float
    successes: list[bool] = field(repr=False)
    lengths: list[int] = field(repr=False)
    # per episode, the task's reward at its best (its progress: PushT's coverage / 0.95)
    scores: list[float] = field(repr=False, default_factory=list)
    mean_score: float = 0.0
    safety_interventions: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(
        cls, task, robot, policy, successes, lengths, scores, step_time_s, wall_time_s, safety
    ) -> RolloutSummary:
        """The summary of episodes' outcomes (`step_time_s`: seconds spent in `env.step`)."""
        return cls(
            task=task,
            robot=robot,
            policy=policy,
            episodes=len(successes),
            success_rate=float(np.mean(successes)),
            mean_episode_length=float(np.mean(lengths)),
            env_steps_per_s=sum(lengths) / step_time_s,
            wall_time_s=wall_time_s,
            successes=list(successes),
            lengths=list(lengths),
            scores=list(scores),
            mean_score=float(np.mean(scores)),
            safety_interventions=dict(safety),
        )


def make_policy(name: str, env):
    """The policy named on the command line: `expert` (bound to `env`) or a checkpoint."""
    if name == "expert":
        from robotrl.tasks import make_expert

        return make_expert(env)
    from pathlib import Path

    if Path(name).exists():
        from robotrl.policies.checkpoint import load_policy

        policy = load_policy(name)
        _check_fits(policy, env.unwrapped)
        return policy
    raise RobotrlError(f"unknown policy '{name}': use 'expert' or a checkpoint directory")


def _check_fits(policy, env) -> None:
    """A checkpoint made for other observations or actions (another task's) fails here, in one
    line, not inside a matrix multiply. (The evaluator checks more; it imports this module.)"""
    config, spaces = policy.config, env.observation_space.spaces
    where = f"{type(env).__name__} ({env.robot.robot_type})"
    for key, dim in zip(config.obs_keys, config.obs_dims):
        name = key.removeprefix("observation.")
        got = spaces[name].shape if name in spaces else "nothing"
        if got != (dim,):
            raise RobotrlError(f"policy expects {name} of shape ({dim},); {where} gives {got}")
    if env.action_space.shape != (config.action_dim,):
        raise RobotrlError(
            f"policy outputs {config.action_dim} action values; {where} takes "
            f"{env.action_space.shape[0]}"
        )


def rollout(
    cfg: RolloutConfig, env=None, film: int | None = None, policy=None
) -> tuple[RolloutSummary, list[np.ndarray]]:
    """Run `cfg.episodes` episodes; returns the summary and frames of the first `film`
    episodes (default: `cfg.video_episodes` when `cfg.video` is set, else none)."""
    from robotrl.tasks import make, task_name

    if cfg.episodes < 1:
        raise RobotrlError(f"--episodes must be at least 1, got {cfg.episodes}")
    if cfg.video:
        if cfg.video_episodes < 1:
            raise RobotrlError(f"--video-episodes must be at least 1, got {cfg.video_episodes}")
        check_output(cfg.video)
    if film is None:
        film = cfg.video_episodes if cfg.video else 0
    own_env = env is None
    env = env or make(
        cfg.task,
        robot=cfg.robot,
        obs_mode=cfg.obs_mode,
        action_mode=cfg.action_mode,
        render_mode="rgb_array" if film else None,
    )
    if not isinstance(env, SafeEnv):
        env = safe(env)  # every command to an env passes the safety layer
    policy = policy or make_policy(cfg.policy, env)
    successes, lengths, scores, frames = [], [], [], []
    step_time, start = 0.0, time.perf_counter()
    bar = tqdm(
        range(cfg.episodes),
        desc=f"{task_name(cfg.task)}/{cfg.robot}",
        unit="ep",
        disable=None if cfg.progress else True,
        leave=False,
    )
    rng_scope = _EpisodeSeededTorch(policy)
    try:
        for episode in bar:
            obs, info = env.reset(seed=cfg.seed + episode)
            policy.reset()
            rng_scope.seed(cfg.seed + episode)
            filming = episode < film
            length, best, done = 0, -np.inf, False
            while not done:
                action = policy.select_action(obs)
                t = time.perf_counter()
                obs, reward, terminated, truncated, info = env.step(action)
                step_time += time.perf_counter() - t
                length += 1
                best = max(best, float(reward))
                done = terminated or truncated
                if filming:  # the scene, and the policy's own cameras beside it
                    text = f"{task_name(cfg.task)} / {cfg.robot} / episode {episode}"
                    text += "  success" if info["is_success"] else ""
                    frames.append(caption(with_cameras(env.render(), obs), text))
            successes.append(bool(info["is_success"]))
            lengths.append(length)
            scores.append(best)
            bar.set_postfix(success=f"{np.mean(successes):.0%}")
    finally:
        rng_scope.close()
        if own_env:
            env.close()
    summary = RolloutSummary.of(
        task_name(cfg.task),
        cfg.robot,
        cfg.policy,
        successes,
        lengths,
        scores,
        step_time,
        time.perf_counter() - start,
        env.safety.interventions,
    )
    return summary, frames


class _EpisodeSeededTorch(contextlib.ExitStack):
    """A torch policy samples its noise from torch's global RNG. Seeding it per episode makes
    an episode's outcome depend on its seed alone, not on the episodes before it or on which
    process ran it (`evaluate(workers=N)` gives the same figures for every N); the caller's RNG
    state is restored afterwards, so an evaluation inside training does not change training."""

    def __init__(self, policy):
        super().__init__()
        self.torch = None
        if hasattr(policy, "parameters"):
            import torch

            self.torch = torch
            self.enter_context(torch.random.fork_rng(devices=[]))

    def seed(self, seed: int) -> None:
        if self.torch is not None:
            self.torch.manual_seed(seed)
