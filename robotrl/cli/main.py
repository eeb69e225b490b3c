"""`robotrl` command line. User mistakes end in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from robotrl.cli.config import Parser, add_config_args, config_from_args, os_error
from robotrl.collect import CollectConfig
from robotrl.errors import RobotrlError
from robotrl.policies.evaluate import EVAL_SEED
from robotrl.rollout import RolloutConfig


def cmd_tasks(args) -> int:
    from robotrl.tasks import TASKS, task_class

    rows = []
    for name in TASKS:
        cls = task_class(name)
        doc = (cls.__module__ and sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        rows.append(
            {
                "task": name,
                "id": f"robotrl/{name}-v0",
                "control_hz": cls.default_control_hz,
                "max_episode_steps": cls.max_episode_steps,
                "tool": cls.tool,
                "description": doc[0] if doc else "",
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(
                f"{r['id']:<22} {r['control_hz']:>4.0f} Hz  {r['max_episode_steps']:>4} steps  "
                f"{r['description']}"
            )
    return 0


def cmd_rollout(args) -> int:
    from robotrl.rollout import rollout
    from robotrl.video import write_mp4

    cfg = config_from_args(RolloutConfig, args)
    summary, frames = rollout(cfg)
    if cfg.video:
        from robotrl.tasks import task_class

        write_mp4(cfg.video, frames, fps=task_class(cfg.task).default_control_hz)
    if cfg.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(
            f"{summary.task} on {summary.robot}, policy {summary.policy}: "
            f"success {summary.success_rate:.0%} over {summary.episodes} episodes, "
            f"mean length {summary.mean_episode_length:.1f} steps, "
            f"{summary.env_steps_per_s:.0f} env steps/s"
            + (f", video {cfg.video}" if cfg.video else "")
        )
    return 0


def cmd_bench_sim(args) -> int:
    from robotrl.sim.bench import bench_sim, format_table

    if args.backend == "warp":
        from robotrl.sim.warp_bench import bench_warp, format_warp_table

        worlds = tuple(int(n) for n in args.worlds.split(","))
        tasks = tuple(args.tasks.split(","))
        rows = bench_warp(tasks, worlds, args.warp_steps, args.device, progress=not args.json)
        print(json.dumps(rows, indent=2) if args.json else format_warp_table(rows))
        return 0
    rows = []
    for robot in args.robot.split(","):
        rows += bench_sim(robot, args.steps, args.pixel_steps, progress=not args.json)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_collect(args) -> int:
    from robotrl.collect import CollectConfig, collect

    cfg = config_from_args(CollectConfig, args)
    if cfg.ray:
        from robotrl.ray_episodes import collect_on_ray

        summary = collect_on_ray(cfg)
    else:
        summary = collect(cfg)
    fps = f", median {np.median(summary.achieved_fps):.1f} fps" if summary.achieved_fps else ""
    print(
        f"saved {summary.saved} episodes ({summary.successes} successful) to {args.out}, "
        f"discarded {summary.discarded}, {summary.wall_time_s:.1f} s{fps}"
    )
    return 0


def cmd_dataset(args) -> int:
    from robotrl.data.dataset import Dataset

    if args.what == "merge":
        from robotrl.data.edit import merge

        print(f"wrote {merge(args.sources, args.out)}")
        return 0
    if args.what == "drop":
        from robotrl.data.edit import drop

        episodes = _episode_list(args.episodes)
        print(f"dropped {len(episodes)} episodes: {drop(args.root, episodes, args.out)}")
        return 0
    dataset = Dataset(args.root)
    if args.what == "info":
        from robotrl.data.view import format_summary, summary

        info = summary(dataset)
        print(json.dumps(info, indent=2) if args.json else format_summary(info))
        return 0
    if args.rerun or args.save:
        from robotrl.viz import view_dataset

        view_dataset(dataset, _episode_list(args.episode), args.save)
        print(f"wrote {args.save}" if args.save else "sent to the rerun viewer")
        return 0
    from robotrl.data.view import view_episode

    episodes = _episode_list(args.episode)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise RobotrlError(f"--out {args.out} is a file: it names a directory for plots and video")
    for episode in episodes:
        for path in view_episode(dataset, episode, args.out):
            print(f"wrote {path}")
    return 0


def _episode_list(text: str) -> set[int]:
    try:
        episodes = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise RobotrlError(f"episodes must be comma-separated integers, got '{text}'") from None
    if not episodes:
        raise RobotrlError("no episode given: name one or more, e.g. 0 or 0,3,7")
    return episodes


def cmd_bench_data(args) -> int:
    from robotrl.data.bench import bench_loader, format_table

    if args.batch_size < 1:
        raise RobotrlError(f"--batch-size must be at least 1, got {args.batch_size}")
    rows = [r for root in args.roots for r in bench_loader(root, batch_size=args.batch_size)]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_train(args) -> int:
    from robotrl.policies.distributed import ranks
    from robotrl.policies.train import TrainConfig, train

    run = train(config_from_args(TrainConfig, args))
    if ranks().main:  # under torchrun: one line, not one per process
        print(f"trained {run}: checkpoint {run / 'policy'}, curves {run / 'curves.png'}")
    return 0


def cmd_distill(args) -> int:
    from robotrl.policies.distill import DistillConfig, distill
    from robotrl.policies.distributed import ranks

    run = distill(config_from_args(DistillConfig, args))
    if ranks().main:
        print(f"distilled {run}: checkpoint {run / 'policy'}, curves {run / 'curves.png'}")
    return 0


def cmd_bench_policy(args) -> int:
    from robotrl.policies.bench import bench_policy, format_table

    if args.repeats < 1:
        raise RobotrlError(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads < 0:
        raise RobotrlError(f"--threads must be 0 (all cores) or more, got {args.threads}")
    if args.cameras and args.policy:
        raise RobotrlError("--cameras picks the untrained camera network: drop it with --policy")
    rows = bench_policy(args.policy, args.repeats, args.threads, cameras=args.cameras)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_eval(args) -> int:
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.evaluate import evaluate

    policy = load_policy(args.policy)
    if args.sampler and policy.kind != "diffusion":
        raise RobotrlError(
            f"--sampler is for diffusion policies; a {policy.kind} policy takes --steps"
        )
    if args.sampler or args.steps:
        policy.set_sampler(args.sampler or "ddim", args.steps or policy.sampler_steps)
    if args.value:
        from robotrl.rl.value_guided import ValueGuidedPolicy

        policy = ValueGuidedPolicy.build(args.policy, args.value, args.candidates or 8, policy)
    elif args.candidates:
        policy.config.candidates = args.candidates
    if args.warm_sigma is not None:
        if policy.kind != "consistency":
            raise RobotrlError(f"--warm-sigma is for consistency policies, not {policy.kind}")
        policy.config.warm_sigma = args.warm_sigma
    task = args.task or policy.config.meta.get("task")
    if not task:
        raise RobotrlError("--task is required: the checkpoint does not say which task it is for")
    from robotrl.tasks import task_name

    task_name(task)  # an unknown task ends here, before any worker starts
    robot = args.robot or policy.config.meta.get("robot") or "panda"
    if args.backend != "mujoco":
        from robotrl.policies.evaluate_vector import evaluate_batched

        result = evaluate_batched(policy, task, robot, args)
    else:
        result = evaluate(
            policy,
            task,
            robot,
            args.episodes,
            seed=args.seed,
            video=args.video,
            progress=not args.json,
            workers=args.workers or os.cpu_count() or 1,
            ray=args.ray,
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['task']} on {robot}: success {result['success_rate']:.0%} over "
            f"{result['episodes']} unseen episodes, mean best score {result['mean_score']:.3f}, "
            f"mean length {result['mean_episode_length']:.1f}"
        )
    return 0


def cmd_demo(args) -> int:
    from robotrl.demo import DemoConfig, run_demo

    run_demo(config_from_args(DemoConfig, args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="robotrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list the tasks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("rollout", help="run a policy on a task and summarise it")
    add_config_args(p, RolloutConfig)
    p.set_defaults(func=cmd_rollout)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    p = bench.add_parser("sim", help="env steps/s per task vs a raw mj_step loop")
    p.add_argument("--robot", default="panda,ur5e", help="comma-separated arms")
    p.add_argument("--steps", type=int, default=3000, help="steps per state-obs run")
    p.add_argument("--pixel-steps", type=int, default=500, help="steps per pixel-obs run")
    p.add_argument(
        "--backend",
        default="mujoco",
        choices=("mujoco", "warp"),
        help="mujoco (one C model per env) or warp (MuJoCo Warp, many worlds)",
    )
    p.add_argument("--worlds", default="1,64,512", help="warp: comma-separated world counts")
    p.add_argument("--tasks", default="Lift", help="warp: comma-separated tasks")
    p.add_argument("--warp-steps", type=int, default=200, help="warp: control steps per run")
    p.add_argument("--device", default="cpu", help="warp: Warp device, cpu or cuda:0")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_sim)
    p = bench.add_parser("data", help="training windows/s from datasets, state and video")
    p.add_argument("roots", nargs="+", help="dataset directories")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_data)

    p = sub.add_parser("collect", help="record demonstrations from a teleop device or the expert")
    add_config_args(p, CollectConfig)
    p.set_defaults(func=cmd_collect)

    data = sub.add_parser("dataset", help="inspect and edit datasets")
    data_sub = data.add_subparsers(dest="what", required=True)
    p = data_sub.add_parser("info", help="summary of a dataset")
    p.add_argument("root")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset)
    p = data_sub.add_parser("view", help="plot episodes (PNG) and export their camera video")
    p.add_argument("root")
    p.add_argument("--episode", default="0", help="episode index, or several: 0,3,7")
    p.add_argument("--out", default="out/view")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="instead of PNG/MP4: cameras, state and action on one timeline in the rerun "
        "viewer (needs robotrl[viz])",
    )
    p.add_argument(
        "--save",
        default=None,
        help="write the rerun recording to this .rrd file instead of opening a viewer "
        "(implies --rerun)",
    )
    p.set_defaults(func=cmd_dataset)
    p = data_sub.add_parser("merge", help="concatenate datasets into a new one")
    p.add_argument("sources", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_dataset)
    p = data_sub.add_parser("drop", help="remove episodes (in place unless --out)")
    p.add_argument("root")
    p.add_argument("--episodes", required=True, help="comma-separated episode indices")
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_dataset)

    from robotrl.policies.train import TrainConfig

    p = sub.add_parser("train", help="train a policy on a dataset (resumes a run directory)")
    add_config_args(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    from robotrl.policies.distill import DistillConfig

    p = sub.add_parser("distill", help="distill a diffusion run into a consistency policy")
    add_config_args(p, DistillConfig)
    p.set_defaults(func=cmd_distill)

    p = bench.add_parser("policy", help="chunk latency: DDPM-100, DDIM-10, consistency 1/3-step")
    p.add_argument("--policy", default=None, help="checkpoint (default: an untrained network)")
    p.add_argument(
        "--cameras",
        action="store_true",
        help="without --policy: the camera network (two 96x96 cameras + the robot state, "
        "image encoder included in each chunk's time) instead of the state network",
    )
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_policy)

    p = sub.add_parser("eval", help="success rate of a checkpoint on a task, unseen seeds")
    p.add_argument("--policy", required=True, help="checkpoint or run directory")
    p.add_argument("--task", default=None, help="default: the task it was trained on")
    p.add_argument("--robot", default=None)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument(
        "--seed",
        type=int,
        default=EVAL_SEED,
        help=f"seed of the first episode (env and sampling noise; default {EVAL_SEED}: unseen)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes sharing the episodes (same figures for any number; 0: one per core)",
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="share the episodes over a Ray cluster instead (ADDRESS, auto, or local; same "
        "figures as --workers; extra [dist])",
    )
    p.add_argument("--sampler", default=None, choices=("ddpm", "ddim", "dpm"))
    p.add_argument("--steps", type=int, default=None, help="sampling steps (network evals)")
    p.add_argument(
        "--candidates",
        type=int,
        default=None,
        help="chunks sampled per plan; the one continuing the last chunk best is executed "
        "(a consistency policy warm-starts instead unless --warm-sigma 0); with --value: the "
        "one the critic ranks highest (default 8)",
    )
    p.add_argument(
        "--value",
        default=None,
        metavar="RUN",
        help="a `finetune value` run: its critic picks among --candidates chunks (IDQL/V-GPS)",
    )
    p.add_argument(
        "--warm-sigma",
        type=float,
        default=None,
        help="consistency: noise level the previous chunk is re-noised to (0: plan from noise)",
    )
    p.add_argument("--video", default=None, help="write an MP4 of the first episode")
    p.add_argument(
        "--backend",
        default="mujoco",
        help="mujoco (one MuJoCo C env per episode) or warp[:DEVICE] (--envs MuJoCo Warp "
        "worlds at once, each its own seeded stream; state policies)",
    )
    p.add_argument("--envs", type=int, default=50, help="warp: worlds at once")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    from robotrl.drivers.commands import register as register_drivers

    register_drivers(sub, bench)

    from robotrl.control.commands import register as register_runtime

    register_runtime(sub, bench)

    from robotrl.rl.hil_commands import register as register_hil

    register_hil(sub)

    from robotrl.rl.commands import register as register_rl

    register_rl(sub)

    from robotrl.demo import DemoConfig

    p = sub.add_parser("demo", help="the main job: demos -> diffusion -> consistency -> report")
    add_config_args(p, DemoConfig)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RobotrlError as e:
        print(f"robotrl: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: missing, a file, a directory, read-only
        print(f"robotrl: error: {os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robotrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
