"""CLI commands of the drivers: `robotrl launch` and `robotrl bench ros`.

Wired into `robotrl.cli.main.build_parser` by `register(sub, bench)`; nothing here imports
rclpy until a command runs.
"""

from __future__ import annotations

import json
import shlex

from robotrl.errors import RobotrlError


def cmd_launch(args) -> int:
    from robotrl.drivers.launch import parse_launch, run_launch

    overrides = {}
    for item in args.args:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise RobotrlError(f"launch arguments are name:=value, got '{item}'")
        overrides[name] = value
    procs = parse_launch(args.file, overrides)
    if args.print:
        for proc in procs:
            print(f"{proc.name}: {shlex.join(proc.cmd)}")
        return 0
    return run_launch(procs)


def cmd_bench_ros(args) -> int:
    from robotrl.drivers.bench import bench_ros, format_result

    if args.ticks < 1:
        raise RobotrlError(f"--ticks must be at least 1, got {args.ticks}")
    if not 0 < args.hz <= 1000:
        raise RobotrlError(f"--hz must be in (0, 1000] Hz, got {args.hz}")
    if args.ticks < 3000:
        print("robotrl: note: under 3000 ticks the p99 rests on few samples")
    result = bench_ros(
        ticks=args.ticks, hz=args.hz, robot=args.robot, task=args.task, progress=not args.json
    )
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


def register(sub, bench_sub) -> None:
    """Add `launch` to the top-level subparsers and `ros` to `bench`'s."""
    p = sub.add_parser("launch", help="run a ROS 2 launch file (YAML format) without ros2 launch")
    p.add_argument("file", help="e.g. launch/sim_robot.launch.yaml")
    p.add_argument("args", nargs="*", help="launch arguments as name:=value")
    p.add_argument("--print", action="store_true", help="print the commands, start nothing")
    p.set_defaults(func=cmd_launch)

    p = bench_sub.add_parser("ros", help="RosEnv <-> sim robot node round trip at 100 Hz")
    p.add_argument("--ticks", type=int, default=3000)
    p.add_argument("--hz", type=float, default=100.0)
    p.add_argument("--robot", default="panda")
    p.add_argument("--task", default="Reach")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_ros)


def main(argv: list[str] | None = None) -> int:
    """`python -m robotrl.drivers.commands launch ...` / `bench ros ...`: the same commands
    without the main CLI (for tests, and before main.py registers them)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="robotrl")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="what", required=True)
    register(sub, bench)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RobotrlError as e:
        print(f"robotrl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
