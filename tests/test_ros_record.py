"""A teleop recording through ROS 2 (the sim robot node, its scripted expert published as a
teleop device, `robotrl collect --env ros:sim_panda --teleop ros`) gives a dataset with the
same schema as a recording from the sim env; and `robotrl launch` starts, forwards signals to
and cleans up its processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy")

from robotrl.drivers import process  # noqa: E402

# This process's own ROS domain. conftest's `setdefault` is inherited by pytest-xdist workers
# from the controller (one domain for all of them), so each worker picks its own here.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)


def test_ros_teleop_recording_has_the_sim_schema(tmp_path):
    from robotrl.collect import CollectConfig, collect
    from robotrl.data.dataset import Dataset

    node = process.start(
        process.node_command(
            "sim_robot", {"task": "Reach", "robot": "panda", "cameras": "", "expert": True}
        )
    )
    try:
        ros = collect(
            CollectConfig(
                task="Reach",
                teleop="ros",
                env="ros:sim_panda",
                episodes=2,
                out=str(tmp_path / "ros"),
                max_seconds=90,
            )
        )
    finally:
        process.stop(node)
    sim = collect(
        CollectConfig(task="Reach", teleop="expert", episodes=1, out=str(tmp_path / "sim"))
    )
    assert ros.saved == 2 and ros.successes == 2, ros
    assert sim.saved == 1
    a, b = Dataset(tmp_path / "ros"), Dataset(tmp_path / "sim")
    assert a.info["features"] == b.info["features"]
    assert a.info["fps"] == b.info["fps"] and a.info["robot_type"] == b.info["robot_type"]
    assert all(e["success"] for e in a.episodes)


def test_launch_runs_cleans_up_and_forwards_signals(tmp_path):
    from robotrl.drivers.launch import parse_launch

    procs = parse_launch("launch/sim_robot.launch.yaml", {"task": "Reach", "cameras": ""})
    assert [p.name for p in procs] == ["sim_robot"]
    assert "task:=Reach" in procs[0].cmd
    for name in ("camera", "teleop_record", "deploy"):  # every shipped file parses
        parse_launch(f"launch/{name}.launch.yaml", {"policy": "p"} if name == "deploy" else {})

    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "robotrl.drivers.commands",  # `robotrl launch` before main.py wires it in
            "launch",
            "launch/sim_robot.launch.yaml",
            "task:=Reach",
            "cameras:=",
        ],
        env=process.child_env(),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        from robotrl.drivers.ros_env import make_ros_env

        env = make_ros_env("sim_panda", task="Reach", cameras=(), connect_timeout=60)
        env.close()  # the node came up and speaks ROS
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=30)
    finally:
        process.stop(launcher)
    assert launcher.returncode == 0, err
    pids = [
        int(line.split(" pid ")[1].split(":")[0]) for line in err.splitlines() if " pid " in line
    ]
    assert pids, err
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
