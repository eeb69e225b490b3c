"""Residual PPO (ResiP, Ankile et al. 2024), CleanRL-style: the whole algorithm in this file.

Each iteration collects `rollout` steps from `envs` sim envs. At every step the frozen base
plans/executes its chunks for all envs (one batched `predict_chunk` for the envs whose queue ran
dry), the residual actor sees (observation, base action) and samples a correction u ~ N(mean,
std), and the env executes base + scale * clamp(u, -1, 1) through the safety layer. The reward
is sparse: 1 on the step an episode ends in success, else 0.

Then: rewards scaled by a running std of the discounted return, GAE(lambda) advantages on values
kept normalized by a running mean/std of the returns (the critic predicts normalized values),
and `epochs` passes of the clipped surrogate objective over shuffled minibatches, stopping early
when the approximate KL passes `target_kl`.

Simplification: a time-out is treated like a terminal state (no bootstrap). A task episode that
times out has failed, so its value is about 0 either way.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from robotrl.rl.finetune import (
    Counters,
    Run,
    explained_variance,
    new_policy,
    start_episodes,
)
from robotrl.rl.vector import BatchedBase, episode_ends, on_cpu, vector_env_for


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
        nn.Linear(hidden, out_dim),
    )  # fmt: skip


class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of numbers (parallel-batch update)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.full((), 1e-4, dtype=torch.float64))

    def update(self, x: torch.Tensor) -> None:
        x = x.double().flatten()
        mean, var, n = x.mean(), x.var(unbiased=False), len(x)
        delta, total = mean - self.mean, self.count + n
        self.var.copy_(
            (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        )
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return (self.var + 1e-8).sqrt().float()


class RewardScaler(nn.Module):
    """Rewards divided by the running std of each env's discounted return (CleanRL's
    NormalizeReward), so the critic's targets stay near unit scale whatever the reward."""

    def __init__(self, envs: int, gamma: float):
        super().__init__()
        self.gamma = gamma
        self.returns_rms = RunningMeanStd()
        self.register_buffer("returns", torch.zeros(envs, dtype=torch.float64))

    def __call__(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.returns.mul_(self.gamma).add_(reward.double())
        self.returns_rms.update(self.returns)
        self.returns.mul_(1.0 - done.double())
        return reward / self.returns_rms.std


def gae(rewards, values, dones, next_value, gamma: float, lam: float) -> torch.Tensor:
    """GAE(lambda) advantages [T, N]. `dones[t]` ends the episode of step t (the observation
    after it belongs to a new one), `next_value` is the value after the rollout's last step."""
    T = len(rewards)
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(next_value)
    for t in reversed(range(T)):
        following = next_value if t == T - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * lam * alive * last
        advantages[t] = last
    return advantages


def ppo_update(actor, critic, optimizer, batch: dict, cfg, rng: np.random.Generator) -> dict:
    """`cfg.epochs` passes of the clipped surrogate + value loss over shuffled minibatches of
    `batch` (features, samples, logprobs, advantages, normalized value targets); stops early
    when an epoch's approximate KL exceeds `cfg.target_kl`. Returns mean statistics."""
    size = len(batch["advantages"])
    params = list(actor.parameters()) + list(critic.parameters())
    stats = {"pg_loss": [], "v_loss": [], "kl": [], "clipfrac": []}
    for _ in range(cfg.epochs):
        order = torch.as_tensor(rng.permutation(size))
        epoch_kl = []
        for start in range(0, size, cfg.minibatch):
            mb = order[start : start + cfg.minibatch]
            mean, log_std = actor(batch["features"][mb])
            dist = Normal(mean, log_std.exp())
            log_ratio = dist.log_prob(batch["samples"][mb]).sum(-1) - batch["logprobs"][mb]
            ratio = log_ratio.exp()
            adv = batch["advantages"][mb]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
            value = critic(batch["features"][mb]).squeeze(-1)
            v_loss = 0.5 * (value - batch["targets"][mb]).pow(2).mean()
            loss = pg_loss + v_loss - cfg.ent_coef * dist.entropy().sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            with torch.no_grad():
                epoch_kl.append(((ratio - 1) - log_ratio).mean().item())  # k3 estimator
                stats["clipfrac"].append(((ratio - 1).abs() > cfg.clip).float().mean().item())
            stats["pg_loss"].append(pg_loss.item())
            stats["v_loss"].append(v_loss.item())
        stats["kl"] += epoch_kl
        if np.mean(epoch_kl) > cfg.target_kl:
            break
    return {k: float(np.mean(v)) for k, v in stats.items()}


def train(run: Run):
    cfg = run.cfg
    policy = new_policy(cfg)
    actor = policy.actor
    critic = mlp(policy.feature_dim, cfg.hidden, 1)
    value_norm = RunningMeanStd()  # of the returns: the critic predicts (V - mean) / std
    reward_scaler = RewardScaler(cfg.envs, cfg.gamma)
    counters = Counters()
    optimizer = torch.optim.Adam(
        [
            {"params": actor.parameters(), "lr": cfg.lr},
            {"params": critic.parameters(), "lr": cfg.critic_lr},
        ],
        eps=1e-5,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)  # constant
    rng = np.random.default_rng(cfg.seed)  # minibatch order
    noise = torch.Generator().manual_seed(cfg.seed)  # exploration and the base's sampling
    modules = {
        "actor": actor,
        "critic": critic,
        "value_norm": value_norm,
        "reward_scaler": reward_scaler,
        "counters": counters,
    }
    env_steps = run.resume(modules, optimizer, schedule, rng, noise)

    envs = vector_env_for(policy, cfg)
    base = BatchedBase(policy.base, cfg.envs, noise)
    T, N, A = cfg.rollout, cfg.envs, policy.config.action_dim
    features = torch.zeros(T, N, policy.feature_dim)
    samples, logprobs = torch.zeros(T, N, A), torch.zeros(T, N)
    values, rewards, dones = torch.zeros(T, N), torch.zeros(T, N), torch.zeros(T, N)

    obs, base_action, bar = start_episodes(run, cfg, policy, counters, envs, base, env_steps)
    next_features = policy.features(obs, base_action)

    while env_steps < cfg.steps:
        started, episode_successes, chunks = time.monotonic(), [], base.chunks_planned
        # ---- collect a rollout ----------------------------------------------------------
        for t in range(T):
            with torch.no_grad():
                mean, log_std = actor(next_features)
                u = mean + log_std.exp() * torch.randn(mean.shape, generator=noise)
                logprobs[t] = Normal(mean, log_std.exp()).log_prob(u).sum(-1)
                values[t] = critic(next_features).squeeze(-1) * value_norm.std + value_norm.mean
                action = policy.apply(base_action, actor.bound(u))
            features[t], samples[t] = next_features, u
            obs, _, _, _, info = envs.step(action)
            obs = on_cpu(obs)  # the networks live on the CPU (a no-op for CPU worlds)
            reward, done, finished = episode_ends(info)
            rewards[t] = reward_scaler(reward, done).float()
            dones[t] = done
            episode_successes += [float(reward[i]) for i in finished]
            base.reset(finished)
            base_action = torch.as_tensor(base.act(obs))
            next_features = policy.features(obs, base_action)
        env_steps += T * N
        rollout_s = time.monotonic() - started

        # ---- advantages on denormalized values, then normalized critic targets ----------
        with torch.no_grad():
            next_value = critic(next_features).squeeze(-1) * value_norm.std + value_norm.mean
        advantages = gae(rewards, values, dones, next_value, cfg.gamma, cfg.gae_lambda)
        returns = advantages + values
        value_norm.update(returns)
        batch = {
            "features": features.reshape(T * N, -1),
            "samples": samples.reshape(T * N, A),
            "logprobs": logprobs.flatten(),
            "advantages": advantages.flatten(),
            "targets": ((returns - value_norm.mean) / value_norm.std).float().flatten(),
        }
        stats = ppo_update(actor, critic, optimizer, batch, cfg, rng)

        # ---- log, evaluate, checkpoint ---------------------------------------------------
        counters.set("iteration", counters.get("iteration") + 1)
        counters.set("episodes", counters.get("episodes") + len(episode_successes))
        record = {
            "step": env_steps,
            "loss": stats["v_loss"],
            "pg_loss": stats["pg_loss"],
            "kl": stats["kl"],
            "clipfrac": stats["clipfrac"],
            "explained_variance": explained_variance(values.numpy(), returns.numpy()),
            "noise_std": float(actor.log_std.detach().exp().mean()),
            "train_success": float(np.mean(episode_successes)) if episode_successes else None,
            "episodes": int(counters.get("episodes")),
            "env_steps_per_s": T * N / rollout_s,
            "base_chunks_per_step": (base.chunks_planned - chunks) / (T * N),
            "seconds": run.elapsed(counters),
        }
        state = (modules, optimizer, schedule, rng, noise)
        run.end_iteration(record, bar, counters, policy, env_steps, T * N, state)
    bar.close()
    envs.close()
    return policy
