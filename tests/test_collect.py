"""`robotrl collect`: the expert fills a dataset; a human at a real terminal (tmux) records one."""

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from robotrl.data.dataset import Dataset

ROBOTRL = [sys.executable, "-m", "robotrl.cli.main"]


def test_collect_with_expert_appends(tmp_path):
    out = tmp_path / "demos"
    for _ in range(2):  # the second run resumes the same dataset
        result = subprocess.run(
            [
                *ROBOTRL,
                "collect",
                "--task",
                "Reach",
                "--teleop",
                "expert",
                "--episodes",
                "3",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    dataset = Dataset(out)
    assert dataset.num_episodes == 6
    assert all(e["success"] for e in dataset.episodes)
    assert dataset.episodes[0]["length"] < 40


def test_action_noise_is_executed_and_the_clean_action_recorded(tmp_path):
    """DART: replaying the recorded actions plus the same per-episode noise through a fresh
    env behind the safety layer reproduces the recorded observations, which holds only if the
    noise was executed and the dataset kept the expert's own actions."""
    from robotrl.collect import ActionNoise, CollectConfig, collect
    from robotrl.control import safe
    from robotrl.tasks import make

    out = tmp_path / "dart"
    cfg = CollectConfig(task="Reach", teleop="expert", episodes=1, out=str(out))
    collect(CollectConfig(**{**vars(cfg), "action_noise": 0.02}))
    collect(CollectConfig(**{**vars(cfg), "out": str(tmp_path / "clean")}))
    noisy, clean = Dataset(out).episode(0), Dataset(tmp_path / "clean").episode(0)
    n = min(len(noisy["action"]), len(clean["action"]))
    assert np.abs(noisy["observation.state"][:n] - clean["observation.state"][:n]).max() > 1e-3

    env = safe(make("Reach"))
    obs, _ = env.reset(seed=0)
    noise = ActionNoise(0.02, 0)
    for t, action in enumerate(noisy["action"]):
        np.testing.assert_allclose(obs["state"], noisy["observation.state"][t], atol=1e-5)
        obs, *_ = env.step(noise(action))


def test_past_success_records_the_goal_held_for_a_success_classifier(tmp_path):
    from robotrl.collect import CollectConfig, collect

    cfg = CollectConfig(task="Reach", teleop="expert", episodes=2, out=str(tmp_path / "d"))
    collect(CollectConfig(**{**vars(cfg), "past_success": 5}))
    collect(CollectConfig(**{**vars(cfg), "out": str(tmp_path / "plain")}))
    held, plain = Dataset(tmp_path / "d"), Dataset(tmp_path / "plain")
    for e in range(2):
        success = held.episode(e)["next.success"].reshape(-1).astype(bool)
        assert held.episodes[e]["length"] == plain.episodes[e]["length"] + 5
        first = int(np.argmax(success))
        assert first == plain.episodes[e]["length"] - 1 and success[first:].sum() >= 4


def test_collect_rejects_bad_device_cleanly(tmp_path):
    result = subprocess.run(
        [*ROBOTRL, "collect", "--teleop", "joystick", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown teleop device 'joystick'" in result.stderr
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*.parquet"))


def test_success_coverage_records_pusht_demos_past_the_tasks_line(tmp_path):
    from robotrl.collect import CollectConfig, collect

    lengths = {}
    for line in (None, 0.99):
        out = tmp_path / str(line)
        cfg = CollectConfig(task="PushT", teleop="expert", episodes=1, out=str(out),
                            action_mode="ee_pos", success_coverage=line)  # fmt: skip
        assert collect(cfg).successes == 1
        lengths[line] = Dataset(out).episodes[0]["length"]
    assert lengths[0.99] > lengths[None]  # the expert went on refining past 0.95

    result = subprocess.run(
        [*ROBOTRL, "collect", "--task", "Lift", "--teleop", "expert", "--success-coverage",
         "0.97", "--out", str(tmp_path / "lift")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--success-coverage is a PushT option" in result.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by `make test`")
def test_keyboard_collect_in_a_real_terminal(tmp_path):
    out, session = tmp_path / "kbd", f"robotrl-test-{time.monotonic_ns()}"
    command = " ".join(
        [
            *ROBOTRL,
            "collect",
            "--task",
            "Reach",
            "--teleop",
            "keyboard",
            "--episodes",
            "1",
            "--out",
            str(out),
            "--max-seconds",
            "60",
        ]
    )
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "20",
            f"{command}; echo EXIT=$?; sleep 30",
        ],
        check=True,
    )
    try:
        screen = _wait_for(session, "step")  # the status line is up: the device is reading keys
        for key in ["w", "w", "w", "a", "a", "r"]:
            subprocess.run(["tmux", "send-keys", "-t", session, key], check=True)
            time.sleep(0.25)
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)  # success
        screen = _wait_for(session, "EXIT=")
        assert "EXIT=0" in screen and "saved 1 episodes" in screen, screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    dataset = Dataset(out)
    assert dataset.num_episodes == 1 and dataset.episodes[0]["success"]
    actions = dataset.episode(0)["action"]
    assert (actions[:, 0] > 0).sum() >= 3  # "w" moved +x for a while
    assert (actions[:, 1] > 0).any() and (actions[:, 2] > 0).any()  # "a" +y, "r" +z
    timestamps = dataset.episode(0)["timestamp"]
    assert np.median(np.diff(timestamps)) == pytest.approx(0.05, abs=0.01)  # paced, 20 Hz
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 1


def _wait_for(session: str, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"'{text}' never appeared; screen:\n{screen}")


def test_status_line_shows_the_rate_only_once_measured_and_says_when_resetting(capsys):
    from robotrl.collect import CollectConfig, CollectSummary, StatusLine

    status, summary = StatusLine(CollectConfig(task="Reach", episodes=2), 0), CollectSummary()
    status.resetting(summary)
    assert "episode 1/2  waiting for the env to reset" in capsys.readouterr().err
    status.update(summary, 1, None)
    first = capsys.readouterr().err
    assert "step    1  saved 0" in first and "Hz" not in first
    status._last = 0.0  # past the ten-a-second limit
    status.update(summary, 2, 19.8)
    assert "step    2    19.8 Hz" in capsys.readouterr().err
