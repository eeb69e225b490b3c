"""`robotrl bench ros`: observation -> command round trip through `RosEnv` and the sim node.

The sim robot node runs in its own process and stamps each joint state with the time it
describes; `RosEnv` ticks at `hz` and sends each command computed from the observation it
returned; the node echoes the time each command arrived (`/robotrl/sim/command_echo`). Round
trip = arrival of command k - stamp of the observation command k was computed from: transport
both ways, the env's own work (kinematics, IK) and the caller's.
"""

from __future__ import annotations

import os
import time

import numpy as np

from robotrl.drivers import process
from robotrl.drivers.ros import RosNode, from_stamp
from robotrl.errors import RobotrlError


def bench_ros(
    ticks: int = 3000,
    hz: float = 100.0,
    robot: str = "panda",
    task: str = "Reach",
    warmup: int = 100,
    publish_rate: float = 500.0,
    progress: bool = False,
) -> dict:
    from robotrl.drivers.ros_env import make_ros_env
    from robotrl.drivers.sim_node import COMMAND_ECHO_TOPIC

    node = process.start(
        process.node_command(
            "sim_robot",
            {"task": task, "robot": robot, "cameras": "", "publish_rate": publish_rate},
        )
    )
    env = echo = None
    try:
        env = make_ros_env(
            f"sim_{robot}", task=task, control_hz=hz, cameras=(), max_episode_steps=10**9
        )
        arrivals: dict[int, float] = {}  # the node's command count -> arrival time
        echo = RosNode(f"robotrl_bench_{os.getpid()}")
        from std_msgs.msg import Header

        def on_echo(msg):
            arrivals[int(msg.frame_id)] = from_stamp(msg.stamp)

        echo.node.create_subscription(Header, COMMAND_ECHO_TOPIC, on_echo, 100)
        echo.start()
        obs, info = env.reset(seed=0)
        time.sleep(0.2)
        rng = np.random.default_rng(0)
        high = np.array(env.robot.action.high)
        action = np.zeros(env.robot.action.dim)
        stamps, ages, periods, held = [], [], [], 0
        base = 0
        t_last = time.monotonic()
        for k in range(warmup + ticks):
            # a slow random walk: the arm moves, so IK runs on real poses
            action = np.clip(0.9 * action + 0.1 * rng.uniform(-high, high), -high, high)
            if k == warmup:  # let the warm-up's echoes land: the count after them is the base
                time.sleep(0.1)
                base, stamps = max(arrivals, default=0), []
                obs, _, _, _, info = env.step(action)
                base += 1  # that step's command
                t_last = time.monotonic()
            stamps.append(info["obs_stamp"])
            obs, _, _, _, info = env.step(action)
            t = time.monotonic()
            if k >= warmup:
                ages.append(info["obs_age"]["joint_states"])
                periods.append(t - t_last)
                held += info["held"]
            t_last = t
            if progress and k % 500 == 0:
                print(f"\rtick {k}/{warmup + ticks}", end="", flush=True)
        deadline = time.monotonic() + 2.0
        while max(arrivals) < base + ticks and time.monotonic() < deadline:
            time.sleep(0.01)
        pairs = [
            (arrivals[base + 1 + i], s) for i, s in enumerate(stamps) if base + 1 + i in arrivals
        ]
        if held:  # a held tick sends nothing: the count of commands no longer pairs up
            raise RobotrlError(
                f"{held} of {ticks} ticks were held (a stale stream): the sim node or this "
                f"process fell behind {hz:g} Hz; the round trip needs every tick sent"
            )
        if len(pairs) < ticks:
            raise RobotrlError(f"only {len(pairs)} of {ticks} commands reached the sim node")
        rtt = np.array([arrived - stamp for arrived, stamp in pairs]) * 1e3
        if progress:
            print("\r", end="")
        return {
            "ticks": ticks,
            "hz": hz,
            "achieved_hz": float(1.0 / np.mean(periods)),
            "median_ms": float(np.median(rtt)),
            "p99_ms": float(np.percentile(rtt, 99)),
            "max_ms": float(rtt.max()),
            "obs_age_median_ms": float(np.median(ages) * 1e3),
            "tick_period_p99_ms": float(np.percentile(periods, 99) * 1e3),
        }
    finally:
        if env is not None:
            env.close()
        if echo is not None:
            echo.close()
        process.stop(node)


def format_result(r: dict) -> str:
    return (
        f"RosEnv <-> sim robot node at {r['hz']:.0f} Hz ({r['achieved_hz']:.1f} achieved), "
        f"{r['ticks']} ticks: observation -> command round trip median {r['median_ms']:.2f} ms, "
        f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms; observation age median "
        f"{r['obs_age_median_ms']:.2f} ms"
    )
