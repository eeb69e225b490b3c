"""Consistency Policy (Prasad et al., RSS 2024): a diffusion policy distilled into a network
that maps a noisy action chunk at any noise level straight to its clean end point, so a
chunk takes 1 network evaluation (or a few chained ones) instead of 10-100.

EDM/Karras view of the teacher. A DDPM teacher trained with epsilon prediction on the
schedule alpha_bar(t) is a variance-exploding model in disguise: with
sigma(t) = sqrt((1 - alpha_bar) / alpha_bar), the VE sample x = x0 + sigma * z is the VP
sample scaled by sqrt(1 + sigma^2), and the teacher's denoiser is
    D(x, sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), t(sigma)).
DDIM is Euler on the EDM probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma; the
distillation uses Heun steps on it, between noise levels of a Karras (rho = 7) grid picked
from the teacher's trained timesteps (so the teacher is only ever asked what it was trained
on).

Student. f(x, sigma) = c_skip(sigma) x + (1 - c_skip(sigma)) D_theta(x, sigma) with
c_skip = sigma_data^2 / ((k (sigma - sigma_min))^2 + sigma_data^2): exactly the identity at
sigma_min (the consistency boundary condition), the denoiser above the lowest levels. D_theta has the
teacher's form and starts from the teacher's weights, so distillation starts from a network
that already knows the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

SKIP_SCALE = 10.0  # see ConsistencyConfig.skip_scale


@dataclass
class ConsistencyConfig(DiffusionConfig):
    sigma_data: float = 0.5  # actions are min/max normalized to [-1, 1]
    grid_points: int = 20  # noise levels of the distillation grid (N + 1)
    # Top of the grid. EDM uses 80, but an epsilon teacher's clean estimate x - sigma * eps
    # multiplies its error by sigma: on Lift the undistilled 1-step error is 0.50 at
    # sigma 16, 0.12 at 5 and 0.06 at 2 (normalized MSE), so distillation starts from 2.
    sigma_max: float = 2.0
    rho: float = 7.0  # Karras spacing of the grid
    # c_skip falls off this many times faster than in EDM (LCM's timestep scaling): the
    # student then starts as the teacher's own clean estimate at every level above the
    # lowest, a good 1-step policy before any distillation; EDM's c_skip instead blends in so
    # much of the noisy input at sigma 2 that it ruins the chunk (docs/results.md).
    skip_scale: float = SKIP_SCALE
    sample_steps: int = 1  # network evaluations per chunk: 1, or a few chained ones
    # Warm start (SDEdit, Meng et al. 2022): after the first chunk of an episode, `plan` noises
    # the previous chunk's unexecuted actions (held at their last value to fill the horizon)
    # to this level and maps them to a clean chunk, instead of starting from pure noise. The
    # new observation still steers the chunk (sigma 1 is well above the demonstrations'
    # spread between neighbouring chunks), but it no longer jumps between modes from one
    # chunk to the next (docs/results.md, Lift consistency distillation). 0 turns it off.
    warm_sigma: float = 1.0

    @classmethod
    def from_dict(cls, d: dict) -> ConsistencyConfig:
        # A checkpoint from before skip_scale existed was distilled with EDM's c_skip.
        return super().from_dict({"skip_scale": 1.0, **d})


def karras_indices(sigmas: np.ndarray, points: int, rho: float, sigma_max: float) -> np.ndarray:
    """Indices into the teacher's increasing `sigmas` nearest to a Karras grid from its
    smallest noise level to its largest one not above `sigma_max` (ascending, no repeats).

    The cap matters for an epsilon-prediction teacher: its clean-chunk estimate
    x - sigma * eps multiplies the network's error by sigma, and a cosine schedule's last
    step has sigma ~ 2000."""
    sigmas = sigmas[sigmas <= sigma_max]
    ramp = np.linspace(0.0, 1.0, points)
    lo, hi = sigmas[0] ** (1 / rho), sigmas[-1] ** (1 / rho)
    targets = (lo + ramp * (hi - lo)) ** rho
    return np.unique([int(np.abs(np.log(sigmas) - np.log(s)).argmin()) for s in targets])


class ConsistencyPolicy(DiffusionPolicy):
    kind = "consistency"

    def __init__(self, config: ConsistencyConfig, obs_stats=None, action_stats=None):
        super().__init__(config, obs_stats, action_stats)
        alpha_bar = self.train_scheduler.alphas_cumprod.double()
        sigmas = ((1 - alpha_bar) / alpha_bar).sqrt().float()
        grid = karras_indices(sigmas.numpy(), config.grid_points, config.rho, config.sigma_max)
        self.register_buffer("grid_timesteps", torch.as_tensor(grid, dtype=torch.long), False)
        self.register_buffer("grid_sigmas", sigmas[grid], False)

    @classmethod
    def from_teacher(cls, teacher: DiffusionPolicy, **overrides) -> ConsistencyPolicy:
        fields = {**teacher.config.to_dict(), "skip_scale": SKIP_SCALE, **overrides}
        student = cls(ConsistencyConfig.from_dict(fields))
        student.load_state_dict(teacher.state_dict())  # network, encoders, normalizers
        return student

    def set_sampler(self, kind: str, steps: int) -> None:
        """Consistency sampling has one knob: how many chained evaluations per chunk."""
        super().set_sampler("ddim", steps)
        self.config.sample_steps = max(1, int(steps))

    # ---- the EDM view of a VP epsilon network --------------------------------------------
    @staticmethod
    def denoise(net, x, timestep, sigma, cond) -> torch.Tensor:
        """D(x, sigma): the clean chunk a VP epsilon network predicts from the VE sample x."""
        sigma = sigma.view(-1, 1, 1)
        eps = net(x / (1 + sigma**2).sqrt(), timestep, cond)
        return x - sigma * eps

    def consistency(self, x, grid_index: torch.Tensor, cond, net=None) -> torch.Tensor:
        """f(x, sigma_i): the end point of the ODE trajectory through x at grid level i."""
        sigma = self.grid_sigmas[grid_index]
        sigma_min, sigma_data = self.grid_sigmas[0], self.config.sigma_data
        scaled = (sigma - sigma_min) * self.config.skip_scale
        c_skip = (sigma_data**2 / (scaled**2 + sigma_data**2)).view(-1, 1, 1)
        timestep = self.grid_timesteps[grid_index]
        denoised = self.denoise(net or self.net, x, timestep, sigma, cond)
        return c_skip * x + (1 - c_skip) * denoised

    # ---- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict_chunk(
        self, obs_window: dict, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        cond = self.condition(obs_window)
        shape = (len(cond), self.config.horizon, self.config.action_dim)
        top = len(self.grid_sigmas) - 1
        start = self.grid_sigmas[top] * torch.randn(shape, generator=generator)
        return self.decode_actions(self._chain(start, top, cond, generator), obs_window)

    def _next_chunk(self, window: dict) -> torch.Tensor:
        if self._last_chunk is None or not self.config.warm_sigma:
            return super()._next_chunk(window)
        return self.continue_chunk(window, self._last_chunk)[0]

    @torch.no_grad()
    def continue_chunk(
        self, obs_window: dict, previous: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The chunk [1, H, A] after `previous` [H, A] executed `n_action_steps`, warm-started
        from its unexecuted rest noised to `warm_sigma` (see ConsistencyConfig)."""
        rest = self.unexecuted(previous, obs_window)
        held = torch.cat([rest, rest[-1:].expand(self.config.n_action_steps, -1)])[None]
        level = int((self.grid_sigmas - self.config.warm_sigma).abs().argmin())
        noise = torch.randn(held.shape, generator=generator)
        start = held + self.grid_sigmas[level] * noise
        cond = self.condition(obs_window)
        return self.decode_actions(self._chain(start, level, cond, generator), obs_window)

    def _chain(self, x, start_level: int, cond, generator) -> torch.Tensor:
        """`sample_steps` chained evaluations from `x` at grid `start_level`: jump to the end
        point, re-noise to a lower level, jump again."""
        steps = self.config.sample_steps + 1
        levels = np.linspace(start_level, 0, steps).round().astype(int)[:-1]
        sample = None
        for level in levels:
            if sample is not None:
                sigma = self.grid_sigmas[level]
                noise = torch.randn(sample.shape, generator=generator)
                x = sample + (sigma**2 - self.grid_sigmas[0] ** 2).sqrt() * noise
            index = torch.full((len(x),), int(level), dtype=torch.long)
            sample = self.consistency(x, index, cond).clamp(-1, 1)
        return sample
