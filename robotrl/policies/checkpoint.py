"""Policy checkpoints: a directory with `config.json` and `model.safetensors`.

Loading never unpickles (a pickle can run code): a `.pt`/`.pkl`-style file is refused with a
clear message. Saving writes a temporary directory and renames it into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from robotrl.errors import RobotrlError

CONFIG, WEIGHTS = "config.json", "model.safetensors"
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # a raw pickle, or torch.save's zip archive


class CheckpointError(RobotrlError):
    pass


def policy_classes() -> dict:
    from robotrl.policies.consistency import ConsistencyConfig, ConsistencyPolicy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy
    from robotrl.rl.residual import ResidualConfig, ResidualPolicy

    return {
        "diffusion": (DiffusionPolicy, DiffusionConfig),
        "consistency": (ConsistencyPolicy, ConsistencyConfig),
        "residual": (ResidualPolicy, ResidualConfig),  # loads its base from config["base"]
    }


def save_policy(policy, path: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = {"policy": policy.kind, "config": policy.config.to_dict(), **(extra or {})}
    (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    state = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
    save_file(state, tmp / WEIGHTS)
    if path.exists():
        old = path.with_name(path.name + ".old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)
    return path


def load_policy(path: str | Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(PICKLE_MAGIC) or path.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin"):
            raise CheckpointError(
                f"refusing to load {path}: it is a pickle, and unpickling can run "
                f"code; a checkpoint is a directory with {CONFIG} and {WEIGHTS}"
            )
        raise CheckpointError(
            f"{path} is a file; a checkpoint is a directory with {CONFIG} and {WEIGHTS}"
        )
    if (path / "policy" / CONFIG).is_file():  # a training run directory: use its policy
        path = path / "policy"
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(f"no checkpoint at {path}: expected {CONFIG} and {WEIGHTS}")
    try:
        meta = json.loads((path / CONFIG).read_text())
        classes = policy_classes()
        if meta.get("policy") not in classes:
            raise CheckpointError(
                f"{path} holds a policy of type {meta.get('policy')!r}; this version knows "
                f"{', '.join(classes)}"
            )
        policy_cls, config_cls = classes[meta["policy"]]
        policy = policy_cls(config_cls.from_dict(meta["config"]))
        policy.load_state_dict(load_file(path / WEIGHTS))
    except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: {str(e).splitlines()[0]}") from e
    policy.eval()
    return policy
