"""Position actions in the planar frame of an object (`--action-frame block`).

A pushing policy's actions depend on where the tool is relative to the object far more than
on where either is in the world: "come down 3 cm off the long edge" is one motion in the
object's frame and a different world position for every object pose. With a frame, a policy
sees the tool's position and the world origin in the object's frame (as of the newest
observation) besides its raw observations, and predicts the x/y entries of its absolute position actions in that
frame; `from_frame` turns a chunk back into world actions for the env. The object's pose
comes from `observation.environment_state` entries `<name>.x, <name>.y, <name>.cos_yaw,
<name>.sin_yaw`; the frame is fixed at planning time for the whole chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robotrl.errors import RobotrlError
from robotrl.policies.normalize import MinMaxNormalizer

POSE_ENTRIES = ("x", "y", "cos_yaw", "sin_yaw")
TOOL_ENTRIES = ("ee.x", "ee.y")


@dataclass(frozen=True)
class FrameIndices:
    """Where the frame's inputs sit: the obs key (index into `obs_keys`) and its entries
    holding the object's pose and the tool's position, and the action's x/y entries."""

    pose_key: int
    pose: tuple[int, int, int, int]
    tool_key: int
    tool: tuple[int, int]
    action: tuple[int, int]

    @classmethod
    def from_names(
        cls, name: str, obs_keys: tuple[str, ...], obs_names: dict, action_names
    ) -> FrameIndices:
        """Indices of object `name`'s pose, the tool and the action's position entries,
        found by feature name (a one-line error says which is missing)."""

        def locate(entries: tuple[str, ...], what: str) -> tuple[int, tuple[int, ...]]:
            for k, key in enumerate(obs_keys):
                names = list(obs_names.get(key) or ())
                if all(e in names for e in entries):
                    return k, tuple(names.index(e) for e in entries)
            raise RobotrlError(
                f"--action-frame {name}: the observations have no {what} entries "
                f"{', '.join(entries)}"
            )

        pose_key, pose = locate(tuple(f"{name}.{e}" for e in POSE_ENTRIES), "object pose")
        tool_key, tool = locate(TOOL_ENTRIES, "tool position")
        names = list(action_names or ())
        if not all(e in names for e in TOOL_ENTRIES):
            raise RobotrlError(
                f"--action-frame {name}: the actions have no absolute position entries "
                f"{', '.join(TOOL_ENTRIES)} (collect with --action-mode ee_pos)"
            )
        action = tuple(names.index(e) for e in TOOL_ENTRIES)
        return cls(pose_key, pose, tool_key, tool, action)

    def to_list(self) -> list:
        return [self.pose_key, list(self.pose), self.tool_key, list(self.tool), list(self.action)]

    @classmethod
    def from_list(cls, items) -> FrameIndices:
        pose_key, pose, tool_key, tool, action = items
        return cls(pose_key, tuple(pose), tool_key, tuple(tool), tuple(action))


class ObjectFrame(nn.Module):
    def __init__(self, indices: FrameIndices, obs_keys: tuple[str, ...], n_obs: int):
        super().__init__()
        self.indices, self.n_obs = indices, n_obs
        self.pose_key, self.tool_key = obs_keys[indices.pose_key], obs_keys[indices.tool_key]
        # stats: `fit_stats`, or the checkpoint
        self.tool_norm = MinMaxNormalizer.empty(2)
        self.origin_norm = MinMaxNormalizer.empty(2)

    @property
    def features(self) -> int:
        return 2 * self.n_obs + 2

    def pose(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Origin [B, 2] and rotation [B, 2, 2] (frame to world) of the newest observation."""
        x, y, c, s = batch[self.pose_key][:, -1, list(self.indices.pose)].float().unbind(-1)
        norm = torch.sqrt(c * c + s * s).clamp(min=1e-6)
        c, s = c / norm, s / norm
        rotation = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        return torch.stack([x, y], -1), rotation

    def to_frame(self, xy: torch.Tensor, batch: dict) -> torch.Tensor:
        """World positions [B, T, 2] in the object's frame."""
        origin, rotation = self.pose(batch)
        return (xy - origin[:, None]) @ rotation

    def from_frame(self, xy: torch.Tensor, batch: dict) -> torch.Tensor:
        origin, rotation = self.pose(batch)
        return xy @ rotation.transpose(-1, -2) + origin[:, None]

    def actions_to_frame(self, actions: torch.Tensor, batch: dict) -> torch.Tensor:
        ax = list(self.indices.action)
        out = actions.clone()
        out[..., ax] = self.to_frame(actions[..., ax], batch)
        return out

    def actions_from_frame(self, actions: torch.Tensor, batch: dict) -> torch.Tensor:
        ax = list(self.indices.action)
        out = actions.clone()
        out[..., ax] = self.from_frame(actions[..., ax], batch)
        return out

    def tool(self, batch: dict) -> torch.Tensor:
        """The tool's position in the object's frame over the history [B, n_obs, 2]."""
        history = batch[self.tool_key][:, -self.n_obs :, list(self.indices.tool)].float()
        return self.to_frame(history, batch)

    def origin(self, batch: dict) -> torch.Tensor:
        """The world origin in the object's frame [B, 2]. A goal fixed in the world sits at
        this plus a linear function of the object's (cos, sin) yaw, so the network can read
        the object's offset from the goal along the object's own axes without a product."""
        origin, _ = self.pose(batch)
        return self.to_frame(torch.zeros_like(origin)[:, None], batch)[:, 0]

    def condition(self, batch: dict) -> torch.Tensor:
        tool = self.tool_norm.normalize(self.tool(batch)).flatten(1)
        return torch.cat([tool, self.origin_norm.normalize(self.origin(batch))], dim=-1)

    @torch.no_grad()
    def fit_stats(self, windows, batch_size: int = 4096, mirror=None) -> tuple:
        """Sets the tool normalizer from the training windows (and their images under
        `mirror`, a batch transform, when training sees those too); returns the min/max of
        the actions in the frame (for the policy's action normalizer)."""
        tools, origins, actions = [], [], []
        for start in range(0, len(windows), batch_size):
            batch = windows[torch.arange(start, min(start + batch_size, len(windows))).numpy()]
            for seen in (batch, mirror(batch)) if mirror else (batch,):
                self._collect(seen, tools, origins, actions)
        for norm, values in ((self.tool_norm, tools), (self.origin_norm, origins)):
            values = torch.cat(values)
            fitted = MinMaxNormalizer(values.min(0).values, values.max(0).values)
            norm.low.copy_(fitted.low)
            norm.span.copy_(fitted.span)
        actions = torch.cat(actions)
        return actions.min(0).values.numpy(), actions.max(0).values.numpy()

    def _collect(self, batch: dict, tools: list, origins: list, actions: list) -> None:
        tools.append(self.tool(batch).flatten(0, 1))
        origins.append(self.origin(batch))
        actions.append(self.actions_to_frame(batch["action"].float(), batch).flatten(0, 1))
