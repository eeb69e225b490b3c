"""What the human-in-the-loop processes share — the one-process loop (`hil`), the actor
(`actor`) and the learner (`learner`) — so none of them imports another for it: the env behind
the safety layer and the intervention wrapper, the reward source, one episode turned into
transitions, the policy alone evaluated on unseen seeds, and the run's plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robotrl.errors import RobotrlError
from robotrl.teleop.base import Teleop, TeleopCommand

TELEOPS = ("sim-human", "spacemouse", "keyboard", "gamepad", "none")
SUCCESS_FRAMES_HELP = (
    "classifier reward: positive frames in a row that make a success (one false positive "
    "then does not end an episode); the classifier alone ends an episode, a sim task's "
    "success flag does not"
)


def make_hil_env(
    env_spec: str,
    teleop: str = "sim-human",
    seed: int = 0,
    obs_mode: str = "state",
    ros_reward: str | None = None,
    encoder=None,
):
    """`safe(env)` wrapped in an `InterventionWrapper` for the named device. `ros_reward` is
    a `RosEnv` reward source (e.g. `classifier:DIR`; see `robotrl.drivers.reward`). With a
    `FrozenEncoder`, observations carry its `image_features` (`EncodedObservations`)."""
    from robotrl.control import safe
    from robotrl.envs import make_env, parse_env_spec
    from robotrl.rl.frozen_encoder import EncodedObservations, pixel_options
    from robotrl.rl.interventions import InterventionWrapper
    from robotrl.teleop import make_teleop, teleop_class

    if teleop not in TELEOPS:
        raise RobotrlError(f"unknown --teleop '{teleop}': choose {', '.join(TELEOPS)}")
    kind, _ = parse_env_spec(env_spec)
    options = {}
    mode = None if teleop in ("sim-human", "none") else teleop_class(teleop).required_action_mode
    if mode:
        options["action_mode"] = mode
    if kind == "sim":
        options["obs_mode"] = obs_mode
        if encoder is not None:
            options.update(pixel_options(encoder, obs_mode))
        options["realtime"] = teleop not in ("sim-human", "none")  # a person needs real time
    elif ros_reward:
        options["reward"] = ros_reward
    env = make_env(env_spec, **options)
    if teleop == "sim-human":
        if kind != "sim":
            raise RobotrlError("--teleop sim-human needs a sim env (it drives the task's expert)")
        from robotrl.rl.sim_human import SimHuman

        device = SimHuman(env, seed=seed)
    elif teleop == "none":
        device = NoDevice(env.unwrapped.robot)
    else:
        device = make_teleop(teleop, env)
    env = InterventionWrapper(safe(env), device)
    return env if encoder is None else EncodedObservations(env, encoder)


class NoDevice(Teleop):
    """No human: the policy always acts (evaluation, or RL without interventions)."""

    name = "none"

    def read(self, obs=None) -> TeleopCommand:
        return TeleopCommand(None)


@dataclass
class RewardSource:
    """Where the RL reward comes from: the task's success (`sparse`), its dense reward, or a
    learned success classifier on the next observation (`classifier`, as on a real robot).
    The classifier's success takes `frames` positive frames in a row: a single false positive
    does not end an episode with a reward it did not earn."""

    kind: str = "sparse"
    classifier: object = None
    frames: int = 1
    streak: int = 0  # consecutive positive frames so far in this episode

    def reset(self) -> None:
        self.streak = 0

    def __call__(self, next_obs: dict, reward: float, info: dict) -> tuple[float, bool]:
        if self.kind == "dense":
            return float(reward), bool(info.get("is_success", False))
        if self.kind == "classifier":
            self.streak = self.streak + 1 if self.classifier.success(next_obs) else 0
            success = self.streak >= self.frames
            return float(success), success
        success = bool(info.get("is_success", False))
        return float(success), success


def run_episode(env, act, seed: int | None, reward: RewardSource, keys) -> tuple[dict, dict]:
    """One episode; `act(obs) -> action`. Returns transition rows and the episode's stats.

    With a classifier reward the classifier alone ends an episode, as on a real arm: a sim
    task's own success flag does not (the episode runs on until the classifier says so or
    time is up); it is kept as `task_success`, to measure the classifier, never as reward."""
    obs, _ = env.reset(seed=seed)
    reward.reset()
    rows: dict[str, list] = {}
    total, success, task_success = 0.0, False, False
    started = time.monotonic()
    while True:
        action = act(obs)
        next_obs, env_reward, terminated, truncated, info = env.step(action)
        r, success = reward(next_obs, env_reward, info)
        task_success = task_success or bool(info.get("is_success", False))
        terminated = success if reward.kind == "classifier" else terminated or success
        row = {f"obs.{k}": obs[k] for k in keys}
        row.update({f"next_obs.{k}": next_obs[k] for k in keys})
        row.update(
            action=np.asarray(info.get("action", action), np.float32),
            reward=np.float32(r),
            terminated=bool(terminated and success),
            intervention=bool(info.get("intervention", False)),
        )
        for k, v in row.items():
            rows.setdefault(k, []).append(v)
        total += r
        obs = next_obs
        if terminated or truncated:
            break
    human = np.asarray(rows["intervention"], bool)
    stats = {"return": total, "success": bool(success), "task_success": task_success,
             "seconds": time.monotonic() - started, "steps": len(human),
             "intervention_steps": int(human.sum()), "intervention_rate": float(human.mean()),
             "interventions": int((human & ~np.r_[False, human[:-1]]).sum())}  # fmt: skip
    return {k: np.stack(v) for k, v in rows.items()}, stats


def policy_fn(agent, deterministic: bool = False, generator=None):
    def act(obs):
        return agent.act(obs, deterministic=deterministic, generator=generator)

    return act


def evaluate_agent(
    agent,
    env_spec: str,
    episodes: int,
    seed: int = 100_000,
    deterministic: bool = False,
    encoder=None,
) -> float:
    """Success rate of the policy alone (no human) on unseen seeds: sampling its actions as
    the actor does, or (`deterministic`) taking the mean action. An agent trained on a
    `FrozenEncoder`'s features needs that `encoder`."""
    from robotrl.control import safe
    from robotrl.envs import make_env
    from robotrl.rl.frozen_encoder import EncodedObservations, pixel_options

    options = {}
    mode = "state+pixels" if "environment_state" in agent.obs_shapes else "pixels"
    if agent.image_keys:  # the cameras (and their size) the agent was trained with
        options["obs_mode"] = mode
        options["image_size"] = tuple(agent.obs_shapes[agent.image_keys[0]][:2])
    elif encoder is not None:
        options.update(pixel_options(encoder, mode))
    env = safe(make_env(env_spec, **options))
    if encoder is not None:
        env = EncodedObservations(env, encoder)
    agent.eval()
    generator = torch.Generator().manual_seed(seed)
    wins = 0
    with torch.no_grad():
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            while True:
                action = agent.act(obs, deterministic=deterministic, generator=generator)
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            wins += bool(info.get("is_success"))
    env.close()
    return wins / max(episodes, 1)


def make_reward(cfg, encoder=None) -> RewardSource:
    """The reward source `cfg.reward` names (with `cfg.classifier` and `cfg.success_frames`
    for `classifier`). A classifier of image features needs the run's `encoder` to be its."""
    if cfg.reward == "classifier":
        if not cfg.classifier:
            raise RobotrlError("--reward classifier needs --classifier DIR")
        if cfg.success_frames < 1:
            raise RobotrlError(f"--success-frames must be >= 1, got {cfg.success_frames}")
        from robotrl.rl.classifier import load_classifier

        classifier = load_classifier(cfg.classifier)
        wants = classifier.encoder.get("digest")
        if wants and wants != (encoder.digest if encoder else None):
            raise RobotrlError(
                f"{cfg.classifier} reads the features of encoder {classifier.encoder['path']}: "
                "give the run that --encoder"
            )
        return RewardSource("classifier", classifier, cfg.success_frames)
    return RewardSource(cfg.reward)


def obs_shapes_of(env) -> dict:
    """Observation key -> shape, as the agent and the transition rows take them."""
    return {k: tuple(space.shape) for k, space in env.observation_space.spaces.items()}


def evaluate_and_log(trainer, env: str, episodes: int, progress: bool = True) -> float:
    """Success of the policy alone on unseen seeds, acting as the actor does (sampled
    actions) and with its mean action, appended to `log.jsonl` (the format
    `policies.runs.plot_curves` reads) with the wall time and data counts. The weights are
    kept in `snapshots/` so a curve can be re-measured with more episodes later."""
    from safetensors.torch import save_file

    t0 = time.monotonic()
    encoder = trainer.encoder
    success = evaluate_agent(trainer.agent, env, episodes, encoder=encoder)
    mean_action = evaluate_agent(trainer.agent, env, episodes, deterministic=True, encoder=encoder)
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
