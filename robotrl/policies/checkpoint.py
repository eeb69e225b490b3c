"""Policy checkpoints: a directory with `config.json` and `model.safetensors`.

Loading never unpickles (a pickle can run code): a `.pt`/`.pkl`-style file is refused with a
clear message. Saving writes a temporary directory and renames it into place.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

from robotrl.errors import RobotrlError

CONFIG, WEIGHTS = "config.json", "model.safetensors"
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # a raw pickle, or torch.save's zip archive


class CheckpointError(RobotrlError):
    pass


# The policy kinds a checkpoint can hold, keyed by the `policy` field of its config.json: the
# module that defines each kind and the names of its policy and config classes. A kind's module
# is imported only when a checkpoint of that kind is loaded, so this loader imports none of the
# packages that define policies (robotrl.rl among them) and they may all import the loader. The
# checkpoint only picks an entry of this table: it never names a module or class itself.
POLICY_KINDS: dict[str, tuple[str, str, str]] = {
    "diffusion": ("robotrl.policies.diffusion", "DiffusionPolicy", "DiffusionConfig"),
    "consistency": ("robotrl.policies.consistency", "ConsistencyPolicy", "ConsistencyConfig"),
    # a residual loads its frozen base from config["base"], through this loader again
    "residual": ("robotrl.rl.residual", "ResidualPolicy", "ResidualConfig"),
    # a diffusion policy steered by a critic; its base loads from config["base"] too
    "value_guided": ("robotrl.rl.value_guided", "ValueGuidedPolicy", "ValueGuidedConfig"),
}


def register_policy_kind(kind: str, module: str, policy_class: str, config_class: str) -> None:
    """Let `load_policy` load checkpoints whose config.json says `"policy": kind`: the class
    `policy_class` of `module`, built from `config_class.from_dict(config["config"])`."""
    POLICY_KINDS[kind] = (module, policy_class, config_class)


def policy_classes(kind: str) -> tuple[type, type]:
    """(policy class, config class) of a registered kind; its module is imported here."""
    module, policy_class, config_class = POLICY_KINDS[kind]
    defined = importlib.import_module(module)
    return getattr(defined, policy_class), getattr(defined, config_class)


def save_policy(policy, path: str | Path, extra: dict | None = None) -> Path:
    config = {"policy": policy.kind, "config": policy.config.to_dict(), **(extra or {})}
    return write_checkpoint_dir(path, config, policy.state_dict())


def write_checkpoint_dir(path: str | Path, config: dict, state: dict) -> Path:
    """`path/config.json` and `path/model.safetensors`, written into a temporary directory
    that then replaces `path`: a crash or kill leaves the old checkpoint or the new one."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    save_file({k: v.detach().contiguous() for k, v in state.items()}, tmp / WEIGHTS)
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
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            kind = type(meta).__name__ if not isinstance(meta, dict) else "no config object"
            raise CheckpointError(
                f"corrupt checkpoint {path}: {CONFIG} holds {kind} where an object with "
                "'policy' and 'config' belongs"
            )
        if meta.get("policy") not in POLICY_KINDS:
            raise CheckpointError(
                f"{path} holds a policy of type {meta.get('policy')!r}; this version knows "
                f"{', '.join(POLICY_KINDS)}"
            )
        policy_cls, config_cls = policy_classes(meta["policy"])
        policy = policy_cls(config_cls.from_dict(meta["config"]))
        policy.load_state_dict(load_file(path / WEIGHTS))
    except (
        json.JSONDecodeError,
        AttributeError,
        KeyError,
        TypeError,
        RuntimeError,
        SafetensorError,
    ) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: {str(e).splitlines()[0]}") from e
    policy.eval()
    return policy
