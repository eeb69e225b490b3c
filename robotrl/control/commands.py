"""CLI of the runtime: `robotrl deploy` and `robotrl bench loop`. `register` adds them to the
top-level subparsers and to the `bench` subparsers of `robotrl.cli.main.build_parser`."""

from __future__ import annotations

import argparse
import json

from robotrl.cli.config import add_config_args, config_from_args
from robotrl.control.chunking import STRATEGIES
from robotrl.control.deploy import DeployConfig


def cmd_deploy(args) -> int:
    from robotrl.control.deploy import deploy, format_deploy

    summary = deploy(config_from_args(DeployConfig, args))
    print(json.dumps(summary) if summary and args.json else format_deploy(summary))
    return 0


def cmd_bench_loop(args) -> int:
    from robotrl.control.bench import bench_loop, format_bench
    from robotrl.errors import RobotrlError

    try:
        rates = [float(h) for h in args.hz.split(",")]
    except ValueError:
        raise RobotrlError(f"--hz takes comma-separated rates, got '{args.hz}'") from None
    if args.ticks < 1:
        raise RobotrlError(f"--ticks must be at least 1, got {args.ticks}")
    if any(not 0 < hz <= 10_000 for hz in rates):
        raise RobotrlError(f"--hz rates must be in (0, 10000] Hz, got '{args.hz}'")
    rows = [
        bench_loop(
            hz,
            ticks=args.ticks,
            policy=args.policy,
            strategy=args.strategy,
            inference_threads=args.threads,
            inference=args.inference,
            realtime_sched=args.realtime_sched,
            switch_interval_s=args.switch_interval,
            telemetry=args.telemetry.replace("{hz}", f"{hz:g}") if args.telemetry else None,
        )
        for hz in rates
    ]
    print(json.dumps(rows, indent=2) if args.json else format_bench(rows))
    return 0


def register(sub, bench_sub) -> None:
    """Add `deploy` to the top-level subparsers `sub` and `loop` to the `bench` subparsers."""
    p = sub.add_parser("deploy", help="run a policy through the real-time control loop")
    add_config_args(p, DeployConfig)
    p.set_defaults(func=cmd_deploy)

    p = bench_sub.add_parser("loop", help="control-loop lateness while a policy infers")
    p.add_argument("--hz", default="100,500", help="comma-separated control rates")
    p.add_argument("--ticks", type=int, default=3000, help="ticks measured per rate")
    p.add_argument("--policy", default=None, help="checkpoint (default: an untrained network)")
    p.add_argument("--strategy", default="ensemble", choices=STRATEGIES)
    p.add_argument("--threads", type=int, default=1, help="torch threads for inference")
    p.add_argument("--inference", default="process", choices=("process", "thread"))
    p.add_argument(
        "--realtime-sched",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="SCHED_FIFO + mlockall for the loop thread, when allowed",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=0.0001,
        help="Python GIL switch interval while the loop runs (s; Python's default is 0.005)",
    )
    p.add_argument("--telemetry", default=None, help="JSONL per rate; {hz} in the name is replaced")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_loop)
