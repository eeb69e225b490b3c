"""The 1-D temporal U-Net of Diffusion Policy (Chi et al., 2023): it denoises an action
sequence [B, H, A], conditioned on the diffusion step and the observation features through
FiLM (per-channel scale and bias) in every residual block."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalStepEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / (half - 1))
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int):
        super().__init__(
            nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2),
            nn.GroupNorm(groups, c_out),
            nn.Mish(),
        )


class ConditionalResidualBlock1D(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int = 5, groups: int = 8):
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel, groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.block1(x)
        scale, bias = self.film(cond)[:, :, None].chunk(2, dim=1)
        out = self.block2(scale * out + bias)
        return out + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        channels: tuple[int, ...] = (64, 128, 256),
        step_embed_dim: int = 64,
        kernel: int = 5,
        groups: int = 8,
    ):
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalStepEmbedding(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        cond = step_embed_dim + cond_dim
        dims = (action_dim, *channels)
        pairs = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        ConditionalResidualBlock1D(c_in, c_out, cond, kernel, groups),
                        ConditionalResidualBlock1D(c_out, c_out, cond, kernel, groups),
                        nn.Conv1d(c_out, c_out, 3, stride=2, padding=1)
                        if not last
                        else nn.Identity(),
                    ]
                )
            )
        mid = channels[-1]
        self.mid = nn.ModuleList(
            [ConditionalResidualBlock1D(mid, mid, cond, kernel, groups) for _ in range(2)]
        )
        self.up = nn.ModuleList()
        # Every level but the deepest was downsampled once, so each way up upsamples once;
        # the shallowest skip (at full resolution) is not concatenated, as in the reference.
        for c_in, c_out in reversed(pairs[1:]):
            self.up.append(
                nn.ModuleList(
                    [
                        ConditionalResidualBlock1D(2 * c_out, c_in, cond, kernel, groups),
                        ConditionalResidualBlock1D(c_in, c_in, cond, kernel, groups),
                        nn.ConvTranspose1d(c_in, c_in, 4, stride=2, padding=1),
                    ]
                )
            )
        self.final = nn.Sequential(
            Conv1dBlock(channels[0], channels[0], kernel, groups),
            nn.Conv1d(channels[0], action_dim, 1),
        )

    def forward(self, sample: torch.Tensor, step: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """sample [B, H, A], step [B] (diffusion step or noise level), cond [B, cond_dim]."""
        x = sample.transpose(1, 2)
        c = torch.cat([self.step_encoder(step), cond], dim=-1)
        skips = []
        for res1, res2, downsample in self.down:
            x = res2(res1(x, c), c)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, c)
        for res1, res2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(res2(res1(x, c), c))
        return self.final(x).transpose(1, 2)
