"""Reward classifier: a binary success classifier trained from labelled frames, used as the
reward source where the task cannot compute its own (a real robot), as in HIL-SERL.

Labels come from recordings: `next.success` of each frame (set when the operator presses the
success key/button while recording, or by the task in sim). Successes are rare (an episode
succeeds once), so training draws balanced batches. The classifier reads the observation keys
it was trained on (camera images through a small conv encoder, vectors standardized) and says
`success` when its probability reaches `threshold`.

A trained classifier is a directory (`config.json` + `model.safetensors`, no pickle). Use it:
- in `robotrl hil train|actor --reward classifier --classifier DIR` (sim or ROS), or
- as a `RosEnv` reward source: `RosEnv(reward="classifier:DIR")` or `ClassifierReward(DIR)`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robotrl.errors import RobotrlError


@dataclass
class ClassifierConfig:
    data: str = field(default="", metadata={"help": "labelled dataset(s), comma-separated"})
    out: str = field(default="runs/classifier", metadata={"help": "output directory"})
    keys: str = field(
        default="", metadata={"help": "observation keys (default: cameras, else vectors)"}
    )
    threshold: float = field(default=0.5, metadata={"help": "probability that counts as success"})
    steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=128, metadata={"help": "frames per step"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    holdout: float = field(default=0.2, metadata={"help": "fraction of episodes held out"})
    seed: int = field(default=0, metadata={"help": "seed"})
    encoder: str = field(
        default="",
        metadata={"help": "classify a frozen encoder's image features (a camera policy, as "
                  "`hil train --encoder`) instead of frames through a conv net; a run must "
                  "use the same encoder"},
    )  # fmt: skip


class SuccessClassifier(nn.Module):
    def __init__(
        self, shapes: dict[str, tuple[int, ...]], threshold: float = 0.5, hidden: int = 128
    ):
        from robotrl.rl.sac import ConvEncoder

        super().__init__()
        self.shapes = {k: tuple(s) for k, s in shapes.items()}
        self.threshold = threshold
        self.encoder: dict = {}  # the FrozenEncoder record whose features it reads, if any
        self.vector_keys = sorted(k for k, s in self.shapes.items() if len(s) == 1)
        self.image_keys = sorted(k for k, s in self.shapes.items() if len(s) == 3)
        n_vec = sum(self.shapes[k][0] for k in self.vector_keys)
        self.register_buffer("mean", torch.zeros(n_vec))
        self.register_buffer("std", torch.ones(n_vec))
        self.cameras = nn.ModuleDict(
            {k.replace(".", "_"): ConvEncoder(self.shapes[k], 32) for k in self.image_keys}
        )
        n_in = n_vec + 32 * len(self.image_keys)
        self.head = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )  # fmt: skip

    def logits(self, batch: dict) -> torch.Tensor:
        parts = []
        if self.vector_keys:
            vec = torch.cat(
                [torch.as_tensor(np.asarray(batch[k])).float() for k in self.vector_keys], -1
            )
            parts.append((vec - self.mean) / self.std)
        for key in self.image_keys:
            img = torch.as_tensor(np.asarray(batch[key])).permute(0, 3, 1, 2).float() / 255.0
            parts.append(self.cameras[key.replace(".", "_")](img))
        return self.head(torch.cat(parts, -1)).squeeze(-1)

    @torch.no_grad()
    def probability(self, obs: dict) -> float:
        """Success probability for one env observation (keys without `observation.`)."""
        self.eval()
        return float(
            torch.sigmoid(self.logits({k: np.asarray(obs[k])[None] for k in self.shapes}))[0]
        )

    def success(self, obs: dict) -> bool:
        return self.probability(obs) >= self.threshold


def fit_classifier(features: dict, labels: np.ndarray, threshold: float = 0.5, steps: int = 500,
                   batch_size: int = 128, lr: float = 1e-3, seed: int = 0) -> SuccessClassifier:  # fmt: skip
    """Train on arrays ({key: [N, ...]}, labels [N] in {0, 1}) with class-balanced batches."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels).astype(bool).reshape(-1)
    if labels.all() or not labels.any():
        raise RobotrlError("the labels need both successes and failures to train a classifier")
    model = SuccessClassifier({k: v.shape[1:] for k, v in features.items()}, threshold)
    if model.vector_keys:
        vec = np.concatenate([features[k] for k in model.vector_keys], -1).astype(np.float64)
        model.mean.copy_(torch.as_tensor(vec.mean(0)))
        model.std.copy_(torch.as_tensor(np.maximum(vec.std(0), 1e-3)))
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        half = batch_size // 2
        idx = np.concatenate([rng.choice(pos, half), rng.choice(neg, batch_size - half)])
        target = torch.as_tensor(labels[idx]).float()
        loss = F.binary_cross_entropy_with_logits(
            model.logits({k: v[idx] for k, v in features.items()}), target
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: SuccessClassifier, features: dict, labels: np.ndarray) -> dict:
    labels = np.asarray(labels).astype(bool).reshape(-1)
    predicted = torch.sigmoid(model.logits(features)).numpy() >= model.threshold
    recall = float(predicted[labels].mean()) if labels.any() else float("nan")
    return {
        "accuracy": float((predicted == labels).mean()),
        # of the frames it calls successes, how many are (a false one ends an RL episode early
        # with a reward it did not earn)
        "precision": float(labels[predicted].mean()) if predicted.any() else float("nan"),
        "recall": recall,
        "true_positive_rate": recall,  # the same figure under its older name
        "false_positive_rate": float(predicted[~labels].mean())
        if (~labels).any()
        else float("nan"),
    }


RUN_FILES = {"config.json", "model.safetensors", "train_config.json"}  # what --out holds


def save_classifier(model: SuccessClassifier, path: str | Path) -> Path:
    """The classifier as a checkpoint directory (config + safetensors), replaced whole: a
    crash while saving leaves the previous classifier loadable."""
    from robotrl.policies.checkpoint import write_checkpoint_dir

    config = {"kind": "success_classifier", "shapes": {k: list(s) for k, s in model.shapes.items()},
              "threshold": model.threshold, "encoder": model.encoder}  # fmt: skip
    return write_checkpoint_dir(path, config, model.state_dict())


def load_classifier(path: str | Path, threshold: float | None = None) -> SuccessClassifier:
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise RobotrlError(
            f"no reward classifier at {path}: expected config.json and model.safetensors"
        )
    config = json.loads((path / "config.json").read_text())
    model = SuccessClassifier(
        config["shapes"], config["threshold"] if threshold is None else threshold
    )
    model.load_state_dict(load_file(path / "model.safetensors"))
    model.encoder = config.get("encoder") or {}
    return model.eval()


def labelled_frames(
    roots: list[str], keys: list[str] | None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Features, `next.success` labels and episode ids of every frame of the datasets."""
    from robotrl.data.dataset import Dataset

    feats: dict[str, list] = {}
    labels, episodes, offset = [], [], 0
    for root in roots:
        ds = Dataset(root)
        if "next.success" not in ds.columns:
            raise RobotrlError(f"{root} has no next.success labels")
        names = (
            keys
            or ds.video_keys
            or [k for k in ds.features if k.startswith("observation.") and k not in ds.video_keys]
        )
        for name in names:
            name = name if name.startswith("observation.") else f"observation.{name}"
            if name not in ds.features:
                raise RobotrlError(f"{root} has no feature {name}")
            rows = np.arange(ds.num_frames)
            column = ds.frames(name, rows) if name in ds.video_keys else ds.columns[name]
            feats.setdefault(name.removeprefix("observation."), []).append(column)
        labels.append(ds.columns["next.success"].reshape(-1))
        episodes.append(ds.columns["episode_index"].reshape(-1) + offset)
        offset += ds.num_episodes
    return ({k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(labels),
            np.concatenate(episodes))  # fmt: skip


def train_classifier(cfg: ClassifierConfig) -> dict:
    if not cfg.data:
        raise RobotrlError("--data is required: dataset(s) with success labels")
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - RUN_FILES):
        raise RobotrlError(f"{out} holds other files: --out must be new or a classifier's")
    keys = [k for k in cfg.keys.split(",") if k] or None
    encoder = None
    if cfg.encoder:
        from robotrl.rl.frozen_encoder import FEATURES, FrozenEncoder

        encoder = FrozenEncoder(cfg.encoder)
        keys = [*encoder.cameras, *(k for k in keys or () if k not in encoder.cameras)]
    features, labels, episodes = labelled_frames(cfg.data.split(","), keys)
    if encoder:
        features[FEATURES] = encoder.encode({k: features.pop(k) for k in encoder.cameras})
    rng = np.random.default_rng(cfg.seed)
    ids = np.unique(episodes)
    held = (
        rng.choice(ids, max(1, int(len(ids) * cfg.holdout)), replace=False) if len(ids) > 1 else []
    )
    test = np.isin(episodes, held)
    train = {k: v[~test] for k, v in features.items()}
    model = fit_classifier(
        train, labels[~test], cfg.threshold, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed
    )
    model.encoder = encoder.record() if encoder else {}
    result = {"out": str(save_classifier(model, cfg.out)), "frames": int(len(labels)),
              "successes": int(labels.sum()), "held_out_episodes": len(held)}  # fmt: skip
    if test.any():
        result.update(accuracy(model, {k: v[test] for k, v in features.items()}, labels[test]))
    (Path(cfg.out) / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return result


class ClassifierReward:
    """A `RosEnv` reward source (see `robotrl.drivers.reward`): reward 1 and success when the
    classifier says so, never a failure."""

    def __init__(self, path: str | Path, threshold: float | None = None):
        self.model = load_classifier(path, threshold)

    def reset(self) -> None:
        pass

    def read(self, obs) -> tuple[float, bool, bool]:
        success = self.model.success(obs)
        return float(success), success, False

    def close(self) -> None:
        pass
