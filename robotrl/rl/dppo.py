"""DPPO (Ren et al. 2024): PPO on the diffusion policy's own denoising chain, CleanRL-style.

The policy is the base's network sampled with DDIM in `denoise_steps` steps. For fine-tuning,
each DDIM step becomes a Gaussian policy of the inner, denoising MDP:
    x_{k-1} ~ N(mu_theta(x_k, t_k, obs), std^2),
mu the deterministic DDIM update (eta = 0, x0 clipped to [-1, 1], exactly what `eval` and
`deploy` run) and `std` a fixed exploration noise (its standard normal clipped at +-3, as
DPPO's clipped denoising noise). Each step's log-likelihood is its Gaussian log-density per chunk
entry (DPPO's mean over the entries). Every denoising step is trained: DPPO's option of
training only the last K with the base frozen for the earlier ones would need both networks
at deployment, and the saved checkpoint is one plain diffusion policy: the mean chain.

Environment MDP: one decision per chunk (the base's `n_action_steps` actions executed, every
command through the safety layer), reward 1 on the step an episode ends in success, discount
gamma per env step. Envs desynchronize after their first episode ends, so decisions are kept
per env: a decision is complete when its chunk is executed or its episode ends, and GAE runs
over each env's completed decisions with the next (open) decision's value as bootstrap.
The update: `epochs` passes over shuffled minibatches of decisions, the clipped surrogate on
the ratio of every fine-tuned denoising step (each with the decision's advantage), a critic
on the base's normalized observation history (for a sim state base it includes the object
state: the critic only trains), and an early stop past `target_kl`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robotrl.rl.finetune import Counters, Run, explained_variance, start_episodes
from robotrl.rl.ppo import RunningMeanStd, mlp
from robotrl.rl.vector import BatchedBase, ended, make_vector_env, successes

NOISE_CLIP = 3.0  # standard normal draws of the exploration noise are clipped here


@dataclass
class DPPOConfig:
    base: str = field(default="", metadata={"help": "diffusion policy: checkpoint or run"})
    task: str = field(default="", metadata={"help": "task (default: the base's)"})
    robot: str | None = field(default=None, metadata={"help": "arm (default: the base's)"})
    out: str = field(default="runs/dppo", metadata={"help": "run directory (resumes)"})
    envs: int = field(default=32, metadata={"help": "parallel sim envs"})
    steps: int = field(default=500_000, metadata={"help": "env steps in total"})
    eval_every: int = field(default=40_960, metadata={"help": "env steps between evals; 0 off"})
    eval_episodes: int = field(default=50, metadata={"help": "episodes per evaluation"})
    save_every: int = field(default=20_480, metadata={"help": "env steps between checkpoints"})
    seed: int = field(default=0, metadata={"help": "seed of everything"})
    threads: int = field(default=1, metadata={"help": "torch threads"})
    denoise_steps: int = field(default=4, metadata={"help": "DDIM steps per chunk"})
    std: float = field(
        default=0.1,
        metadata={
            "help": "exploration noise per denoising step, in the normalized action range "
            "[-1, 1]; the rollouts' success falls with it, fastest on fine-motion tasks"
        },
    )
    rollout: int = field(default=128, metadata={"help": "env steps per env per update"})
    epochs: int = field(default=10, metadata={"help": "passes over each rollout"})
    minibatch: int = field(default=128, metadata={"help": "decisions per gradient step"})
    lr: float = field(default=1e-5, metadata={"help": "learning rate of the denoiser"})
    critic_lr: float = field(default=1e-3, metadata={"help": "critic learning rate"})
    hidden: int = field(default=256, metadata={"help": "critic width"})
    gamma: float = field(default=0.99, metadata={"help": "discount per env step"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda (per decision)"})
    clip: float = field(default=0.01, metadata={"help": "ratio clip per denoising step"})
    target_kl: float = field(default=1.0, metadata={"help": "stop epochs above this KL"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    @property
    def algo(self) -> str:
        return "dppo"


SAME_RUN = ("base", "task", "envs", "denoise_steps", "hidden")


class Chain(nn.Module):
    """The DDIM chain of a diffusion policy as a stochastic policy with log-likelihoods."""

    def __init__(self, policy, denoise_steps: int, std: float):
        super().__init__()
        policy.set_sampler("ddim", denoise_steps)  # the deployed sampler: the mean chain
        self.policy, self.std = policy, std
        self.sampler = policy.sampler
        self.sampler.set_timesteps(denoise_steps)
        self.timesteps = [int(t) for t in self.sampler.timesteps]

    def mean(self, k: int, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The deterministic DDIM update of denoising step k (0 = the first, from noise)."""
        t = self.timesteps[k]
        eps = self.policy.net(x, torch.full((len(x),), t), cond)
        return self.sampler.step(eps, t, x, eta=0.0).prev_sample

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator):
        """Chains [B, K+1, H, A] (x_K = noise ... x_0) and the log-likelihood [B, K] of each
        step."""
        config = self.policy.config
        x = torch.randn((len(cond), config.horizon, config.action_dim), generator=generator)
        chain, logps = [x], []
        for k in range(len(self.timesteps)):
            mean = self.mean(k, x, cond)
            z = torch.randn(mean.shape, generator=generator).clamp(-NOISE_CLIP, NOISE_CLIP)
            x = mean + self.std * z
            chain.append(x)
            logps.append(self.log_prob(mean, x))
        return torch.stack(chain, 1), torch.stack(logps, 1)

    def log_probs(self, chain: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Log-likelihoods [B, K] of the steps of stored `chain`s, under the current network
        (differentiable)."""
        return torch.stack(
            [
                self.log_prob(self.mean(k, chain[:, k], cond), chain[:, k + 1])
                for k in range(len(self.timesteps))
            ],
            1,
        )

    def log_prob(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The Gaussian log-density of step `mean -> x`, averaged over the chunk's H x A
        entries as DPPO does: summed, a small move of the mean multiplies the ratio by
        e^(dims * ...) and the clip zeroes nearly every gradient."""
        var = self.std**2
        return (-((x - mean) ** 2) / (2 * var) - 0.5 * np.log(2 * np.pi * var)).mean((1, 2))

    def actions(self, chain: torch.Tensor, window: dict) -> torch.Tensor:
        """Env actions [B, H, A] of chains: their last element, clipped and unnormalized."""
        return self.policy.decode_actions(chain[:, -1].clamp(-1, 1), window)


class ChainBase(BatchedBase):
    """`BatchedBase` planning with the stochastic chain: it keeps what each plan drew (the
    windows, chains, log-likelihoods and the critic's values) for the decisions."""

    def __init__(self, chain: Chain, critic, value_norm, n: int, generator: torch.Generator):
        super().__init__(chain.policy, n, generator)
        self.chain, self.critic, self.value_norm = chain, critic, value_norm
        self.planned: list[dict] = []

    @torch.no_grad()
    def plan(self, window: dict, envs: list[int]) -> torch.Tensor:
        cond = self.policy.condition(window)
        chains, logps = self.chain.sample(cond, self.generator)
        values = self.critic(cond).squeeze(-1) * self.value_norm.std + self.value_norm.mean
        self.planned = [
            {"env": i, "window": {k: v[j] for k, v in window.items()}, "chain": chains[j],
             "logp": logps[j], "value": float(values[j]), "reward": 0.0, "steps": 0}
            for j, i in enumerate(envs)
        ]  # fmt: skip
        return self.chain.actions(chains, window)


def decision_advantages(decisions: list[dict], bootstrap: float, cfg) -> None:
    """GAE over one env's completed decisions (in order), written into each as `advantage`
    and `return`; `bootstrap`: the value of the decision that follows the last one."""
    following, last = bootstrap, 0.0
    for d in reversed(decisions):
        alive = 0.0 if d["done"] else 1.0
        discount = cfg.gamma ** d["steps"]
        delta = d["reward"] + discount * following * alive - d["value"]
        last = delta + discount * cfg.gae_lambda * alive * last
        d["advantage"], d["return"] = last, last + d["value"]
        following = d["value"]


def update(chain: Chain, critic, optimizer, batch: dict, cfg, rng) -> dict:
    """`cfg.epochs` passes of the clipped surrogate on every trained denoising step's ratio
    and the critic's loss, over shuffled minibatches of decisions."""
    policy, size = chain.policy, len(batch["advantages"])
    advantages = batch["advantages"]  # normalized over the whole rollout: any minibatch size
    batch = {**batch, "advantages": (advantages - advantages.mean()) / (advantages.std() + 1e-8)}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    stats = {"pg_loss": [], "v_loss": [], "kl": [], "clipfrac": []}
    for _ in range(cfg.epochs):
        order = torch.as_tensor(rng.permutation(size))
        epoch_kl = []
        for start in range(0, size, cfg.minibatch):
            mb = order[start : start + cfg.minibatch]
            cond = policy.condition({k: v[mb] for k, v in batch["windows"].items()})
            log_ratio = chain.log_probs(batch["chains"][mb], cond) - batch["logps"][mb]
            ratio = log_ratio.exp()
            adv = batch["advantages"][mb][:, None]
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
            value = critic(cond.detach()).squeeze(-1)
            v_loss = 0.5 * (value - batch["targets"][mb]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            (pg_loss + v_loss).backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            with torch.no_grad():
                epoch_kl.append(((ratio - 1) - log_ratio).mean().item())
                stats["clipfrac"].append(((ratio - 1).abs() > cfg.clip).float().mean().item())
            stats["pg_loss"].append(pg_loss.item())
            stats["v_loss"].append(v_loss.item())
        stats["kl"] += epoch_kl
        if np.mean(epoch_kl) > cfg.target_kl:
            break
    return {k: float(np.mean(v)) for k, v in stats.items()}


def train(run: Run):
    cfg = run.cfg
    policy = run.base.eval()  # eval mode: the encoders' center crops, as deployed
    policy.config.meta.update({"finetune": str(run.dir.resolve()), "algo": "dppo"})
    chain = Chain(policy, cfg.denoise_steps, cfg.std)
    critic = mlp(policy.cond_dim, cfg.hidden, 1)
    value_norm = RunningMeanStd()
    counters = Counters()
    trained = list(policy.net.parameters())
    if policy.obs_encoder is not None:
        trained += list(policy.obs_encoder.parameters())
    optimizer = torch.optim.Adam(
        [{"params": trained, "lr": cfg.lr}, {"params": critic.parameters(), "lr": cfg.critic_lr}],
        eps=1e-5,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)  # constant
    rng = np.random.default_rng(cfg.seed)  # minibatch order
    noise = torch.Generator().manual_seed(cfg.seed)  # the chains' noise
    modules = {"policy": policy, "critic": critic, "value_norm": value_norm, "counters": counters}
    env_steps = run.resume(modules, optimizer, schedule, rng, noise)

    meta = policy.config.meta
    envs = make_vector_env(
        cfg.task, cfg.envs, cfg.robot, meta.get("action_mode"), bool(policy.config.image_keys)
    )
    base = ChainBase(chain, critic, value_norm, cfg.envs, noise)
    obs, actions, bar = start_episodes(run, cfg, policy, counters, envs, base, env_steps)
    open_decisions: dict[int, dict] = {d["env"]: d for d in base.planned}

    while env_steps < cfg.steps:
        started, completed, episode_successes = time.monotonic(), [[] for _ in range(cfg.envs)], []
        for _ in range(cfg.rollout):
            obs, _, terminated, truncated, info = envs.step(np.asarray(actions))
            done = np.logical_or(terminated, truncated)
            reward = successes(info, done)
            for i, d in open_decisions.items():
                d["reward"] += cfg.gamma ** d["steps"] * float(reward[i])
                d["steps"] += 1
            finished = ended(terminated, truncated)
            episode_successes += [float(reward[i]) for i in finished]
            for i in finished:
                completed[i].append({**open_decisions.pop(i), "done": True})
            base.reset(finished)
            base.planned = []
            actions = base.act(obs)  # plans where a chunk ran out or an episode ended
            for d in base.planned:
                if d["env"] in open_decisions:  # its chunk is executed: the decision is complete
                    completed[d["env"]].append({**open_decisions[d["env"]], "done": False})
                open_decisions[d["env"]] = d
        env_steps += cfg.rollout * cfg.envs
        rollout_s = time.monotonic() - started

        decisions = []
        for i, own in enumerate(completed):
            decision_advantages(own, open_decisions[i]["value"], cfg)
            decisions += own
        returns = torch.tensor([d["return"] for d in decisions])
        value_norm.update(returns)
        batch = {
            "windows": {k: torch.stack([d["window"][k] for d in decisions]) for k in base.keys},
            "chains": torch.stack([d["chain"] for d in decisions]),
            "logps": torch.stack([d["logp"] for d in decisions]),
            "advantages": torch.tensor([d["advantage"] for d in decisions], dtype=torch.float32),
            "targets": ((returns - value_norm.mean) / value_norm.std).float(),
        }
        stats = update(chain, critic, optimizer, batch, cfg, rng)

        counters.set("iteration", counters.get("iteration") + 1)
        counters.set("episodes", counters.get("episodes") + len(episode_successes))
        values = np.array([d["value"] for d in decisions])
        record = {
            "step": env_steps,
            "loss": stats["v_loss"],
            **{k: stats[k] for k in ("pg_loss", "kl", "clipfrac")},
            "explained_variance": explained_variance(values, returns.numpy()),
            "decisions": len(decisions),
            "train_success": float(np.mean(episode_successes)) if episode_successes else None,
            "episodes": int(counters.get("episodes")),
            "env_steps_per_s": cfg.rollout * cfg.envs / rollout_s,
            "seconds": run.elapsed(counters),
        }
        state = (modules, optimizer, schedule, rng, noise)
        run.end_iteration(record, bar, counters, policy, env_steps, cfg.rollout * cfg.envs, state)
    bar.close()
    envs.close()
    return policy
