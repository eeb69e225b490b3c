"""Value-guided sampling (IDQL, Hansen-Estruch et al. 2023; V-GPS, Nakamoto et al. 2024): a
frozen diffusion policy samples `candidates` chunks for an observation in one batched pass,
and the chunk whose executed part a `finetune value` critic ranks highest is executed.

`eval --value RUN --candidates N` and `deploy --value RUN --candidates N` build it; it is a
policy kind of its own (`value_guided`: the base's path, the critic's config and N in
config.json, the critic's weights in model.safetensors), so worker processes load it like any
checkpoint. With N = 1 it is the base, draw for draw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from robotrl.errors import RobotrlError
from robotrl.rl.residual import ReadsBaseConfig
from robotrl.rl.value import ChunkCritic, CriticConfig, checkpoint_dir, load_critic


@dataclass
class ValueGuidedConfig(ReadsBaseConfig):
    base: str = ""  # the diffusion policy's checkpoint (absolute path)
    critic: dict = field(default_factory=dict)  # CriticConfig fields
    candidates: int = 8
    base_sampler: str | None = None  # the base's sampler when set here (kept for workers)
    base_steps: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ValueGuidedConfig:
        return cls(**d)


class ValueGuidedPolicy(nn.Module):
    kind = "value_guided"

    def __init__(self, config: ValueGuidedConfig, base=None, critic: ChunkCritic | None = None):
        super().__init__()
        from robotrl.policies.checkpoint import load_policy

        if config.candidates < 1:
            raise RobotrlError(f"--candidates must be at least 1, got {config.candidates}")
        base = base if base is not None else load_policy(config.base)
        if config.base_sampler:
            base.set_sampler(config.base_sampler, config.base_steps or base.sampler_steps)
        if base.kind != "diffusion":
            raise RobotrlError(f"value-guided sampling takes a diffusion policy, not {base.kind}")
        object.__setattr__(config, "_base_config", base.config)
        self.config = config
        self.__dict__["base"] = base.eval()
        self.critic = critic if critic is not None else ChunkCritic(CriticConfig(**config.critic))

    @classmethod
    def build(cls, base_path: str, value_run: str, candidates: int, base=None):
        """The base at `base_path` (or `base`, loaded from there, its sampler as set) steered
        by the critic of the `finetune value` run."""
        from robotrl.policies.checkpoint import load_policy

        critic, meta = load_critic(value_run)
        base = base if base is not None else load_policy(base_path)
        trained_on = meta.get("base")
        if trained_on and checkpoint_dir(trained_on) != checkpoint_dir(base_path):
            raise RobotrlError(
                f"{value_run} was trained for the policy {trained_on}, not {base_path}"
            )
        config = ValueGuidedConfig(
            str(checkpoint_dir(base_path)), critic.config.to_dict(), candidates
        )
        config.base_sampler, config.base_steps = base.config.sampler, base.sampler_steps
        return cls(config, base, critic)

    # ---- the base's side, for eval / deploy ----------------------------------------------
    @property
    def sampler_steps(self) -> int:
        return self.base.sampler_steps

    def set_sampler(self, kind: str, steps: int) -> None:
        self.base.set_sampler(kind, steps)
        self.config.base_sampler, self.config.base_steps = kind, steps

    def reset(self) -> None:
        self.base.reset()

    def select_action(self, obs: dict):
        return self.base.select_action(obs, plan=self.plan)

    # ---- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def predict_chunk(self, obs_window: dict, generator=None) -> torch.Tensor:
        """For each window [B, ...]: the best of `candidates` chunks [B, H, A]."""
        n = self.config.candidates
        if n == 1:
            return self.base.predict_chunk(obs_window, generator=generator)
        b = len(next(iter(obs_window.values())))
        windows = {k: v.repeat_interleave(n, 0) for k, v in obs_window.items()}
        chunks = self.base.predict_chunk(windows, generator=generator)  # [B * n, H, A]
        return chunks.reshape(b, n, *chunks.shape[1:])[torch.arange(b), self.best(windows, chunks)]

    def best(self, windows: dict, chunks: torch.Tensor) -> torch.Tensor:
        """Index [B] of the candidate the critic ranks highest, per window."""
        n, executed = self.config.candidates, self.base.config.n_action_steps
        state = self.base.condition(windows)
        action = self.base.encode_actions(chunks[:, :executed], windows).flatten(1)
        return self.critic.q_values(state, action).reshape(-1, n).argmax(1)

    def plan(self, window: dict) -> torch.Tensor:
        return self.predict_chunk(window)[0]
