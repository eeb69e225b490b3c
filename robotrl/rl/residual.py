"""Residual policy around a frozen chunked policy (ResiP, Ankile et al. 2024; Policy Decorator,
Yuan et al. 2024).

The base (diffusion or consistency) plans action chunks as usual. At every control step a small
Gaussian policy sees the current observation and the base action about to execute (both in the
base's normalized space) and adds a correction there:

    action = unnormalize(normalize(base_action) + scale * bound(residual))

`bound` is a clamp to [-1, 1] (PPO: a Gaussian sample, clipped like an action at its limits) or
tanh (SAC), so a correction never exceeds `scale` (ResiP: 0.1) in normalized units. The last
layer starts at zero: before training the residual policy acts exactly like its base.

A `ResidualPolicy` is again a `Policy`: `reset`, `predict_chunk` (the base's chunk: what an
asynchronous inference worker computes) and `select_action`; the per-step correction is
`correct_action(obs, base_action)`, which the control loop applies to the action each tick
executes. Its checkpoint holds only the residual network; `config.base` names the base
checkpoint, loaded with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robotrl.errors import RobotrlError

OBS_CLAMP = 5.0  # normalized observations outside the demos' range are clipped here


class ReadsBaseConfig:
    """A wrapper policy's config: whatever it does not hold itself (observation keys, chunk
    horizon, fps, meta, ...) is its base's (`_base_config`), which `eval` and `deploy` read."""

    def __getattr__(self, name: str):
        base = self.__dict__.get("_base_config")
        if base is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(base, name)


@dataclass
class ResidualConfig(ReadsBaseConfig):
    base: str = ""  # base checkpoint directory (absolute path)
    base_sampler: str | None = None  # sampler the base ran with while the residual learned
    base_steps: int | None = None
    scale: float = 0.1  # largest correction, in normalized action units
    hidden: int = 256
    squash: bool = False  # tanh-bounded (SAC) instead of clamped (PPO)
    init_log_std: float = -1.0  # PPO's state-independent exploration noise at the start
    image_features: bool = False  # also sees the camera base's image features (detached)
    meta: dict = field(default_factory=dict)  # task, robot, algorithm, env steps trained

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ResidualConfig:
        return cls(**d)


class ResidualActor(nn.Module):
    """MLP from features to the mean of the correction; the log-std is a free parameter (PPO)
    or a second head (SAC)."""

    LOG_STD_RANGE = (-5.0, 1.0)

    def __init__(self, in_dim: int, action_dim: int, hidden: int, squash: bool, init_log_std):
        super().__init__()
        self.squash = squash
        self.trunk = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.mean = nn.Linear(hidden, action_dim)
        nn.init.zeros_(self.mean.weight)  # zero correction: training starts from the base
        nn.init.zeros_(self.mean.bias)
        if squash:
            self.log_std_head = nn.Linear(hidden, action_dim)
            nn.init.zeros_(self.log_std_head.weight)
            nn.init.constant_(self.log_std_head.bias, init_log_std)
        else:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(features)
        log_std = self.log_std_head(h) if self.squash else self.log_std.expand(len(h), -1)
        return self.mean(h), log_std.clamp(*self.LOG_STD_RANGE)

    def bound(self, u: torch.Tensor) -> torch.Tensor:
        """A raw sample (or mean) to a correction in [-1, 1] (before `scale`)."""
        return torch.tanh(u) if self.squash else u.clamp(-1.0, 1.0)


class ResidualPolicy(nn.Module):
    kind = "residual"

    def __init__(self, config: ResidualConfig, base=None):
        super().__init__()
        if base is None:
            from robotrl.policies.checkpoint import load_policy

            base = load_policy(config.base)
        if base.kind == "residual":
            raise RobotrlError(f"{config.base} is a residual policy: use its base as --base")
        if config.base_sampler or config.base_steps:
            base.set_sampler(config.base_sampler or "ddim", config.base_steps or base.sampler_steps)
        config.base_sampler, config.base_steps = _sampler_name(base), base.sampler_steps
        object.__setattr__(config, "_base_config", base.config)
        self.config = config
        # Held outside the module tree: frozen, and not part of this checkpoint's weights.
        self.__dict__["base"] = base.eval().requires_grad_(False)
        # The residual sees the base's non-image observations (a camera base: the robot's own
        # state), the base action and, with `image_features`, what the base's frozen encoder
        # makes of the current camera frames (the object's whereabouts, without its pose).
        self.obs_keys = tuple(base.config.obs_keys)
        self.image_keys = ()
        self.feature_dim = sum(base.config.obs_dims) + base.config.action_dim
        if config.image_features:
            if base.image_encoder is None:
                raise RobotrlError("--image-features needs a base that sees cameras")
            self.image_keys = tuple(base.config.image_keys)
            self.feature_dim += base.image_encoder.out_dim
        self.actor = ResidualActor(
            self.feature_dim,
            base.config.action_dim,
            config.hidden,
            config.squash,
            config.init_log_std,
        )

    # ---- the base's side ----------------------------------------------------------------
    @property
    def sampler_steps(self) -> int:
        return self.base.sampler_steps

    def set_sampler(self, kind: str, steps: int) -> None:
        self.base.set_sampler(kind, steps)
        self.config.base_sampler, self.config.base_steps = _sampler_name(self.base), steps

    def predict_chunk(self, obs_window: dict, generator=None) -> torch.Tensor:
        """The base's chunk: corrections are made per step, with the observation of the step."""
        return self.base.predict_chunk(obs_window, generator=generator)

    def reset(self) -> None:
        self.base.reset()

    # ---- the correction -----------------------------------------------------------------
    def features(self, obs: dict, base_action: torch.Tensor) -> torch.Tensor:
        """[B, F]: normalized observation (env keys without `observation.`, [B, D] each) and
        normalized base action [B, A]."""
        parts = [
            norm.normalize(torch.as_tensor(obs[k.removeprefix("observation.")]).float())
            for k, norm in zip(self.obs_keys, self.base.obs_norm)
        ]
        parts.append(self.base.action_norm.normalize(base_action.float()))
        if self.image_keys:
            frames = {k: torch.as_tensor(obs[k.removeprefix("observation.")])[:, None]
                      for k in self.image_keys}  # fmt: skip
            with torch.no_grad():
                parts.append(self.base.image_encoder(frames)[:, 0])
        return torch.cat(parts, dim=-1).clamp(-OBS_CLAMP, OBS_CLAMP)

    def apply(self, base_action: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
        """Base actions [B, A] plus bounded corrections in [-1, 1] [B, A], unnormalized."""
        norm = self.base.action_norm
        return norm.unnormalize(
            norm.normalize(base_action.float()) + self.config.scale * correction
        )

    @torch.no_grad()
    def correct_batch(self, obs: dict, base_action: torch.Tensor) -> torch.Tensor:
        """Deterministic corrected actions (the mean correction) for a batch."""
        mean, _ = self.actor(self.features(obs, base_action))
        return self.apply(base_action, self.actor.bound(mean))

    def correct_action(self, obs: dict, base_action) -> np.ndarray:
        """The action to execute for one env observation, given the base's action for it."""
        names = [k.removeprefix("observation.") for k in self.obs_keys]
        batch = {name: np.asarray(obs[name], np.float32)[None] for name in names}
        for key in self.image_keys:
            name = key.removeprefix("observation.")
            batch[name] = np.asarray(obs[name])[None]
        action = torch.as_tensor(np.asarray(base_action, np.float32))[None]
        return self.correct_batch(batch, action)[0].numpy().astype(np.float64)

    def select_action(self, obs: dict) -> np.ndarray:
        return self.correct_action(obs, self.base.select_action(obs))


def _sampler_name(base) -> str | None:
    from robotrl.policies.diffusion import SCHEDULERS

    name = type(base.sampler).__name__.lower()
    return next((s for s in SCHEDULERS if name.startswith(s)), None)


def new_residual(base_path: str | Path, **fields) -> ResidualPolicy:
    """A zero-initialised residual around the checkpoint at `base_path`."""
    from robotrl.policies.checkpoint import load_policy

    base_path = Path(base_path).resolve()
    base = load_policy(base_path)
    if (base_path / "policy" / "config.json").is_file():
        base_path = base_path / "policy"
    # deploy and eval make the env in the action mode the base was trained in
    mode = (base.config.meta or {}).get("action_mode")
    fields["meta"] = {"action_mode": mode, **fields.get("meta", {})}
    return ResidualPolicy(ResidualConfig(base=str(base_path), **fields), base=base)
