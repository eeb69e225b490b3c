"""CLI of RL fine-tuning: `robotrl finetune residual` and `robotrl finetune dppo`. `register` adds it to the top-level
subparsers of `robotrl.cli.main.build_parser`."""

from __future__ import annotations

from pathlib import Path

from robotrl.cli.config import add_config_args, config_from_args
from robotrl.rl.finetune import FinetuneConfig


def finetune(cfg: FinetuneConfig) -> Path:
    """Train a residual on `cfg.base` with `cfg.algo`; returns the run directory."""
    import torch

    from robotrl.rl.finetune import Run

    torch.set_num_threads(max(1, cfg.threads))
    run = Run(cfg)
    if cfg.algo == "ppo":
        from robotrl.rl.ppo import train
    else:
        from robotrl.rl.residual_sac import train
    train(run)
    return run.dir


def finetune_dppo(cfg) -> Path:
    """DPPO on the diffusion policy `cfg.base`; returns the run directory."""
    import torch

    from robotrl.errors import RobotrlError
    from robotrl.rl.dppo import SAME_RUN, train
    from robotrl.rl.finetune import Run

    torch.set_num_threads(max(1, cfg.threads))
    run = Run(cfg, algos=("dppo",), same_run=SAME_RUN)
    if run.base.kind != "diffusion":
        raise RobotrlError(f"DPPO fine-tunes a diffusion policy; {cfg.base} is {run.base.kind}")
    train(run)
    return run.dir


def cmd_finetune_dppo(args) -> int:
    from robotrl.rl.dppo import DPPOConfig

    run = finetune_dppo(config_from_args(DPPOConfig, args))
    print(f"fine-tuned {run}: diffusion checkpoint {run / 'policy'}, curves {run / 'curves.png'}")
    return 0


def cmd_finetune_value(args) -> int:
    from robotrl.rl.value import ValueConfig, train_value

    run = train_value(config_from_args(ValueConfig, args))
    print(f"trained {run}: critic {run / 'critic'}; use it with eval --value {run}")
    return 0


def cmd_finetune_residual(args) -> int:
    run = finetune(config_from_args(FinetuneConfig, args))
    print(
        f"fine-tuned {run}: checkpoint {run / 'policy'}, curves {run / 'curves.png'}, "
        f"log {run / 'log.jsonl'}"
    )
    return 0


def register(sub) -> None:
    """Add `finetune residual` to the top-level subparsers `sub`."""
    finetune = sub.add_parser("finetune", help="RL fine-tuning of a trained policy")
    what = finetune.add_subparsers(dest="what", required=True)
    p = what.add_parser(
        "residual",
        help="residual RL (PPO or SAC) around a frozen chunked policy (resumes a run directory)",
    )
    add_config_args(p, FinetuneConfig)
    p.set_defaults(func=cmd_finetune_residual)
    from robotrl.rl.dppo import DPPOConfig

    p = what.add_parser(
        "dppo", help="DPPO: PPO on the diffusion policy's own denoising chain (resumes)"
    )
    add_config_args(p, DPPOConfig)
    p.set_defaults(func=cmd_finetune_dppo)
    from robotrl.rl.value import ValueConfig

    p = what.add_parser(
        "value", help="an IQL critic on a diffusion policy's chunks, for eval/deploy --value"
    )
    add_config_args(p, ValueConfig)
    p.set_defaults(func=cmd_finetune_value)
