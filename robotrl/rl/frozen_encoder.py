"""A frozen image encoder for RL from pixels, as in HIL-SERL: the camera frames of every
transition go through a pretrained encoder once, when the transition is made, and the agent
learns on the features (a small vector) with the robot's own state. Raw images never reach
the replay buffer, and an update costs what an update on state costs.

The encoder is the `image_encoder` of a camera policy (a diffusion/consistency run or
checkpoint, `robotrl.policies.encoders.ImageEncoder`), in eval mode: its center crop, no
augmentation. A run records which encoder it used (`record()`: path and a digest of its
weights), so resuming, evaluating or an actor joining it rebuilds, or refuses, the same one.

- `FrozenEncoder(path)`: `encode({camera: uint8 [N, H, W, 3]}) -> float32 [N, D]`, and
  `encode_rows` for transition rows (`obs.images.front` ... -> `obs.image_features`).
- `EncodedObservations(env, encoder)`: an env wrapper adding `image_features` to every
  observation. Its observation space is what the agent sees (the frames replaced by the
  features); the observation dicts keep the frames too, for a camera reward classifier.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from robotrl.errors import RobotrlError

FEATURES = "image_features"  # the observation key of the encoded cameras


class FrozenEncoder:
    def __init__(self, path: str | Path):
        from robotrl.policies.checkpoint import load_policy

        policy = load_policy(path)
        module = getattr(policy, "image_encoder", None)
        if module is None:
            raise RobotrlError(f"--encoder {path}: that policy sees no cameras")
        self.path = str(path)
        self.module = module.eval().requires_grad_(False)
        self.cameras = tuple(k.removeprefix("observation.") for k in module.camera_keys)
        shapes = policy.config.image_shapes
        self.shapes = {k: tuple(int(d) for d in s) for k, s in zip(self.cameras, shapes)}
        self.dim = int(module.out_dim)
        digest = hashlib.sha256()
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        self.digest = digest.hexdigest()[:16]

    def record(self) -> dict:
        """What a run keeps to rebuild (and check) this encoder: JSON, no weights."""
        return {"path": self.path, "digest": self.digest, "dim": self.dim,
                "cameras": list(self.cameras)}  # fmt: skip

    @torch.no_grad()
    def encode(self, frames: dict, batch: int = 128) -> np.ndarray:
        """Features [N, D] of N frames per camera ({camera: uint8 [N, H, W, 3]})."""
        n = len(frames[self.cameras[0]])
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, batch):
            part = {f"observation.{k}": torch.as_tensor(np.asarray(frames[k][start : start + batch]))[:, None]
                    for k in self.cameras}  # fmt: skip
            out[start : start + batch] = self.module(part)[:, 0].numpy()
        return out

    def encode_rows(self, rows: dict) -> dict:
        """Transition rows with `obs.`/`next_obs.` camera frames replaced by their features."""
        rows = dict(rows)
        for prefix in ("obs", "next_obs"):
            frames = {k: rows.pop(f"{prefix}.{k}") for k in self.cameras}
            rows[f"{prefix}.{FEATURES}"] = self.encode(frames)
        return rows


def digest_of(spec: dict) -> str:
    """The encoder digest an agent spec records ('' for an agent without one)."""
    return str((spec.get("config") or {}).get("encoder_digest", ""))


def resolve_encoder(path: str, run: str | Path) -> FrozenEncoder | None:
    """The encoder a run uses: `path` (`--encoder`), else the one its `spec.json` recorded
    (a resumed run). Refuses a `path` whose weights differ from the recorded ones."""
    spec_file = Path(run) / "spec.json"
    spec = json.loads(spec_file.read_text()) if spec_file.exists() else {}
    recorded = (spec.get("config") or {}).get("encoder", "")
    if not path and not recorded:
        return None
    encoder = FrozenEncoder(path or recorded)
    if spec and digest_of(spec) != encoder.digest:
        raise RobotrlError(
            f"{run} was trained with encoder {recorded or 'none'} "
            f"({digest_of(spec) or 'no digest'}), not {path} ({encoder.digest})"
        )
    return encoder


def pixel_options(encoder: FrozenEncoder, obs_mode: str) -> dict:
    """The sim env options that render the encoder's cameras at its image size."""
    if "pixels" not in obs_mode:
        raise RobotrlError(f"--encoder reads cameras: use --obs-mode pixels, not {obs_mode}")
    size = next(iter(encoder.shapes.values()))[:2]
    return {"obs_mode": obs_mode, "image_size": size,
            "cameras": tuple(c.removeprefix("images.") for c in encoder.cameras)}  # fmt: skip


class EncodedObservations(gym.Wrapper):
    def __init__(self, env: gym.Env, encoder: FrozenEncoder):
        super().__init__(env)
        self.encoder = encoder
        spaces = dict(env.observation_space.spaces)
        for key, shape in encoder.shapes.items():
            have = spaces.get(key)
            if have is None or tuple(have.shape) != shape:
                found = "missing" if have is None else f"{tuple(have.shape)}"
                raise RobotrlError(
                    f"the encoder reads {key} {shape}; the env's is {found}: use --obs-mode "
                    "pixels with the encoder's cameras"
                )
            del spaces[key]
        spaces[FEATURES] = gym.spaces.Box(-np.inf, np.inf, (encoder.dim,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    def _encoded(self, obs: dict) -> dict:
        frames = {k: np.asarray(obs[k])[None] for k in self.encoder.cameras}
        return {**obs, FEATURES: self.encoder.encode(frames)[0]}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._encoded(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._encoded(obs), reward, terminated, truncated, info
