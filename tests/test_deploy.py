"""`robotrl deploy` and `robotrl bench loop` end to end (real MuJoCo, real threads, a tiny saved
policy), and the env spec parser."""

import argparse
import json
import sys

import numpy as np
import pytest
import torch

from robotrl.control.commands import register
from robotrl.control.deploy import DeployConfig, deploy
from robotrl.envs import make_env, parse_env_spec
from robotrl.errors import RobotrlError

FPS = 50.0  # Reach's 100 steps take two seconds at this rate


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="robotrl")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="what", required=True)
    register(sub, bench)
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def reach_checkpoint(tmp_path_factory):
    """A tiny untrained diffusion policy for Reach whose actions are millimetres."""
    from robotrl.policies.checkpoint import save_policy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    config = DiffusionConfig(
        obs_keys=("observation.state", "observation.environment_state"),
        obs_dims=(15, 3),
        action_dim=7,
        horizon=16,  # 8 actions executed per chunk: up to 160 ms of latency is absorbed
        n_action_steps=8,
        channels=(16, 32),
        fps=FPS,
        meta={"task": "Reach", "robot": "panda"},
    )
    high = np.array([0.002, 0.002, 0.002, 0, 0, 0, 0])
    torch.manual_seed(0)
    stats = [(-np.ones(15), np.ones(15)), (-np.ones(3), np.ones(3))]
    policy = DiffusionPolicy(config, stats, (-high, high))
    return save_policy(policy, tmp_path_factory.mktemp("deploy") / "policy")


@pytest.mark.parametrize("strategy", ["sync", "receding", "ensemble", "rtc"])
def test_deploy_runs_every_strategy_with_telemetry_and_plot(
    strategy, reach_checkpoint, tmp_path, capsys
):
    telemetry, plot = tmp_path / "ticks.jsonl", tmp_path / "plot.png"
    code, out = run_cli(
        [
            "deploy",
            *("--policy", str(reach_checkpoint), "--strategy", strategy, "--episodes", "1"),
            *("--inference-delay", "0.02", "--telemetry", str(telemetry), "--plot", str(plot)),
            *("--inference", "thread", "--no-status", "--json"),
        ],
        capsys,
    )
    summary = json.loads(out)
    assert code == 0 and summary["env"] == "sim:Reach" and summary["hz"] == FPS
    assert summary["episodes"] == 1 and summary["stopped"] is None
    ticks = [json.loads(line) for line in telemetry.read_text().splitlines()]
    assert len(ticks) == summary["mean_episode_steps"] == summary["telemetry"]["ticks"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert summary["telemetry"]["inference_ms"]["median"] >= 20.0  # the injected delay
    if strategy == "sync":
        assert summary["telemetry"]["waited_s"] > 0.02 * (len(ticks) / 8 - 1)
        assert summary["telemetry"]["dropped_actions"] == 0
    else:  # the loop kept ticking while the policy thought: it waited for the first chunk only
        assert summary["forecast"] is True  # chunks planned for the tick they land
        first_wait = summary["telemetry"]["inference_ms"]["max"] / 1e3 + 0.05  # + tick work
        assert summary["telemetry"]["waited_s"] <= first_wait
        assert summary["telemetry"]["held_ticks"] < len(ticks) / 4  # queue rarely ran dry


def test_deploy_without_forecast_drops_the_actions_whose_time_passed(reach_checkpoint, capsys):
    code, out = run_cli(
        [
            "deploy",
            *("--policy", str(reach_checkpoint), "--strategy", "receding", "--episodes", "1"),
            *("--inference-delay", "0.02", "--no-forecast", "--plot", ""),
            *("--inference", "thread", "--no-status", "--json"),
        ],
        capsys,
    )
    summary = json.loads(out)
    assert code == 0 and summary["forecast"] is False
    assert summary["telemetry"]["dropped_actions"] > 0


@pytest.mark.parametrize("strategy", ["sync", "receding"])
def test_deploy_in_virtual_time_charges_the_latency_in_sim_time(strategy, reach_checkpoint, capsys):
    """With 1 s of injected delay per chunk of a 2-second episode, `sync` stands still for
    each chunk's latency in sim time (and takes a fraction of that in wall time); `receding`
    keeps ticking and its episode lasts as many seconds as it has steps."""
    import time

    start = time.monotonic()
    code, out = run_cli(
        [
            "deploy",
            *("--policy", str(reach_checkpoint), "--strategy", strategy, "--episodes", "1"),
            *("--inference-delay", "1.0", "--virtual-time", "--plot", ""),
            *("--no-status", "--json"),
        ],
        capsys,
    )
    wall = time.monotonic() - start
    summary = json.loads(out)
    assert code == 0 and summary["inference"] == "virtual time"
    steps, episode_s = summary["mean_episode_steps"], summary["mean_episode_wall_s"]
    chunks = summary["telemetry"]["chunks"]
    assert summary["telemetry"]["inference_ms"]["median"] >= 1000.0  # the injected delay
    if strategy == "sync":  # the first chunk's wait comes before the episode's clock starts
        assert episode_s >= steps / FPS + 1.0 * (chunks - 1)
        assert wall < 0.5 * episode_s  # seconds of sim-time waiting cost no wall time
        assert summary["telemetry"]["dropped_actions"] == 0
    else:
        assert episode_s < steps / FPS + 0.1
        assert summary["telemetry"]["held_ticks"] > 0  # 1 s is longer than a chunk lasts


def test_virtual_time_is_for_sim_only(reach_checkpoint, capsys):
    argv = ["deploy", "--policy", str(reach_checkpoint), "--env", "ros:sim_panda"]
    with pytest.raises(RobotrlError, match="sim envs only"):
        run_cli([*argv, "--virtual-time"], capsys)


def test_deploy_with_the_policy_in_its_own_process(reach_checkpoint, capsys):
    # the default: inference in a child process that loads the checkpoint itself
    argv = ["deploy", "--policy", str(reach_checkpoint), "--episodes", "1", "--plot", ""]
    code, out = run_cli([*argv, "--no-status"], capsys)
    assert code == 0 and "sim:Reach, strategy rtc at 50 Hz: success" in out
    assert "lateness (ms)" in out and "inference (ms)" in out
    assert "chunks 0," not in out


def test_deploy_user_errors(reach_checkpoint, tmp_path, capsys):
    with pytest.raises(RobotrlError, match="acts at 50 Hz"):
        run_cli(["deploy", "--policy", str(reach_checkpoint), "--hz", "20"], capsys)
    with pytest.raises(RobotrlError, match="--policy is required"):
        run_cli(["deploy"], capsys)
    with pytest.raises(RobotrlError, match="--rtc-guidance 'diagonal'"):
        deploy(DeployConfig(policy=str(reach_checkpoint), rtc_guidance="diagonal"))
    with pytest.raises(RobotrlError, match="no checkpoint"):
        run_cli(["deploy", "--policy", str(tmp_path)], capsys)


def test_bench_loop_reports_lateness_per_rate(capsys):
    argv = ["bench", "loop", "--hz", "200", "--ticks", "200", "--inference", "thread", "--json"]
    code, out = run_cli(argv, capsys)
    [row] = json.loads(out)
    assert code == 0 and row["hz"] == 200 and row["ticks"] >= 199
    assert row["chunks"] >= 2  # a policy inferred concurrently
    assert set(row["lateness_ms"]) == {"n", "median", "p99", "max"}
    # the figure itself is `robotrl bench loop` on an idle machine; here only that the loop kept
    # time (median 0.86 ms seen with two busy loops and the test suite on two cores)
    assert row["lateness_ms"]["median"] < 2.0


def test_env_specs():
    assert parse_env_spec("PushT") == ("sim", "PushT")
    assert parse_env_spec("sim:Lift") == ("sim", "Lift")
    assert parse_env_spec("ros:configs/my_arm.yaml") == ("ros", "configs/my_arm.yaml")
    for bad in ("gazebo:Lift", "sim:", "ros:"):
        with pytest.raises(RobotrlError):
            parse_env_spec(bad)
    env = make_env("sim:Reach", obs_mode="state")
    assert env.robot.control_hz == 20
    env.close()


def test_ros_env_without_ros_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "robotrl.drivers.ros_env", None)  # import fails
    with pytest.raises(RobotrlError, match=r"pip install robotrl\[ros\]"):
        make_env("ros:sim_panda")
