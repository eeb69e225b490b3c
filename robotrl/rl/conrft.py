"""ConRFT-style fine-tuning of a consistency policy (Chen et al., RSS 2025), in one file.

Actor: a distilled `ConsistencyPolicy` sampling its action chunk in one network evaluation.
Critic: an ensemble of LayerNorm MLPs Q(s, a_{t:t+k}) over the policy's (normalized)
observation window and the first k = `n_action_steps` actions of a chunk, i.e. the actions
actually executed before the policy plans again (a chunked critic, so the policy keeps
acting in chunks as it was trained to). Its TD target is the k-step discounted return plus
gamma^k min_i Q_i(s_{t+k}, pi(s_{t+k})).

Actor loss = bc_weight * consistency BC loss - q_weight * Q(s, pi(s)) / mean|Q|, where the
BC loss is ConRFT's: noise a demonstrated chunk to a random level of the policy's grid and ask
the consistency function to return the clean chunk; it applies to the demo buffer's rows
(demonstrations and, online, human interventions). The Q term is normalized by its batch
magnitude (as TD3+BC does) so the two weights stay comparable across reward scales, and it
acts only after `critic_warmup` critic updates. A large Q weight lets a critic that is not
yet accurate pull the policy off the data in the offline stage, hence the small default, 0.01
(docs/results.md, human-in-the-loop RL).

The critic is Cal-QL's (Nakamoto et al. 2023, as ConRFT's offline stage): besides the TD
loss, Q of the policy's chunk is pushed below Q of the data's chunk, but never below the
Monte-Carlo return the data achieved. Without it the Q term chases the critic's errors off
the data, where nothing corrects them.

Stages: offline (`offline_steps` updates on demonstrations only), then online: episodes
with a human (the simulated one in sim) who may take over; their transitions go to both
buffers (HIL-SERL), batches are half demo, half online, `utd` updates per decision.
"""

from __future__ import annotations

import copy
import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from robotrl.errors import RobotrlError
from robotrl.rl.buffers import ReplayBuffer, sample_mixed
from robotrl.rl.sac import mlp


@dataclass
class ConRFTConfig:
    policy: str = field(default="", metadata={"help": "consistency policy run or checkpoint"})
    demos: str = field(default="", metadata={"help": "demonstrations (default: the policy's data)"})
    demo_episodes: int = field(default=20, metadata={"help": "demonstrations to use"})
    out: str = field(default="runs/conrft", metadata={"help": "output directory"})
    task: str = field(default="", metadata={"help": "sim task (default: the policy's)"})
    teleop: str = field(default="sim-human", metadata={"help": "sim-human or none"})
    offline_steps: int = field(default=300, metadata={"help": "updates on demonstrations only"})
    online_minutes: float = field(default=10.0, metadata={"help": "online stage wall time"})
    utd: int = field(default=1, metadata={"help": "updates per policy decision online"})
    bc_weight: float = field(default=1.0, metadata={"help": "consistency BC loss weight"})
    q_weight: float = field(default=0.01, metadata={"help": "Q term weight (normalized)"})
    critic_warmup: int = field(default=100, metadata={"help": "updates before the Q term acts"})
    conservative: float = field(default=1.0, metadata={"help": "Cal-QL penalty weight (0: off)"})
    actor_lr: float = field(default=3e-5, metadata={"help": "policy learning rate"})
    critic_lr: float = field(default=3e-4, metadata={"help": "critic learning rate"})
    batch_size: int = field(default=64, metadata={"help": "macro-transitions per update"})
    gamma: float = field(default=0.99, metadata={"help": "per-step discount"})
    eval_episodes: int = field(default=40, metadata={"help": "episodes per evaluation"})
    seed: int = field(default=0, metadata={"help": "seed"})
    threads: int = field(default=1, metadata={"help": "torch threads"})


class ChunkCritic(torch.nn.Module):
    def __init__(self, n_cond: int, n_action: int, ensemble: int = 2, hidden: int = 256):
        super().__init__()
        self.qs = torch.nn.ModuleList(
            mlp(n_cond + n_action, hidden, 1, layer_norm=True) for _ in range(ensemble)
        )

    def forward(self, cond, actions) -> torch.Tensor:  # [ensemble, batch]
        x = torch.cat([cond, actions.flatten(1)], -1)
        return torch.stack([q(x).squeeze(-1) for q in self.qs])


def sample_chunk(policy, cond, generator=None) -> torch.Tensor:
    """One-step consistency sample (normalized chunk [B, H, A]), differentiable."""
    top = len(policy.grid_sigmas) - 1
    shape = (len(cond), policy.config.horizon, policy.config.action_dim)
    x = policy.grid_sigmas[top] * torch.randn(shape, generator=generator)
    index = torch.full((len(cond),), top, dtype=torch.long)
    return policy.consistency(x, index, cond).clamp(-1, 1)


def bc_loss(policy, cond, chunk, is_pad, generator=None) -> torch.Tensor:
    """ConRFT's consistency BC: f(x0 + sigma_n z, sigma_n) should return x0 at every level."""
    x0 = policy.action_norm.normalize(chunk)
    n = torch.randint(1, len(policy.grid_sigmas), (len(x0),), generator=generator)
    x = x0 + policy.grid_sigmas[n].view(-1, 1, 1) * torch.randn(x0.shape, generator=generator)
    error = (policy.consistency(x, n, cond) - x0) ** 2 * (~is_pad)[..., None]
    return error.mean()


def demo_transitions(policy, root: str, episodes: int, k: int, gamma: float) -> dict:
    """Macro-transitions (k executed steps) at every frame of the first `episodes` demos."""
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset

    cfg = policy.config
    ds = Dataset(root)
    count = min(episodes, ds.num_episodes)
    rows = np.arange(ds.starts[0], ds.ends[count - 1])
    windows = WindowDataset(ds, cfg.n_obs, cfg.horizon, cfg.obs_keys, ())
    last = windows._last[rows]
    success = ds.columns["next.success"].reshape(-1).astype(bool)
    ep_success = np.array([success[e - 1] for e in ds.ends[:count]])
    now, nxt = windows[rows], windows[np.minimum(rows + k, last)]
    steps_left = last - rows  # the success, if any, comes at the episode's last frame
    succeeded = ep_success[np.searchsorted(ds.starts, rows, "right") - 1]
    done = succeeded & (steps_left < k)
    out = {f"obs.{key}": now[key].numpy() for key in cfg.obs_keys}
    out.update({f"next_obs.{key}": nxt[key].numpy() for key in cfg.obs_keys})
    out["chunk"] = now["action"].numpy().astype(np.float32)
    out["chunk_is_pad"] = now["action_is_pad"].numpy()
    out["reward"] = np.where(done, gamma ** np.minimum(steps_left, k - 1), 0.0).astype(np.float32)
    out["terminated"] = done
    out["intervention"] = np.zeros(len(rows), bool)
    out["mc_return"] = np.where(succeeded, gamma**steps_left, 0.0).astype(np.float32)
    return out


class ConRFT:
    def __init__(self, policy, cfg: ConRFTConfig):
        self.policy, self.cfg = policy, cfg
        self.k = policy.config.n_action_steps
        n_cond = policy.cond_dim
        self.critic = ChunkCritic(n_cond, self.k * policy.config.action_dim)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(policy.net.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.demo, self.online = ReplayBuffer(100_000), ReplayBuffer(100_000)
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.updates = 0

    def cond(self, batch: dict, prefix: str) -> torch.Tensor:
        keys = self.policy.config.obs_keys
        return self.policy.condition({k: torch.as_tensor(batch[f"{prefix}.{k}"]) for k in keys})

    def update(self) -> dict:
        cfg, p = self.cfg, self.policy
        b = sample_mixed(self.online, self.demo, cfg.batch_size, self.rng)
        chunk = torch.as_tensor(b["chunk"]).float()
        executed = p.action_norm.normalize(chunk)[:, : self.k]
        cond = self.cond(b, "obs")
        with torch.no_grad():
            next_cond = self.cond(b, "next_obs")
            next_actions = sample_chunk(p, next_cond, self.gen)[:, : self.k]
            q_next = self.critic_target(next_cond, next_actions).min(0).values
            not_done = 1.0 - torch.as_tensor(b["terminated"]).float()
            target = torch.as_tensor(b["reward"]) + cfg.gamma**self.k * not_done * q_next
        q_data = self.critic(cond.detach(), executed)
        critic_loss = ((q_data - target) ** 2).mean(1).sum()
        if cfg.conservative:  # Cal-QL: push Q(s, pi(s)) below Q(s, a_data), not below the
            # return the data actually got (so a good policy is not undervalued)
            with torch.no_grad():
                pi_actions = sample_chunk(p, cond, self.gen)[:, : self.k]
            q_pi = self.critic(cond.detach(), pi_actions)
            q_pi = torch.maximum(q_pi, torch.as_tensor(b["mc_return"]))
            critic_loss = critic_loss + cfg.conservative * (q_pi - q_data).mean(1).sum()
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        demo = torch.as_tensor(b["is_demo"]) | torch.as_tensor(b["intervention"])
        bc = torch.zeros(())
        if demo.any():
            pad = torch.as_tensor(b["chunk_is_pad"])
            bc = bc_loss(p, cond[demo], chunk[demo], pad[demo], self.gen)
        self.critic.requires_grad_(False)
        q_pi = self.critic(cond, sample_chunk(p, cond, self.gen)[:, : self.k]).mean(0)
        self.critic.requires_grad_(True)
        q_term = q_pi.mean() / q_pi.abs().mean().detach().clamp_min(1e-3)
        # An untrained critic's gradient is noise: the Q term waits for the critic to learn.
        q_weight = cfg.q_weight if self.updates >= cfg.critic_warmup else 0.0
        actor_loss = cfg.bc_weight * bc - q_weight * q_term
        self.actor_opt.zero_grad()
        actor_loss.backward()
        torch.nn.utils.clip_grad_norm_(p.net.parameters(), 1.0)
        self.actor_opt.step()
        with torch.no_grad():
            for t, s in zip(self.critic_target.parameters(), self.critic.parameters()):
                t.lerp_(s, 0.005)
        self.updates += 1
        return {"critic_loss": critic_loss.item(), "bc": bc.item(), "q": q_pi.mean().item()}

    def episode(self, env, seed: int) -> dict:
        """One online episode: the policy plans a chunk every k steps, the human may take
        over; each k steps become one macro-transition."""
        p, keys = self.policy, self.policy.config.obs_keys
        obs, _ = env.reset(seed=seed)
        history: deque = deque(maxlen=p.config.n_obs)

        def window():
            return {k: np.stack([h[k] for h in history]) for k in keys}

        def frame(o):
            return {k: np.asarray(o[k.removeprefix("observation.")], np.float32) for k in keys}

        history.extend([frame(obs)] * p.config.n_obs)
        rows, done, decisions = [], False, 0
        while not done:
            before = window()
            with torch.no_grad():
                cond = p.condition({k: torch.as_tensor(v)[None] for k, v in before.items()})
                plan = p.action_norm.unnormalize(sample_chunk(p, cond, self.gen))[0].numpy()
            executed, reward, human, all_human, terminal = [], 0.0, False, True, False
            for i in range(self.k):
                obs, _, terminated, truncated, info = env.step(plan[i])
                history.append(frame(obs))
                executed.append(info["action"])
                human |= info["intervention"]
                all_human &= info["intervention"]
                if info.get("is_success"):
                    reward, terminal = self.cfg.gamma**i, True
                if terminated or truncated:
                    done = True
                    break
            decisions += 1
            chunk = np.stack(executed + [executed[-1]] * (p.config.horizon - len(executed)))
            pad = np.arange(p.config.horizon) >= len(executed)
            rows.append({**{f"obs.{k}": v for k, v in before.items()},
                         **{f"next_obs.{k}": v for k, v in window().items()},
                         "chunk": chunk.astype(np.float32), "chunk_is_pad": pad,
                         "reward": np.float32(reward), "terminated": terminal,
                         "intervention": human, "human_chunk": all_human})  # fmt: skip
        batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        # Monte-Carlo return of each macro-step: gamma^(steps to the success), or 0.
        lengths = (~batch["chunk_is_pad"]).sum(1)  # steps each macro-step executed
        steps_to_end = np.cumsum(lengths[::-1])[::-1] - 1
        succeeded = bool(info.get("is_success"))
        batch["mc_return"] = (succeeded * self.cfg.gamma**steps_to_end).astype(np.float32)
        # Only chunks a human executed from start to end teach BC: a chunk the policy began
        # and the human finished is neither the human's plan nor the policy's.
        human_chunk = batch.pop("human_chunk")
        self.online.add(batch)
        if human_chunk.any():
            self.demo.add({k: v[human_chunk] for k, v in batch.items()})
        stats = info.get("hil", {})
        return {"success": bool(info.get("is_success")), "decisions": decisions, **stats}


def conrft(cfg: ConRFTConfig) -> dict:
    from robotrl.policies.checkpoint import load_policy, save_policy
    from robotrl.policies.evaluate import evaluate
    from robotrl.rl.hil_episodes import make_hil_env

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if not cfg.policy:
        raise RobotrlError("--policy is required: a consistency policy (robotrl distill)")
    policy = load_policy(cfg.policy)
    if policy.kind != "consistency":
        raise RobotrlError(f"--policy must be a consistency policy, {cfg.policy} is {policy.kind}")
    if policy.config.image_keys:
        raise RobotrlError("ConRFT here fine-tunes state policies; this one reads cameras")
    if policy.config.action_frame:  # its critic would score actions in a moving frame
        raise RobotrlError(
            "ConRFT here fine-tunes world-frame policies; this one was trained "
            f"with --action-frame {policy.config.action_frame}"
        )
    policy.set_sampler("ddim", 1)
    task = cfg.task or policy.config.meta.get("task")
    demos = cfg.demos or policy.config.meta.get("data", "")
    if not task or not demos:
        raise RobotrlError("--task and --demos are required: the checkpoint does not name them")
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    (run / "conrft_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    agent = ConRFT(policy, cfg)
    agent.demo.add(demo_transitions(policy, demos, cfg.demo_episodes, agent.k, cfg.gamma))

    def success(stage: str) -> float:
        policy.eval()
        rate = evaluate(policy, task, episodes=cfg.eval_episodes, progress=False)["success_rate"]
        log({"stage": stage, "eval_success": rate})
        return rate

    def log(record: dict) -> None:
        record = {**record, "updates": agent.updates, "wall_s": time.monotonic() - started}
        with open(run / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    started = time.monotonic()
    result = {"before": success("before")}
    policy.train()
    for step in range(cfg.offline_steps):
        metrics = agent.update()
        if (step + 1) % 50 == 0:
            log({"stage": "offline", **metrics})
    result["after_offline"] = success("after_offline")
    env = make_hil_env(f"sim:{task}", cfg.teleop, cfg.seed)
    online_start, episodes = time.monotonic(), 0
    while time.monotonic() - online_start < cfg.online_minutes * 60:
        policy.eval()
        stats = agent.episode(env, seed=cfg.seed * 1_000_000 + episodes)
        episodes += 1
        policy.train()
        for _ in range(cfg.utd * stats["decisions"]):
            metrics = agent.update()
        log({"stage": "online", "episode": episodes, **stats, **metrics})
    env.close()
    result["after_online"] = success("after_online")
    result["online_episodes"] = episodes
    save_policy(policy, run / "policy", {"conrft": result})
    (run / "result.json").write_text(json.dumps(result, indent=2))
    return result
