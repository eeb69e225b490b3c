"""Min/max normalization to [-1, 1], kept as buffers inside the policy (saved with it)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MIN_RANGE = 1e-4  # a feature that never moved in the data maps to 0, not to inf


class MinMaxNormalizer(nn.Module):
    def __init__(self, low, high):
        super().__init__()
        low = torch.as_tensor(np.asarray(low, np.float32))
        high = torch.as_tensor(np.asarray(high, np.float32))
        self.register_buffer("low", low)
        self.register_buffer("span", torch.clamp(high - low, min=MIN_RANGE))

    @classmethod
    def empty(cls, dim: int) -> MinMaxNormalizer:
        """Placeholder shapes for loading a checkpoint (the buffers come from the file)."""
        return cls(np.zeros(dim), np.ones(dim))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.low) / self.span * 2 - 1

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 * self.span + self.low
