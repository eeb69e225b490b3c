"""Bad input: one clear line, non-zero exit, no traceback — and a clear exception in the API."""

import subprocess
import sys

import numpy as np
import pytest

from robotrl.errors import InvalidActionError, UnknownNameError
from robotrl.tasks import make


def test_wrong_action_shape():
    env = make("Lift")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"shape \(3,\), expected \(7,\)"):
        env.step(np.zeros(3))


def test_nan_action_names_the_entry():
    env = make("Lift")
    env.reset(seed=0)
    action = np.zeros(7)
    action[2] = np.nan
    with pytest.raises(InvalidActionError, match="ee.dz"):
        env.step(action)
    action[2] = np.inf
    with pytest.raises(InvalidActionError):
        env.step(action)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"obs_mode": "depth"}, "unknown obs_mode"),
        ({"action_mode": "torque"}, "unknown action mode"),
        ({"control_hz": 5000}, "control_hz"),
        ({"obs_mode": "pixels", "cameras": ("side",)}, "unknown camera 'side'"),
    ],
)
def test_bad_env_arguments(kwargs, match):
    with pytest.raises(Exception, match=match):
        make("Reach", **kwargs)


def test_unknown_task():
    with pytest.raises(UnknownNameError, match="unknown task 'Stack'"):
        make("Stack")


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "robotrl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["rollout", "--task", "Stack"], "unknown task 'Stack'"),
        (["rollout", "--task", "Lift", "--robot", "kuka"], "unknown robot 'kuka'"),
        (["rollout", "--task", "Lift", "--robot", "/nonexistent/arm.xml"], "robot MJCF not found"),
        (["rollout", "--task", "Lift", "--policy", "ghost"], "unknown policy 'ghost'"),
        (["rollout", "--task", "Lift", "--episodes", "0"], "--episodes must be at least 1"),
        (["rollout", "--episodes", "abc"], "invalid int value: 'abc'"),
        (["launch", "/nonexistent/x.launch.yaml"], "no launch file at"),
    ],
)
def test_cli_errors_are_one_line(args, message):
    result = _cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_cli_json_of_the_wrong_type_as_a_process(tmp_path):
    """The exit code and the one line from a real process (the in-process suite is
    tests/test_bad_input_cli.py): a dataset whose meta/info.json is a list."""
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/info.json").write_text("[]")
    result = _cli("dataset", "info", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "holds a list where an object belongs" in lines[0]
    assert (tmp_path / "meta/info.json").read_text() == "[]"
