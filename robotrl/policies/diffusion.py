"""Diffusion Policy (Chi et al., 2023), state observations: a conditional 1-D U-Net denoises
an action chunk; training noise comes from diffusers' DDPM scheduler, sampling from DDPM,
DDIM or DPM-Solver with a configurable number of steps.

Inputs are the vector features named in `obs_keys` (e.g. `observation.state` and
`observation.environment_state`), each min/max-normalized inside the policy, and optionally
camera images (`image_keys`, uint8 HWC) through per-camera ResNet-18-GN + spatial-softmax
encoders with random-crop augmentation (`robotrl.policies.encoders`), all concatenated per
timestep over an observation history of `n_obs` frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from robotrl.errors import RobotrlError
from robotrl.policies.conditional_unet1d import ConditionalUnet1D
from robotrl.policies.distributed import randint, randn
from robotrl.policies.normalize import MinMaxNormalizer

SCHEDULERS = ("ddpm", "ddim", "dpm")


@dataclass
class DiffusionConfig:
    obs_keys: tuple[str, ...] = ("observation.state", "observation.environment_state")
    obs_dims: tuple[int, ...] = ()
    # per obs key, the indices of its entries the policy looks at (empty: all of them)
    obs_select: tuple[tuple[int, ...], ...] = ()
    action_dim: int = 0
    n_obs: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    channels: tuple[int, ...] = (64, 128, 256)
    # Width of an MLP (`encoders.StateEncoder`) over the flattened observation history whose
    # features join the raw history in the FiLM conditioning; 0: the raw history alone, as in
    # Diffusion Policy. FiLM is linear in its input; the MLP gives every block nonlinear
    # features of the state, e.g. where the tool is relative to a rotated object (measured
    # effect: docs/results.md).
    obs_encoder_dim: int = 0
    train_steps: int = 100  # diffusion steps of the noise schedule
    sampler: str = "ddim"
    inference_steps: int = 10
    fps: float = 10.0
    image_keys: tuple[str, ...] = ()  # e.g. observation.images.front; empty: state only
    image_shapes: tuple[tuple[int, int, int], ...] = ()
    image_feature_dim: int = 64  # features per camera
    image_base_width: int = 12  # ResNet width: 64 is the full ResNet-18
    crop_ratio: float = 0.9
    # Chunks sampled per plan in one batched pass; `select_action` executes the one that best
    # continues the previous chunk's unexecuted actions (Bidirectional Decoding's backward
    # coherence, Liu et al. 2024): fewer switches between modes from one chunk to the next.
    candidates: int = 1
    # Object whose planar frame the x/y position actions are predicted in (empty: the world
    # frame), and where its pose, the tool and the actions sit (`object_frame.FrameIndices`)
    action_frame: str = ""
    frame_indices: tuple = ()
    meta: dict = field(default_factory=dict)  # task, robot: for humans and `eval` defaults

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiffusionConfig:
        def frozen(value):
            return tuple(frozen(v) for v in value) if isinstance(value, list) else value

        return cls(**{k: frozen(v) for k, v in d.items()})


def make_scheduler(kind: str, train_steps: int):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    common = {
        "num_train_timesteps": train_steps,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "epsilon",
    }
    if kind == "ddpm":
        return DDPMScheduler(**common, clip_sample=True)
    if kind == "ddim":
        return DDIMScheduler(**common, clip_sample=True, set_alpha_to_one=True, steps_offset=0)
    if kind == "dpm":
        # Thresholding at 1 clips the x0 estimate as DDIM's clip_sample does; without it the
        # estimate divides by alpha ~ 0 at the cosine schedule's first step and every chunk
        # saturates at +-1.
        return DPMSolverMultistepScheduler(**common, thresholding=True, sample_max_value=1.0)
    raise ValueError(f"unknown sampler '{kind}': choose {', '.join(SCHEDULERS)}")


class DiffusionPolicy(nn.Module):
    kind = "diffusion"

    def __init__(self, config: DiffusionConfig, obs_stats=None, action_stats=None):
        super().__init__()
        self.config = config
        dims = config.obs_dims
        self.obs_norm = nn.ModuleList(
            MinMaxNormalizer(*obs_stats[i]) if obs_stats else MinMaxNormalizer.empty(d)
            for i, d in enumerate(dims)
        )
        self.action_norm = (
            MinMaxNormalizer(*action_stats)
            if action_stats
            else MinMaxNormalizer.empty(config.action_dim)
        )
        selects = config.obs_select or ((),) * len(dims)
        self.obs_select = [torch.as_tensor(s) if s else None for s in selects]
        self.image_encoder = None
        features = sum(len(s) if s is not None else d for s, d in zip(self.obs_select, dims))
        if config.image_keys:
            from robotrl.policies.encoders import ImageEncoder

            self.image_encoder = ImageEncoder(
                dict(zip(config.image_keys, config.image_shapes)),
                feature_dim=config.image_feature_dim,
                base_width=config.image_base_width,
                crop_ratio=config.crop_ratio,
            )
            features += self.image_encoder.out_dim
        self.frame = None
        if config.action_frame:
            from robotrl.policies.object_frame import FrameIndices, ObjectFrame

            indices = FrameIndices.from_list(config.frame_indices)
            self.frame = ObjectFrame(indices, config.obs_keys, config.n_obs)
        self.cond_dim = config.n_obs * features + (self.frame.features if self.frame else 0)
        self.obs_encoder = None
        if config.obs_encoder_dim:
            from robotrl.policies.encoders import StateEncoder

            width = config.obs_encoder_dim
            self.obs_encoder = StateEncoder(self.cond_dim, width, width)
            self.cond_dim += width
        self.net = ConditionalUnet1D(config.action_dim, self.cond_dim, config.channels)
        self.train_scheduler = make_scheduler("ddpm", config.train_steps)
        self.sampler = make_scheduler(config.sampler, config.train_steps)
        self.sampler_steps = config.inference_steps
        self.reset()

    def set_sampler(self, kind: str, steps: int) -> None:
        """Sample with `kind` in `steps` network evaluations (kept in the config, so a saved
        copy samples the same way)."""
        if kind == "dpm" and steps >= self.config.train_steps:
            # diffusers' multistep solver returns NaN when every training step is a solver step
            raise RobotrlError(
                f"DPM-Solver samples in at most {self.config.train_steps - 1} steps "
                f"(the policy's diffusion has {self.config.train_steps}); got {steps}"
            )
        self.sampler = make_scheduler(kind, self.config.train_steps)
        self.sampler_steps = steps
        self.config.sampler, self.config.inference_steps = kind, steps

    # ---- training -----------------------------------------------------------------------
    def condition(self, batch: dict, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized observation history [B, n_obs, D] flattened to [B, n_obs * D] (and the
        observation encoder's features of it). `image_features` [B, n_obs, F]: the image
        encoder's output for `batch` when the caller has computed it already."""
        parts = []
        for key, norm, select in zip(self.config.obs_keys, self.obs_norm, self.obs_select):
            part = norm.normalize(batch[key].float())
            parts.append(part if select is None else part[..., select])
        if self.image_encoder is not None:
            parts.append(self.image_encoder(batch) if image_features is None else image_features)
        history = torch.cat(parts, dim=-1).flatten(1)
        if self.frame is not None:
            history = torch.cat([history, self.frame.condition(batch)], dim=-1)
        if self.obs_encoder is None:
            return history
        return torch.cat([history, self.obs_encoder(history)], dim=-1)

    def encode_actions(self, actions: torch.Tensor, obs: dict) -> torch.Tensor:
        """World actions [B, T, A] as the network sees them: in the action frame of the
        observation windows `obs`, normalized."""
        if self.frame is not None:
            actions = self.frame.actions_to_frame(actions, obs)
        return self.action_norm.normalize(actions)

    def decode_actions(self, x: torch.Tensor, obs: dict) -> torch.Tensor:
        actions = self.action_norm.unnormalize(x)
        return actions if self.frame is None else self.frame.actions_from_frame(actions, obs)

    def loss(
        self,
        batch: dict,
        generator: torch.Generator | None = None,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        actions = self.encode_actions(batch["action"].float(), batch)
        noise = randn(actions.shape, generator)
        steps = randint(0, self.config.train_steps, (len(actions),), generator)
        noisy = self.train_scheduler.add_noise(actions, noise, steps)
        predicted = self.net(noisy, steps, self.condition(batch, image_features))
        error = (predicted - noise) ** 2
        if "action_is_pad" in batch:  # padded steps past the episode end teach nothing
            error = error * (~batch["action_is_pad"])[..., None]
        return error.mean()

    # ---- inference ----------------------------------------------------------------------
    @torch.no_grad()
    def predict_chunk(
        self, obs_window: dict, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Actions [B, H, A] (unnormalized) for observation windows [B, n_obs, ...]."""
        cond = self.condition(obs_window)
        noise = torch.randn(
            (len(cond), self.config.horizon, self.config.action_dim), generator=generator
        )
        return self.decode_actions(self.sample(cond, noise, generator), obs_window)

    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Normalized chunks sampled from `noise` (deterministic for DDIM, DPM-Solver)."""
        sample = noise
        self.sampler.set_timesteps(self.sampler_steps)
        for t in self.sampler.timesteps:
            eps = self.net(sample, t.expand(len(cond)), cond)
            sample = self.sampler.step(eps, t, sample, generator=generator).prev_sample
        return sample.clamp(-1, 1)

    def reset(self) -> None:
        self._obs_history: deque = deque(maxlen=self.config.n_obs)
        self._actions: deque = deque()
        self._last_chunk: torch.Tensor | None = None

    def select_action(self, obs: dict, plan=None) -> np.ndarray:
        """One action for an env observation (keys without `observation.`); plans a chunk
        when the queue is empty and executes `n_action_steps` of it (receding horizon).
        `plan(window) -> chunk [H, A]` replaces `self.plan` (a wrapper's sampler)."""
        frame = {
            k: torch.as_tensor(np.asarray(obs[k.removeprefix("observation.")], np.float32))
            for k in self.config.obs_keys
        }
        for k in self.config.image_keys:
            frame[k] = torch.as_tensor(np.asarray(obs[k.removeprefix("observation.")]))
        if not self._obs_history:  # pad the history at the episode start
            self._obs_history.extend([frame] * self.config.n_obs)
        self._obs_history.append(frame)
        if not self._actions:
            window = {k: torch.stack([f[k] for f in self._obs_history])[None] for k in frame}
            chunk = (plan or self.plan)(window)
            self._actions.extend(chunk[: self.config.n_action_steps].numpy())
        return self._actions.popleft()

    def plan(self, window: dict) -> torch.Tensor:
        """The chunk [H, A] to execute from one observation window."""
        self._last_chunk = self._next_chunk(window)
        return self._last_chunk

    def _next_chunk(self, window: dict) -> torch.Tensor:
        n = self.config.candidates if self._last_chunk is not None else 1
        if n <= 1:
            return self.predict_chunk(window)[0]
        windows = {k: v.expand(n, *v.shape[1:]) for k, v in window.items()}
        chunks = self.predict_chunk(windows)
        rest = self.unexecuted(self._last_chunk, window)
        gap = (self.encode_actions(chunks[:, : len(rest)], windows) - rest).pow(2)
        return chunks[int(gap.flatten(1).sum(1).argmin())]

    def unexecuted(self, previous: torch.Tensor, window: dict) -> torch.Tensor:
        """The actions of chunk `previous` [H, A] that were still queued when the next plan
        started (it ran `n_action_steps` of them), as the network sees them for `window`."""
        return self.encode_actions(previous[None, self.config.n_action_steps :], window)[0]
