"""`robotrl finetune value`: an implicit Q-learning critic (IQL, Kostrikov et al. 2022) on the
chunks a diffusion policy executes, learned offline from demonstrations and the policy's own
rollouts, for value-guided sampling (IDQL, V-GPS; see `value_guided.py`).

A decision is one executed chunk: state s = the policy's own conditioning (its normalized
observation history, as it sees it), action a = the `n_action_steps` actions it executes
(normalized, in the policy's action frame), reward 1 when the segment ends the episode in
success, discount gamma per env step. Every step of an episode is a decision point (a chunk
may start anywhere), so 100 demos give thousands of decisions. IQL: V(s) fits the
tau-expectile of min(Q1, Q2)_target(s, a) over the data's actions, Q(s, a) fits
r + gamma^n (1 - done) V(s'): no action outside the data is ever queried while learning.
The rollouts (`--rollouts N`, the base in sim on training seeds, failures kept) give the
critic the base's failures that the demos never show.

A run directory holds `critic/` (config.json + model.safetensors: the checkpoint that
`eval --value` and `deploy --value` load, without pickle), `log.jsonl` and `value_config.json`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from robotrl.errors import RobotrlError

ROLLOUT_SEED = 2_000_000  # the base's rollouts: neither demo (0..) nor evaluation (100000..) seeds


@dataclass
class ValueConfig:
    base: str = field(default="", metadata={"help": "diffusion policy: checkpoint or run"})
    data: str = field(default="", metadata={"help": "demonstrations (default: the base's)"})
    task: str = field(default="", metadata={"help": "task of the rollouts (default: the base's)"})
    rollouts: int = field(default=200, metadata={"help": "episodes of the base to learn from"})
    out: str = field(default="runs/value", metadata={"help": "run directory"})
    steps: int = field(default=20_000, metadata={"help": "gradient steps"})
    batch_size: int = field(default=256, metadata={"help": "decisions per step"})
    hidden: int = field(default=256, metadata={"help": "width of the Q and V networks"})
    lr: float = field(default=3e-4, metadata={"help": "learning rate"})
    gamma: float = field(default=0.99, metadata={"help": "discount per env step"})
    expectile: float = field(default=0.8, metadata={"help": "IQL's tau"})
    tau: float = field(default=0.005, metadata={"help": "target network averaging"})
    envs: int = field(default=16, metadata={"help": "sim envs for the rollouts"})
    seed: int = field(default=0, metadata={"help": "seed of everything"})
    threads: int = field(default=1, metadata={"help": "torch threads"})


def mlp(n_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, 1),
    )  # fmt: skip


@dataclass
class CriticConfig:
    state_dim: int
    action_dim: int  # n_action_steps * A
    hidden: int = 256

    def to_dict(self) -> dict:
        return asdict(self)


class ChunkCritic(nn.Module):
    """Q1, Q2 (s, executed chunk) and V(s)."""

    def __init__(self, config: CriticConfig):
        super().__init__()
        self.config = config
        n = config.state_dim + config.action_dim
        self.q = nn.ModuleList([mlp(n, config.hidden), mlp(n, config.hidden)])
        self.v = mlp(config.state_dim, config.hidden)

    def q_values(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """min(Q1, Q2) [B] of flattened executed chunks `action` [B, n_action_steps * A]."""
        x = torch.cat([state, action], -1)
        return torch.minimum(self.q[0](x), self.q[1](x)).squeeze(-1)


def save_critic(critic: ChunkCritic, path: Path, extra: dict) -> Path:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(
        json.dumps({"critic": critic.config.to_dict(), **extra}, indent=2)
    )
    save_file(
        {k: v.contiguous() for k, v in critic.state_dict().items()}, tmp / "model.safetensors"
    )
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)  # a kill before this line leaves the previous critic in place
    shutil.rmtree(old, ignore_errors=True)
    return path


def load_critic(path: str | Path) -> tuple[ChunkCritic, dict]:
    """The critic of a `finetune value` run (or its `critic/` directory) and its config."""
    from safetensors.torch import load_file

    path = Path(path)
    if (path / "critic").is_dir():
        path = path / "critic"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise RobotrlError(f"no critic at {path}: run `robotrl finetune value` to make one")
    meta = json.loads((path / "config.json").read_text())
    critic = ChunkCritic(CriticConfig(**meta["critic"]))
    critic.load_state_dict(load_file(path / "model.safetensors"))
    return critic.eval(), meta


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory a policy path names (a run directory: its `policy/`)."""
    path = Path(path).resolve()
    return path / "policy" if (path / "policy" / "config.json").is_file() else path


# ---- decisions from episodes -----------------------------------------------------------
def decisions(policy, episodes: list[dict], gamma: float) -> dict[str, torch.Tensor]:
    """Every step of every episode as a decision: {state, action, reward, discount, next}.
    An episode is {observation key: [L, D], "action": [L, A], "success": bool}."""
    config = policy.config
    n_obs, n_exec = config.n_obs, config.n_action_steps
    states, actions, rewards, discounts, nexts = [], [], [], [], []
    for episode in episodes:
        length = len(episode["action"])
        steps = np.arange(length)
        history = np.clip(steps[:, None] + np.arange(1 - n_obs, 1)[None], 0, length - 1)
        window = {k: torch.as_tensor(episode[k][history]) for k in config.obs_keys}
        segment = np.clip(steps[:, None] + np.arange(n_exec)[None], 0, length - 1)
        with torch.no_grad():
            state = policy.condition(window)
            executed = torch.as_tensor(episode["action"][segment], dtype=torch.float32)
            action = policy.encode_actions(executed, window).flatten(1)
        ends = steps + n_exec >= length
        reward = (ends & bool(episode["success"])).astype(np.float32)
        following = np.minimum(steps + n_exec, length - 1)
        states.append(state)
        actions.append(action)
        rewards.append(torch.as_tensor(reward))
        discounts.append(torch.as_tensor(np.where(ends, 0.0, gamma**n_exec), dtype=torch.float32))
        nexts.append(state[following])
    return {
        "state": torch.cat(states),
        "action": torch.cat(actions),
        "reward": torch.cat(rewards),
        "discount": torch.cat(discounts),
        "next": torch.cat(nexts),
    }


def demo_episodes(root: str, keys) -> list[dict]:
    from robotrl.data.dataset import Dataset

    dataset = Dataset(root)
    missing = [k for k in (*keys, "action") if k not in dataset.columns]
    if missing:
        raise RobotrlError(f"{root} has no {missing[0]}: not the base's kind of data")
    out = []
    for i in range(dataset.num_episodes):
        sl = slice(dataset.starts[i], dataset.ends[i])
        episode = {k: np.asarray(dataset.columns[k][sl], np.float32) for k in (*keys, "action")}
        episode["success"] = bool(dataset.episodes[i].get("success", True))
        out.append(episode)
    return out


def base_episodes(policy, task: str, robot: str, count: int, envs: int, seed: int) -> list[dict]:
    """`count` episodes of the base in sim (every command through the safety layer)."""
    from robotrl.rl.vector import BatchedBase, ended, make_vector_env, successes

    n = min(envs, count)
    vector = make_vector_env(task, n, robot, policy.config.meta.get("action_mode"))
    base = BatchedBase(policy, n, torch.Generator().manual_seed(seed))
    keys = [k.removeprefix("observation.") for k in policy.config.obs_keys]
    obs, _ = vector.reset(seed=ROLLOUT_SEED + seed * 7919)
    running = [{k: [] for k in (*keys, "action")} for _ in range(n)]
    out, bar = [], tqdm(total=count, desc="base rollouts", unit="ep")
    while len(out) < count:
        actions = base.act(obs)
        for i in range(n):
            for k in keys:
                running[i][k].append(obs[k][i])
            running[i]["action"].append(actions[i])
        obs, _, terminated, truncated, info = vector.step(actions)
        success = successes(info, np.logical_or(terminated, truncated))
        for i in ended(terminated, truncated):
            episode = {f"observation.{k}": np.asarray(running[i][k], np.float32) for k in keys}
            episode["action"] = np.asarray(running[i]["action"], np.float32)
            episode["success"] = bool(success[i])
            out.append(episode)
            running[i] = {k: [] for k in (*keys, "action")}
            bar.update(1)
        base.reset(ended(terminated, truncated))
    bar.close()
    vector.close()
    return out[:count]


# ---- IQL ---------------------------------------------------------------------------------
def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    weight = torch.where(diff > 0, tau, 1 - tau)
    return (weight * diff.pow(2)).mean()


def fit_iql(critic: ChunkCritic, data: dict, cfg: ValueConfig, log) -> None:
    target = copy.deepcopy(critic).requires_grad_(False)
    optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.lr)
    rng = torch.Generator().manual_seed(cfg.seed)
    size = len(data["reward"])
    for step in tqdm(range(1, cfg.steps + 1), desc="IQL", unit="step"):
        idx = torch.randint(0, size, (cfg.batch_size,), generator=rng)
        s, a, s2 = data["state"][idx], data["action"][idx], data["next"][idx]
        with torch.no_grad():
            q_target = target.q_values(s, a)
            v_next = critic.v(s2).squeeze(-1)
        v_loss = expectile_loss(q_target - critic.v(s).squeeze(-1), cfg.expectile)
        backup = data["reward"][idx] + data["discount"][idx] * v_next
        x = torch.cat([s, a], -1)
        q_loss = sum((q(x).squeeze(-1) - backup).pow(2).mean() for q in critic.q)
        optimizer.zero_grad(set_to_none=True)
        (v_loss + q_loss).backward()
        optimizer.step()
        with torch.no_grad():
            for t, p in zip(target.parameters(), critic.parameters()):
                t.lerp_(p, cfg.tau)
        if step % 500 == 0 or step == cfg.steps:
            log({"step": step, "v_loss": v_loss.item(), "q_loss": q_loss.item()})


def train_value(cfg: ValueConfig) -> Path:
    from robotrl.policies.checkpoint import load_policy

    if not cfg.base or not Path(cfg.base).exists():
        raise RobotrlError(f"--base: no policy at {cfg.base or '(none given)'}")
    if cfg.rollouts < 0 or cfg.steps < 1 or not 0.5 <= cfg.expectile < 1:
        raise RobotrlError("--rollouts >= 0, --steps >= 1 and --expectile in [0.5, 1) please")
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    policy = load_policy(cfg.base)
    if policy.kind != "diffusion" or policy.config.image_keys:
        raise RobotrlError("finetune value takes a diffusion policy from state")
    meta = policy.config.meta or {}
    data_dir = cfg.data or meta.get("data")
    if not data_dir or not Path(data_dir).exists():
        raise RobotrlError(f"--data: no demonstrations at {data_dir or '(none given)'}")
    episodes = demo_episodes(data_dir, policy.config.obs_keys)
    if cfg.rollouts:
        from robotrl.tasks import task_name

        task = task_name(cfg.task or meta.get("task") or "")  # one line if unknown
        robot = meta.get("robot") or "panda"
        episodes += base_episodes(policy, task, robot, cfg.rollouts, cfg.envs, cfg.seed)
    data = decisions(policy, episodes, cfg.gamma)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    (run / "value_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    critic = ChunkCritic(CriticConfig(data["state"].shape[1], data["action"].shape[1], cfg.hidden))
    log_path = run / "log.jsonl"
    log_path.write_text("")

    def log(record: dict) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    log({"decisions": len(data["reward"]), "episodes": len(episodes),
         "successes": int(sum(e["success"] for e in episodes))})  # fmt: skip
    fit_iql(critic, data, cfg, log)
    extra = {"base": str(checkpoint_dir(cfg.base)), "gamma": cfg.gamma}
    save_critic(critic, run / "critic", extra)
    return run
