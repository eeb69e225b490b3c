"""RLPD-style soft actor-critic (Ball et al. 2023), the off-policy learner of HIL-SERL.

The whole algorithm is in this file:
- critic: an ensemble of LayerNorm MLPs Q_i(s, a); the TD target takes the minimum over a
  random subset of target critics (REDQ), minus the entropy term;
- actor: a tanh-squashed Gaussian, trained on the ensemble mean of Q plus the entropy bonus
  and, optionally, a behaviour-cloning pull toward demonstration/intervention actions;
- temperature: learned toward a target entropy;
- data: every batch is half demonstrations (and interventions), half online (see
  `buffers.sample_mixed`); the update-to-data ratio is the caller's loop;
- images: a small conv encoder per camera trained by the critic loss, with DrQ's random
  shift augmentation; the actor reads its features detached. (With a frozen encoder,
  `robotrl.rl.frozen_encoder`, the agent gets its features as one more vector instead);
- gripper (optional): a discrete open/closed critic trained by double DQN, as HIL-SERL's
  grasp critic, so the actor only outputs the arm's continuous entries.

Actions are stored in env units and normalized to [-1, 1] inside the agent; observations
are standardized with statistics taken from the demonstrations (saved with the weights).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class SACConfig:
    hidden: int = 256
    critics: int = 2  # ensemble size (RLPD uses 10; 2 keeps a 2-core machine busy enough)
    critic_subsample: int = 2  # target = min over this many randomly chosen critics
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    lr: float = 3e-4
    batch_size: int = 256
    init_temperature: float = 0.01
    # Lower than SAC's usual -0.5 per dim: the actor acts stochastically with a human
    # watching, and a dithering arm draws interventions; -1 lets the noise shrink faster.
    target_entropy_per_dim: float = -1.0
    bc_weight: float = 0.0  # weight of the BC term on demo/intervention rows (0: pure RLPD)
    gripper_critic: bool = False  # discrete gripper critic (last action entry open/closed)
    image_features: int = 64
    random_shift: int = 4  # pixels of DrQ random-shift augmentation
    # The frozen encoder whose `image_features` the agent sees instead of camera frames (a
    # camera policy's path and its weights' digest, `robotrl.rl.frozen_encoder`); '' : none.
    encoder: str = ""
    encoder_digest: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> SACConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def mlp(n_in: int, hidden: int, n_out: int, layer_norm: bool = False) -> nn.Sequential:
    def block(i, o):
        return [nn.Linear(i, o), *([nn.LayerNorm(o)] if layer_norm else []), nn.ReLU()]

    return nn.Sequential(*block(n_in, hidden), *block(hidden, hidden), nn.Linear(hidden, n_out))


def random_shift(images: torch.Tensor, pad: int, generator=None) -> torch.Tensor:
    """DrQ: replicate-pad by `pad` pixels and crop back at a random offset per image."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])[:, :, None].expand(n, h, w)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, :].expand(n, h, w)
    batch = torch.arange(n)[:, None, None].expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


class ConvEncoder(nn.Module):
    """uint8 HWC camera frames -> a feature vector (4 conv layers, as in DrQ/SAC-AE)."""

    def __init__(self, shape: tuple[int, int, int], features: int):
        super().__init__()
        c = shape[2]
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 3, stride=2), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Flatten(),
        )  # fmt: skip
        with torch.no_grad():
            n = self.conv(torch.zeros(1, c, shape[0], shape[1])).shape[1]
        self.head = nn.Sequential(nn.Linear(n, features), nn.LayerNorm(features), nn.Tanh())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(images))


class Agent(nn.Module):
    """Encoder, actor, critic ensemble, temperature and (optionally) the gripper critic."""

    def __init__(self, config: SACConfig, obs_shapes: dict, action_low, action_high):
        super().__init__()
        self.config = config
        self.obs_shapes = {k: tuple(int(d) for d in s) for k, s in obs_shapes.items()}
        self.image_keys = sorted(k for k, s in self.obs_shapes.items() if len(s) == 3)
        self.vector_keys = sorted(k for k, s in self.obs_shapes.items() if len(s) == 1)
        low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
        self.register_buffer("action_mid", torch.as_tensor((high + low) / 2))
        self.register_buffer("action_half", torch.as_tensor(np.maximum((high - low) / 2, 1e-6)))
        n_vec = sum(self.obs_shapes[k][0] for k in self.vector_keys)
        self.register_buffer("obs_mean", torch.zeros(n_vec))
        self.register_buffer("obs_std", torch.ones(n_vec))
        self.cameras = nn.ModuleDict(
            {k.replace(".", "_"): ConvEncoder(self.obs_shapes[k], config.image_features)
             for k in self.image_keys}
        )  # fmt: skip
        n_feat = n_vec + config.image_features * len(self.image_keys)
        self.n_arm = len(low) - int(config.gripper_critic)  # continuous entries of the actor
        h = config.hidden
        self.actor = mlp(n_feat, h, 2 * self.n_arm)
        self.critic = nn.ModuleList(
            mlp(n_feat + self.n_arm, h, 1, layer_norm=True) for _ in range(config.critics)
        )
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(config.init_temperature))))
        self.target_entropy = config.target_entropy_per_dim * self.n_arm
        if config.gripper_critic:
            self.grasp = mlp(n_feat, h, 2, layer_norm=True)  # Q(s, open), Q(s, closed)
            self.grasp_target = copy.deepcopy(self.grasp).requires_grad_(False)

    def spec(self) -> dict:
        """What an actor needs to rebuild this network (JSON-able; sent with the weights)."""
        return {
            "config": asdict(self.config),
            "obs_shapes": {k: list(s) for k, s in self.obs_shapes.items()},
            "action_low": (self.action_mid - self.action_half).tolist(),
            "action_high": (self.action_mid + self.action_half).tolist(),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> Agent:
        config = SACConfig.from_dict(spec["config"])
        return cls(config, spec["obs_shapes"], spec["action_low"], spec["action_high"])

    def acting_state(self) -> dict[str, torch.Tensor]:
        """The weights an actor needs: everything but the critics' and targets'."""
        skip = ("critic", "critic_target", "grasp_target", "log_alpha")
        return {k: v for k, v in self.state_dict().items() if k.split(".")[0] not in skip}

    def set_obs_stats(self, rows: dict[str, np.ndarray]) -> None:
        x = np.concatenate([rows[f"obs.{k}"].astype(np.float64) for k in self.vector_keys], -1)
        self.obs_mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(np.maximum(x.std(0), 1e-2), dtype=torch.float32))

    # ---- networks -----------------------------------------------------------------------
    def features(self, batch: dict, prefix: str = "obs", augment: bool = False, generator=None):
        vec = torch.cat(
            [torch.as_tensor(batch[f"{prefix}.{k}"]).float() for k in self.vector_keys], -1
        )
        parts = [(vec - self.obs_mean) / self.obs_std]
        for key in self.image_keys:
            img = torch.as_tensor(batch[f"{prefix}.{key}"]).permute(0, 3, 1, 2).float() / 255.0
            if augment and self.config.random_shift:
                img = random_shift(img, self.config.random_shift, generator)
            parts.append(self.cameras[key.replace(".", "_")](img))
        return torch.cat(parts, -1)

    def policy(self, feat, generator=None, deterministic: bool = False):
        """Arm action in [-1, 1] (normalized) and its log-probability."""
        mean, log_std = self.actor(feat).chunk(2, -1)
        if deterministic:
            return torch.tanh(mean), torch.zeros(len(feat))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        std = log_std.exp()
        u = mean + std * torch.randn(mean.shape, generator=generator)
        a = torch.tanh(u)
        log_prob = (-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        log_prob = log_prob - (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return a, log_prob

    def q_values(self, critics, feat, arm) -> torch.Tensor:
        x = torch.cat([feat, arm], -1)
        return torch.stack([q(x).squeeze(-1) for q in critics])  # [ensemble, batch]

    def normalize_arm(self, action: torch.Tensor) -> torch.Tensor:
        a = (action[..., : self.n_arm] - self.action_mid[: self.n_arm]) / self.action_half[
            : self.n_arm
        ]
        return a.clamp(-1, 1)

    @torch.no_grad()
    def act(self, obs: dict, deterministic: bool = False, generator=None) -> np.ndarray:
        """One action in env units for one env observation (keys without a prefix)."""
        batch = {f"obs.{k}": np.asarray(obs[k])[None] for k in self.obs_shapes}
        feat = self.features(batch)
        arm, _ = self.policy(feat, generator, deterministic)
        action = self.action_mid[: self.n_arm] + arm[0] * self.action_half[: self.n_arm]
        if self.config.gripper_critic:
            closed = self.grasp(feat)[0].argmax()
            action = torch.cat([action, closed.float().view(1)])
        return action.numpy().astype(np.float32)


def make_optimizer(agent: Agent) -> torch.optim.Optimizer:
    """One Adam over everything (so `policies.runs.save_state` checkpoints it): each loss
    only reaches its own parameters, see `update`."""
    return torch.optim.Adam(agent.parameters(), lr=agent.config.lr)


def update(agent: Agent, optimizer, batch: dict, generator=None) -> dict[str, float]:
    """One gradient step of critic, actor and temperature on `batch` (numpy rows)."""
    cfg = agent.config
    reward = torch.as_tensor(batch["reward"]).float().view(-1)
    not_done = 1.0 - torch.as_tensor(batch["terminated"]).float().view(-1)
    action = torch.as_tensor(batch["action"]).float()
    alpha = agent.log_alpha.exp().detach()

    feat = agent.features(batch, "obs", augment=True, generator=generator)
    with torch.no_grad():
        next_feat = agent.features(batch, "next_obs", augment=True, generator=generator)
        next_arm, next_logp = agent.policy(next_feat, generator)
        q_next = agent.q_values(agent.critic_target, next_feat, next_arm)
        pick = torch.randperm(cfg.critics, generator=generator)[: cfg.critic_subsample]
        q_next = q_next[pick].min(0).values - alpha * next_logp
        target = reward + cfg.gamma * not_done * q_next
    q = agent.q_values(agent.critic, feat, agent.normalize_arm(action))
    critic_loss = ((q - target) ** 2).mean(1).sum()
    optimizer.zero_grad(set_to_none=True)
    loss = critic_loss

    if cfg.gripper_critic:  # double DQN on the discrete open/closed choice
        closed = (action[:, -1] > 0.5).long()
        with torch.no_grad():
            best = agent.grasp(next_feat).argmax(-1, keepdim=True)
            g_next = agent.grasp_target(next_feat).gather(1, best).squeeze(1)
            g_target = reward + cfg.gamma * not_done * g_next
        g_q = agent.grasp(feat).gather(1, closed[:, None]).squeeze(1)
        loss = loss + F.mse_loss(g_q, g_target)
    loss.backward()

    # Actor: the critics are frozen so its loss only moves the actor (features detached).
    actor_feat = feat.detach()
    arm, logp = agent.policy(actor_feat, generator)
    agent.critic.requires_grad_(False)
    q_pi = agent.q_values(agent.critic, actor_feat, arm).mean(0)
    agent.critic.requires_grad_(True)
    actor_loss = (alpha * logp - q_pi).mean()
    bc = torch.zeros(())
    if cfg.bc_weight and "is_demo" in batch:
        demo = torch.as_tensor(batch["is_demo"]) | torch.as_tensor(batch["intervention"]).view(-1)
        if demo.any():
            mean = torch.tanh(agent.actor(actor_feat).chunk(2, -1)[0])
            err = ((mean - agent.normalize_arm(action)) ** 2).sum(-1)
            bc = err[demo].mean()
            actor_loss = actor_loss + cfg.bc_weight * bc
    alpha_loss = -(agent.log_alpha * (logp.detach() + agent.target_entropy)).mean()
    (actor_loss + alpha_loss).backward()
    optimizer.step()

    with torch.no_grad():  # Polyak-average the targets
        for target_net, net in [(agent.critic_target, agent.critic)] + (
            [(agent.grasp_target, agent.grasp)] if cfg.gripper_critic else []
        ):
            for t, p in zip(target_net.parameters(), net.parameters()):
                t.lerp_(p, cfg.tau)
    return {
        "critic_loss": critic_loss.item(),
        "actor_loss": actor_loss.item(),
        "q": q.mean().item(),
        "alpha": alpha.item(),
        "entropy": -logp.mean().item(),
        "bc": bc.item(),
    }
