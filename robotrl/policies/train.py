"""`robotrl train`: fit a diffusion policy to a dataset.

State policies condition on `observation.state` (+ `observation.environment_state` when the
dataset has it); `--state ee.x,ee.y,ee.z` narrows the robot state to the named entries (on
PushT the joint angles and tool orientation say nothing the pusher position does not, and
with 100 demos a policy that sees them keys its actions on them); `--cameras front,wrist`
(or `all`) adds those cameras through the image encoders and drops the privileged
environment state, as a policy for a real arm must.
The loop, checkpoints and resume live in `robotrl.policies.runs`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from robotrl.env import action_mode_of
from robotrl.errors import RobotrlError
from robotrl.policies.distributed import ranks
from robotrl.policies.runs import LoopConfig, check_loop_config, fit

OBS_KEYS = ("observation.state", "observation.environment_state")
# options that fix what a run directory holds: resuming with others would load mismatched weights
RUN_SHAPE = (
    "data",
    "policy",
    "cameras",
    "state",
    "n_obs",
    "horizon",
    "channels",
    "obs_encoder_dim",
    "action_frame",
    "object_aux",
)


@dataclass
class TrainConfig(LoopConfig):
    data: str = field(default="", metadata={"help": "dataset directory"})
    out: str = field(default="runs/diffusion", metadata={"help": "run directory (resumes)"})
    policy: str = field(default="diffusion", metadata={"help": "policy type"})
    cameras: str = field(
        default="", metadata={"help": "cameras to see, comma-separated or 'all' (default: none)"}
    )
    state: str = field(
        default="",
        metadata={"help": "observation.state entries to look at, comma-separated (default: all)"},
    )
    n_obs: int = field(default=2, metadata={"help": "observation history"})
    horizon: int = field(default=16, metadata={"help": "predicted action chunk"})
    n_action_steps: int = field(default=8, metadata={"help": "actions executed per chunk"})
    channels: str = field(
        default="64,128,256", metadata={"help": "U-Net widths per level, comma-separated"}
    )
    action_frame: str = field(
        default="",
        metadata={
            "help": "object whose planar frame position actions are predicted in, e.g. block "
            "(its pose: environment_state <name>.x,.y,.cos_yaw,.sin_yaw; default: the world)"
        },
    )
    forecast_delay: int = field(
        default=0,
        metadata={
            "help": "train on forecast observations up to this many ticks ahead too, as "
            "deploy's asynchronous strategies plan from (default: 0, real windows only)"
        },
    )
    forecast_fraction: float = field(
        default=0.5, metadata={"help": "share of each batch on forecast windows"}
    )
    mirror: bool = field(
        default=False,
        metadata={
            "help": "also train on the mirror image of half of each batch, about the task's "
            "mirror plane (tasks that declare one: PushT)",
            "experimental": True,
        },
    )
    focus: float = field(
        default=0.0,
        metadata={
            "help": "draw windows whose step's reward exceeds --focus-above (1 + this) times as "
            "often: more of the training on the finishing moves (0: uniform)"
        },
    )
    focus_above: float = field(
        default=0.8, metadata={"help": "reward above which --focus oversamples a window"}
    )
    object_aux: float = field(
        default=0.0,
        metadata={
            "help": "camera policies: weight of a training-only loss that predicts the "
            "dataset's environment_state from the image features (the policy never sees it; "
            "0: off)",
            "experimental": True,
        },
    )
    obs_encoder_dim: int = field(
        default=0,
        metadata={
            "help": "width of an MLP on the observation history whose features join it in "
            "the U-Net's conditioning (default: 0, the raw history)",
            "experimental": True,
        },
    )


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy
    from robotrl.policies.normalize import MinMaxNormalizer

    clock = time.monotonic()  # a --minutes budget counts from here
    if cfg.policy != "diffusion":
        raise RobotrlError(f"unknown policy type '{cfg.policy}': choose diffusion")
    if not cfg.data:
        raise RobotrlError("--data is required: a dataset directory")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    dataset = Dataset(cfg.data)
    image_keys = _camera_keys(cfg.cameras, dataset)
    obs_keys = tuple(
        k
        for k in OBS_KEYS
        if k in dataset.features and not (image_keys and k.endswith("environment_state"))
    )
    if "action" not in dataset.features or not obs_keys:
        raise RobotrlError(f"{cfg.data} has no action or observation.state feature to learn from")
    augment = _forecast_augment(cfg, dataset, obs_keys, image_keys) if cfg.forecast_delay else None
    probed = _object_probe_keys(cfg, dataset, image_keys)
    windows = WindowDataset(
        dataset, cfg.n_obs, cfg.horizon, obs_keys + probed, image_keys, lookback=cfg.forecast_delay
    )
    if image_keys:  # every frame decoded once, before the clock of the first steps runs
        dataset.preload_videos()
    stats = dataset.stats
    config = DiffusionConfig(
        obs_keys=obs_keys,
        obs_dims=tuple(dataset.features[k]["shape"][0] for k in obs_keys),
        obs_select=_state_select(cfg.state, dataset, obs_keys),
        action_dim=dataset.features["action"]["shape"][0],
        n_obs=cfg.n_obs,
        horizon=cfg.horizon,
        n_action_steps=cfg.n_action_steps,
        channels=_channels(cfg.channels),
        obs_encoder_dim=_obs_encoder_dim(cfg.obs_encoder_dim),
        fps=dataset.fps,
        image_keys=image_keys,
        image_shapes=tuple(tuple(dataset.features[k]["shape"]) for k in image_keys),
        action_frame=cfg.action_frame,
        frame_indices=_frame_indices(cfg.action_frame, dataset, obs_keys),
        meta={
            "task": next(iter(dataset.tasks.values()), ""),
            "robot": dataset.info.get("robot_type"),
            "action_mode": action_mode_of(dataset.features["action"].get("names") or ()),
            "data": str(cfg.data),
        },
    )
    ranges = {k: (stats[k]["min"], stats[k]["max"]) for k in (*obs_keys, "action")}
    if cfg.mirror:
        augment = _mirror_augment(cfg, dataset, config)
        ranges = {k: augment.widen(*r, k, dataset.columns[k]) for k, r in ranges.items()}
    model = DiffusionPolicy(config, [ranges[k] for k in obs_keys], ranges["action"])
    if model.frame is not None:
        mirror = augment.reflect_batch if cfg.mirror else None
        model.action_norm = MinMaxNormalizer(*model.frame.fit_stats(windows, mirror=mirror))
    draw_weights = _focus(cfg, dataset)  # checked before the run directory is made
    check_loop_config(cfg)
    run = Path(cfg.out)
    _check_same_run(run, cfg)
    if ranks().main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    def loss_on_augmented(batch, noise):
        return model.loss(augment(batch), noise)

    loss, modules = loss_on_augmented if augment else model.loss, {}
    if probed:
        from robotrl.policies.object_probe import ObjectStateProbe, with_object_probe

        low, high = stats[probed[0]]["min"], stats[probed[0]]["max"]
        modules["object_probe"] = ObjectStateProbe(model.image_encoder.out_dim, low, high)
        loss = with_object_probe(model, modules["object_probe"], cfg.object_aux)
    fit(
        run,
        cfg,
        model,
        loss,
        windows,
        modules,
        progress=progress,
        draw_weights=draw_weights,
        clock=clock,
    )
    return run


def _object_probe_keys(cfg: TrainConfig, dataset, image_keys) -> tuple[str, ...]:
    """The privileged key `--object-aux` reads during training (none when off)."""
    from robotrl.policies.object_probe import KEY

    if not cfg.object_aux:
        return ()
    if cfg.object_aux < 0:
        raise RobotrlError(f"--object-aux must be >= 0, got {cfg.object_aux}")
    if not image_keys:
        raise RobotrlError("--object-aux trains camera policies: give --cameras")
    if KEY not in dataset.features:
        raise RobotrlError(f"--object-aux: {cfg.data} has no {KEY} to predict")
    return (KEY,)


def _forecast_augment(cfg: TrainConfig, dataset, obs_keys, image_keys):
    from robotrl.policies.forecast_training import ForecastAugment

    if cfg.forecast_delay < 0 or not 0 < cfg.forecast_fraction <= 1:
        raise RobotrlError(
            f"--forecast-delay {cfg.forecast_delay} --forecast-fraction {cfg.forecast_fraction}:"
            " give a delay >= 0 ticks and a fraction in (0, 1]"
        )
    if image_keys:
        raise RobotrlError("--forecast-delay trains state policies (no --cameras)")
    names = {k: dataset.features[k].get("names") or () for k in ("observation.state", "action")}
    return ForecastAugment(
        obs_keys,
        names["observation.state"],
        names["action"],
        cfg.n_obs,
        cfg.forecast_delay,
        cfg.forecast_fraction,
        cfg.seed,
        demos=dataset,
    )


def _focus(cfg: TrainConfig, dataset):
    """How often each window is drawn under --focus (None: uniformly)."""
    if not cfg.focus:
        return None
    if cfg.focus < 0:
        raise RobotrlError(f"--focus must be >= 0, got {cfg.focus}")
    if "next.reward" not in dataset.columns:
        raise RobotrlError(f"--focus: {cfg.data} has no next.reward feature to focus on")
    reward = np.asarray(dataset.columns["next.reward"]).ravel()
    weights = 1 + cfg.focus * (reward > cfg.focus_above)
    return weights / weights.sum()


def _mirror_augment(cfg: TrainConfig, dataset, config):
    from robotrl.data.mirror import MirrorAugment
    from robotrl.tasks import task_class

    task = config.meta["task"]
    mirror = getattr(task_class(task), "mirror_symmetry", None) if task else None
    if mirror is None:
        raise RobotrlError(f"--mirror: task {task or '(none)'} declares no mirror symmetry")
    if cfg.forecast_delay or config.image_keys:
        raise RobotrlError(
            "--mirror trains state policies on real windows (no --cameras, no --forecast-delay)"
        )
    keys = (*config.obs_keys, "action")
    names = {k: list(dataset.features[k].get("names") or ()) for k in keys}
    selects = config.obs_select or ((),) * len(config.obs_keys)
    looked_at = {
        k: set(select) if select else set(range(len(names[k])))
        for k, select in zip(config.obs_keys, selects)
    }
    looked_at["action"] = set(range(len(names["action"])))
    return MirrorAugment(mirror, names, looked_at, seed=cfg.seed)


def _frame_indices(name: str, dataset, obs_keys) -> tuple:
    if not name:
        return ()
    from robotrl.policies.object_frame import FrameIndices

    names = {k: dataset.features[k].get("names") for k in obs_keys}
    action_names = dataset.features["action"].get("names")
    return tuple(FrameIndices.from_names(name, obs_keys, names, action_names).to_list())


def _state_select(names: str, dataset, obs_keys) -> tuple[tuple[int, ...], ...]:
    """Indices of the named `observation.state` entries (the other keys: all entries)."""
    if not names:
        return ()
    available = list(dataset.features["observation.state"].get("names") or ())
    wanted = _comma_list(names)
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise RobotrlError(
            f"--state: observation.state has no {unknown[0]!r}; it has: {', '.join(available)}"
        )
    return tuple(
        tuple(available.index(n) for n in wanted) if k == "observation.state" else ()
        for k in obs_keys
    )


def _camera_keys(cameras: str, dataset) -> tuple[str, ...]:
    available = tuple(dataset.video_keys)
    if not cameras:
        return ()
    if cameras == "all":
        if not available:
            raise RobotrlError(f"--cameras all: {dataset.root} has no camera features")
        return available
    keys = tuple(f"observation.images.{c}" for c in _comma_list(cameras))
    missing = [k for k in keys if k not in available]
    if missing:
        names = ", ".join(k.removeprefix("observation.images.") for k in available) or "none"
        raise RobotrlError(f"dataset has no camera {missing[0]!r}; it has: {names}")
    return keys


def _channels(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in _comma_list(text))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 8 or any(w % 8 for w in widths):
        raise RobotrlError(
            f"--channels '{text}': give widths that are multiples of 8, e.g. 64,128,256"
        )
    return widths


def _obs_encoder_dim(width: int) -> int:
    if width < 0:
        raise RobotrlError(f"--obs-encoder-dim {width}: give a width >= 1, or 0 for none")
    return width


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _check_same_run(run: Path, cfg: TrainConfig) -> None:
    """A run directory resumes only the run it holds: other data or a different network
    would load mismatched weights."""
    saved = run / "train_config.json"
    if not (run / "state").is_dir() or not saved.is_file():
        return
    before = json.loads(saved.read_text())
    changed = [k for k in RUN_SHAPE if before.get(k, getattr(cfg, k)) != getattr(cfg, k)]
    if changed:
        raise RobotrlError(
            f"{run} holds a run with different {', '.join(changed)}; use another --out "
            "to start a new run"
        )
