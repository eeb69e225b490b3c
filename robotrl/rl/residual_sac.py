"""Off-policy residual RL: SAC on a bounded residual with a progressive exploration schedule
(Policy Decorator, Yuan et al. 2024), CleanRL-style: the whole algorithm in this file.

For a sample-limited setting (a real robot): every transition is kept in a replay buffer and
reused. The residual is tanh-squashed, so a correction never exceeds `scale` in the base's
normalized action units (the base keeps control of the gross motion), and the residual's share
of the executed actions grows linearly from 0 to 1 over `explore_steps` env steps: early on most
steps run the base alone (correction 0, stored as such), so the critic first learns the base's
own values and the data never strays far from what the base does well.

Updates: twin Q critics on (features, correction) with Polyak-averaged targets, entropy-
regularized actor, automatically tuned entropy weight (target entropy -dim(A)). The reward is
sparse (1 on the step an episode ends in success); a time-out counts as terminal, as in
`robotrl.rl.ppo`.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from robotrl.rl.finetune import Counters, Run, new_policy, start_episodes
from robotrl.rl.vector import BatchedBase, episode_ends, on_cpu, vector_env_for


class QNet(nn.Module):
    def __init__(self, feature_dim: int, action_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(feature_dim + action_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, features: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([features, correction], -1)).squeeze(-1)


class ReplayBuffer(nn.Module):
    """A ring buffer of transitions; its tensors are buffers, so it is saved with the run."""

    def __init__(self, capacity: int, feature_dim: int, action_dim: int):
        super().__init__()
        self.capacity = capacity
        self.register_buffer("features", torch.zeros(capacity, feature_dim))
        self.register_buffer("correction", torch.zeros(capacity, action_dim))
        self.register_buffer("reward", torch.zeros(capacity))
        self.register_buffer("done", torch.zeros(capacity))
        self.register_buffer("next_features", torch.zeros(capacity, feature_dim))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long))
        self.register_buffer("size", torch.zeros((), dtype=torch.long))

    def add(self, **batch: torch.Tensor) -> None:
        n = len(batch["reward"])
        index = (int(self.cursor) + torch.arange(n)) % self.capacity
        for name, value in batch.items():
            getattr(self, name)[index] = value
        self.cursor.fill_((int(self.cursor) + n) % self.capacity)
        self.size.fill_(min(int(self.size) + n, self.capacity))

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(rng.integers(0, int(self.size), n))
        names = ("features", "correction", "reward", "done", "next_features")
        return {name: getattr(self, name)[index] for name in names}


def squashed_sample(actor, features: torch.Tensor, generator=None):
    """A tanh-squashed correction in (-1, 1) and its log-probability."""
    mean, log_std = actor(features)
    u = mean + log_std.exp() * torch.randn(mean.shape, generator=generator)
    y = torch.tanh(u)
    logprob = Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - y.pow(2) + 1e-6)
    return y, logprob.sum(-1)


def train(run: Run):
    cfg = run.cfg
    policy = new_policy(cfg, squash=True)
    actor, F, A = policy.actor, policy.feature_dim, policy.config.action_dim
    critics = nn.ModuleList([QNet(F, A, cfg.hidden), QNet(F, A, cfg.hidden)])
    targets = copy.deepcopy(critics).requires_grad_(False)
    entropy = nn.ParameterDict({"log_alpha": nn.Parameter(torch.tensor(np.log(cfg.init_alpha)))})
    buffer = ReplayBuffer(cfg.buffer, F, A)
    counters = Counters()
    # One optimizer, three parameter groups; each loss back-propagates only into its own group
    # (`backward(inputs=...)`), and Adam skips parameters without a gradient.
    optimizer = torch.optim.Adam(
        [
            {"params": actor.parameters(), "lr": cfg.lr},
            {"params": critics.parameters(), "lr": cfg.critic_lr},
            {"params": entropy.parameters(), "lr": cfg.lr},
        ]
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)  # constant
    rng = np.random.default_rng(cfg.seed)  # replay sampling and the exploration schedule
    noise = torch.Generator().manual_seed(cfg.seed)  # action noise and the base's sampling
    modules = {
        "actor": actor,
        "critics": critics,
        "targets": targets,
        "entropy": entropy,
        "buffer": buffer,
        "counters": counters,
    }
    env_steps = run.resume(modules, optimizer, schedule, rng, noise)
    target_entropy = -float(A)

    def update() -> dict:
        b = buffer.sample(cfg.batch_size, rng)
        alpha = entropy["log_alpha"].exp().detach()
        with torch.no_grad():
            next_y, next_logprob = squashed_sample(actor, b["next_features"], noise)
            next_q = torch.min(*(q(b["next_features"], next_y) for q in targets))
            target = b["reward"] + cfg.gamma * (1 - b["done"]) * (next_q - alpha * next_logprob)
        q_loss = sum((q(b["features"], b["correction"]) - target).pow(2).mean() for q in critics)
        optimizer.zero_grad(set_to_none=True)
        q_loss.backward(inputs=list(critics.parameters()))
        optimizer.step()

        y, logprob = squashed_sample(actor, b["features"], noise)
        q_new = torch.min(*(q(b["features"], y) for q in critics))
        actor_loss = (alpha * logprob - q_new).mean()
        optimizer.zero_grad(set_to_none=True)
        actor_loss.backward(inputs=list(actor.parameters()))
        optimizer.step()

        alpha_loss = -(entropy["log_alpha"] * (logprob.detach() + target_entropy)).mean()
        optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward(inputs=[entropy["log_alpha"]])
        optimizer.step()
        with torch.no_grad():
            for t, s in zip(targets.parameters(), critics.parameters()):
                t.lerp_(s, cfg.tau)
        return {"loss": q_loss.item(), "actor_loss": actor_loss.item(), "alpha": float(alpha)}

    envs = vector_env_for(policy, cfg)
    base = BatchedBase(policy.base, cfg.envs, noise)
    N = cfg.envs
    obs, base_action, bar = start_episodes(run, cfg, policy, counters, envs, base, env_steps)
    features = policy.features(obs, base_action)

    log_every = max(N, 2048 // N * N)  # env steps between log lines
    started, episode_successes, stats = time.monotonic(), [], []
    while env_steps < cfg.steps:
        # ---- act: the residual's share of steps grows 0 -> 1 over explore_steps ---------
        with torch.no_grad():
            y, _ = squashed_sample(actor, features, noise)
        share = min(1.0, env_steps / max(1, cfg.explore_steps))
        y = y * torch.as_tensor(rng.random(N) < share, dtype=torch.float32)[:, None]
        with torch.no_grad():
            action = policy.apply(base_action, y)
        obs, _, _, _, info = envs.step(action)
        obs = on_cpu(obs)  # the networks live on the CPU (a no-op for CPU worlds)
        reward, done, finished = episode_ends(info)
        episode_successes += [float(reward[i]) for i in finished]
        base.reset(finished)
        base_action = torch.as_tensor(base.act(obs))
        next_features = policy.features(obs, base_action)  # of a new episode where done: masked
        buffer.add(
            features=features,
            correction=y,
            reward=reward,
            done=done,
            next_features=next_features,
        )
        features = next_features
        env_steps += N

        # ---- learn ------------------------------------------------------------------------
        if env_steps >= cfg.learning_starts:
            for _ in range(cfg.updates_per_step):
                stats.append(update())

        # ---- log, evaluate, checkpoint ---------------------------------------------------
        if env_steps % log_every != 0 and env_steps < cfg.steps:
            continue
        counters.set("iteration", counters.get("iteration") + 1)
        counters.set("episodes", counters.get("episodes") + len(episode_successes))
        record = {
            "step": env_steps,
            "loss": float(np.mean([s["loss"] for s in stats])) if stats else float("nan"),
            "actor_loss": float(np.mean([s["actor_loss"] for s in stats])) if stats else None,
            "alpha": stats[-1]["alpha"] if stats else cfg.init_alpha,
            "residual_share": share,
            "train_success": float(np.mean(episode_successes)) if episode_successes else None,
            "episodes": int(counters.get("episodes")),
            "env_steps_per_s": log_every / (time.monotonic() - started),
            "seconds": run.elapsed(counters),
        }
        state = (modules, optimizer, schedule, rng, noise)
        run.end_iteration(record, bar, counters, policy, env_steps, log_every, state)
        started, episode_successes, stats = time.monotonic(), [], []
    bar.close()
    envs.close()
    return policy
