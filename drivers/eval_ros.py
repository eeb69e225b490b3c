"""A policy trained in sim, deployed through ROS 2: success over episodes on `RosEnv` against
the sim robot node, every command through `safe(env)`, next to the same policy in the sim env
on the same seeds.

    python -m robotrl.drivers.eval_ros /tmp/runs/lift1 --episodes 20 [--json]

Stands in for `robotrl deploy --env ros:sim_panda` where that command is not there yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from robotrl.drivers import process


def evaluate_ros(
    policy_path: str, episodes: int = 20, seed: int | None = None, threads: int = 0
) -> dict:
    from robotrl.control.safety import safe
    from robotrl.drivers.ros_env import make_ros_env
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.evaluate import EVAL_SEED, check_compatible

    seed = EVAL_SEED if seed is None else seed
    if threads:  # leave cores to the robot: the sim node must keep real time
        import torch

        torch.set_num_threads(threads)
    policy = load_policy(policy_path)
    meta = policy.config.meta
    task, robot = meta.get("task", "Lift"), meta.get("robot", "panda")
    node = process.start(
        process.node_command("sim_robot", {"task": task, "robot": robot, "cameras": ""})
    )
    env = None
    try:
        env = make_ros_env(f"sim_{robot}", task=task, cameras=(), connect_timeout=60)
        check_compatible(policy, env)
        guarded = safe(env)
        results, interventions, late = [], 0, 0
        t0 = time.monotonic()
        for i in range(episodes):
            obs, _ = guarded.reset(seed=seed + i)
            policy.reset()
            steps, success = 0, False
            while True:
                obs, _, terminated, truncated, info = guarded.step(policy.select_action(obs))
                steps += 1
                interventions += sum(info["safety"].values())
                late += bool(info["stale"])
                if terminated or truncated:
                    success = bool(info["is_success"])
                    break
            results.append((success, steps))
            print(
                f"episode {i}: {'success' if success else 'failure'} in {steps} steps",
                file=sys.stderr,
                flush=True,
            )
        wall = time.monotonic() - t0
    finally:
        if env is not None:
            env.close()
        process.stop(node)
    return {
        "task": task,
        "robot": robot,
        "episodes": episodes,
        "success_rate": float(np.mean([s for s, _ in results])),
        "mean_episode_length": float(np.mean([n for _, n in results])),
        "safety_interventions": int(interventions),
        "stale_steps": int(late),
        "wall_s": wall,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-sim", action="store_true", help="skip the sim env comparison")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: all); 1 leaves a core to the sim node",
    )
    args = parser.parse_args(argv)
    ros = evaluate_ros(args.policy, args.episodes, threads=args.threads)
    out = {"ros": ros}
    if not args.no_sim:
        from robotrl.policies.checkpoint import load_policy
        from robotrl.policies.evaluate import evaluate

        out["sim"] = evaluate(
            load_policy(args.policy), ros["task"], ros["robot"], args.episodes, progress=False
        )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        sim = out.get("sim")
        print(
            f"{ros['task']} on {ros['robot']}: via ROS 2 {ros['success_rate']:.0%} over "
            f"{ros['episodes']} episodes (mean length {ros['mean_episode_length']:.1f})"
            + (f", in sim {sim['success_rate']:.0%}" if sim else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
