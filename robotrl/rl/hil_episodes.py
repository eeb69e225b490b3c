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


def make_hil_env(
    env_spec: str,
    teleop: str = "sim-human",
    seed: int = 0,
    obs_mode: str = "state",
    ros_reward: str | None = None,
):
    """`safe(env)` wrapped in an `InterventionWrapper` for the named device. `ros_reward` is
    a `RosEnv` reward source (e.g. `classifier:DIR`; see `robotrl.drivers.reward`)."""
    from robotrl.control import safe
    from robotrl.envs import make_env, parse_env_spec
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
    return InterventionWrapper(safe(env), device)


class NoDevice(Teleop):
    """No human: the policy always acts (evaluation, or RL without interventions)."""

    name = "none"

    def read(self, obs=None) -> TeleopCommand:
        return TeleopCommand(None)


@dataclass
class RewardSource:
    """Where the RL reward comes from: the task's success (`sparse`), its dense reward, or a
    learned success classifier on the next observation (`classifier`, as on a real robot)."""

    kind: str = "sparse"
    classifier: object = None

    def __call__(self, next_obs: dict, reward: float, info: dict) -> tuple[float, bool]:
        if self.kind == "dense":
            return float(reward), bool(info.get("is_success", False))
        if self.kind == "classifier":
            success = self.classifier.success(next_obs)
            return float(success), success
        success = bool(info.get("is_success", False))
        return float(success), success


def run_episode(env, act, seed: int | None, reward: RewardSource, keys) -> tuple[dict, dict]:
    """One episode; `act(obs) -> action`. Returns transition rows and the episode's stats."""
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list] = {}
    total, success = 0.0, False
    started = time.monotonic()
    while True:
        action = act(obs)
        next_obs, env_reward, terminated, truncated, info = env.step(action)
        r, success = reward(next_obs, env_reward, info)
        terminated = terminated or success  # a classifier's success ends the episode too
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
    hil = info.get("hil") or {"steps": len(rows["reward"]), "intervention_rate": 0.0}
    stats = {"return": total, "success": bool(success), "seconds": time.monotonic() - started}
    stats.update(hil)
    return {k: np.stack(v) for k, v in rows.items()}, stats


def policy_fn(agent, deterministic: bool = False, generator=None):
    def act(obs):
        return agent.act(obs, deterministic=deterministic, generator=generator)

    return act


def evaluate_agent(
    agent, env_spec: str, episodes: int, seed: int = 100_000, deterministic: bool = False
) -> float:
    """Success rate of the policy alone (no human) on unseen seeds: sampling its actions as
    the actor does, or (`deterministic`) taking the mean action."""
    from robotrl.control import safe
    from robotrl.envs import make_env

    options = {}
    if agent.image_keys:  # the cameras (and their size) the agent was trained with
        options["obs_mode"] = (
            "state+pixels" if "environment_state" in agent.obs_shapes else "pixels"
        )
        options["image_size"] = tuple(agent.obs_shapes[agent.image_keys[0]][:2])
    env = safe(make_env(env_spec, **options))
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


def make_reward(cfg) -> RewardSource:
    """The reward source `cfg.reward` names (with `cfg.classifier` for `classifier`)."""
    if cfg.reward == "classifier":
        if not cfg.classifier:
            raise RobotrlError("--reward classifier needs --classifier DIR")
        from robotrl.rl.classifier import load_classifier

        return RewardSource("classifier", load_classifier(cfg.classifier))
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
