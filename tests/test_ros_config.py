"""Robot configs, launch files and trajectories: the parts of the drivers that need no ROS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robotrl.drivers.config import available, eval_angle, load_config, parse_config
from robotrl.drivers.launch import parse_launch
from robotrl.drivers.trajectory import Trajectory, home_trajectory
from robotrl.errors import RobotrlError, UnknownNameError


def test_shipped_configs_load():
    assert {"ur5e", "panda", "sim_panda", "sim_ur5e"} <= set(available())
    ur5e = load_config("ur5e")
    assert ur5e.joint_names[0] == "shoulder_pan_joint" and len(ur5e.home) == 6
    assert ur5e.command_topic == "/forward_position_controller/commands"
    assert ur5e.trajectory_topic == "/scaled_joint_trajectory_controller/joint_trajectory"
    assert ur5e.gripper.topic == "/gripper_controller/commands"
    panda = load_config("panda")
    assert panda.home[-1] == pytest.approx(math.pi / 4)
    for name in available():
        cfg = load_config(name)
        assert all(lo <= h <= hi for lo, h, hi in zip(cfg.joint_lower, cfg.home, cfg.joint_upper))


def test_trajectory_mode_topic():
    cfg = load_config("ur5e").replace(control_mode="trajectory", controller="jtc")
    assert cfg.command_topic == "/jtc/joint_trajectory"


@pytest.mark.parametrize(
    "text, value",
    [("pi", math.pi), ("-pi/2", -math.pi / 2), ("2*pi", 2 * math.pi), ("1.5pi", 1.5 * math.pi)],
)
def test_angles(text, value):
    assert eval_angle(text, "x") == pytest.approx(value)


@pytest.mark.parametrize("text", ["9**9**9", "__import__('os')", "pi+1", ""])
def test_angle_rejects_anything_else(text):
    with pytest.raises(RobotrlError, match="not a number"):
        eval_angle(text, "x")


def test_bad_configs_are_one_line(tmp_path):
    with pytest.raises(UnknownNameError, match="choose"):
        load_config("kuka")
    with pytest.raises(RobotrlError, match="no robot config"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("joints: [1, 2")
    with pytest.raises(RobotrlError, match="not valid YAML"):
        load_config(str(bad))
    base = {
        "name": "x",
        "robot_type": "x",
        "kinematics": "panda",
        "joints": {"names": ["a", "b"], "lower": -1, "upper": 1, "max_velocity": 1, "home": 0},
    }
    assert parse_config(base).joint_lower == (-1.0, -1.0)  # scalars broadcast per joint
    with pytest.raises(RobotrlError, match="unknown field colour"):
        parse_config({**base, "colour": "red"})
    with pytest.raises(RobotrlError, match="has 3 entries, 2 joints"):
        parse_config({**base, "joints": {**base["joints"], "home": [0, 0, 0]}})
    with pytest.raises(RobotrlError, match="control_mode"):
        parse_config({**base, "control_mode": "torque"})


def test_home_trajectory_respects_speed_limits():
    q, home = np.array([0.0, 1.0, -0.5]), np.array([1.0, 0.0, -0.5])
    vmax = np.array([0.5, 2.0, 1.0])
    times, points = home_trajectory(q, home, vmax, rate=50.0)
    np.testing.assert_allclose(points[-1], home)
    path = np.vstack([q, points])
    dt = np.diff(np.concatenate([[0.0], times]))
    speed = np.abs(np.diff(path, axis=0)) / dt[:, None]
    assert (speed <= vmax * 1.001).all()
    traj = Trajectory(10.0, q, times, points)
    np.testing.assert_allclose(traj.sample(10.0), q)
    np.testing.assert_allclose(traj.sample(10.0 + traj.duration + 1), home)
    assert home_trajectory(home, home, vmax, 50.0)[0].tolist() == [0.0]


def test_launch_files_parse_and_substitute(tmp_path, monkeypatch):
    procs = parse_launch("launch/teleop_record.launch.yaml", {"task": "PushT", "episodes": "3"})
    assert [p.name for p in procs] == ["sim_robot", "collect"]
    collect = procs[1]
    assert collect.cmd[1:3] == ["-m", "robotrl.cli.main"] and collect.shutdown_on_exit
    assert "--episodes" in collect.cmd and "3" in collect.cmd and "PushT" in collect.cmd
    assert "task:=PushT" in procs[0].cmd
    with pytest.raises(RobotrlError, match="argument 'policy' is required"):
        parse_launch("launch/deploy.launch.yaml")
    with pytest.raises(RobotrlError, match="no argument named nope"):
        parse_launch("launch/sim_robot.launch.yaml", {"nope": "1"})
    monkeypatch.setenv("ROBOTRL_TEST_TASK", "Reach")
    custom = tmp_path / "x.launch.yaml"
    custom.write_text(
        "launch:\n- node: {pkg: robotrl, exec: sim_robot, namespace: arm,\n"
        "    param: [{name: task, value: $(env ROBOTRL_TEST_TASK)}],\n"
        "    remap: [{from: /clock, to: /sim_clock}]}\n"
    )
    cmd = parse_launch(custom)[0].cmd
    assert "task:=Reach" in cmd and "/clock:=/sim_clock" in cmd and "__ns:=arm" in cmd
    custom.write_text("launch:\n- node: {pkg: ur_robot_driver, exec: ur_ros2_control_node}\n")
    with pytest.raises(RobotrlError, match="only pkg robotrl"):
        parse_launch(custom)
    custom.write_text("launch:\n- include: {file: other.launch.yaml}\n")
    with pytest.raises(RobotrlError, match="not supported"):
        parse_launch(custom)
