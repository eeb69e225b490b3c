"""An auxiliary training loss for camera policies: read the object's state out of the image
features.

A camera policy must find the object in its images before it can act on it; a diffusion
loss on actions teaches that only indirectly. Where the dataset holds the privileged
`observation.environment_state` (every sim dataset does), a linear head on the image
encoder's features predicts it (min/max-normalized, every frame of the observation history),
and its mean squared error joins the diffusion loss. The head lives in the training run
only: the policy's checkpoint and its config never hold it or the environment state, so the
deployed policy sees exactly what a real arm has.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from robotrl.policies.normalize import MinMaxNormalizer

KEY = "observation.environment_state"


class ObjectStateProbe(nn.Module):
    """Linear map from image features [B, T, F] to the normalized environment state [B, T, E]."""

    def __init__(self, feature_dim: int, state_min, state_max):
        super().__init__()
        self.norm = MinMaxNormalizer(state_min, state_max)
        self.head = nn.Linear(feature_dim, len(self.norm.low))

    def loss(self, image_features: torch.Tensor, batch: dict) -> torch.Tensor:
        target = self.norm.normalize(batch[KEY].float())
        return F.mse_loss(self.head(image_features), target)


def with_object_probe(policy, probe: ObjectStateProbe, weight: float):
    """The loss `policy.loss + weight * probe.loss`, the image features computed once."""

    def loss(batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        features = policy.image_encoder(batch)
        action_loss = policy.loss(batch, generator, image_features=features)
        return action_loss + weight * probe.loss(features, batch)

    return loss
