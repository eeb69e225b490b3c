"""Bad input through the Python API: robot configs, envs, datasets, videos, checkpoints and
RosEnv arguments. Each raises a `RobotrlError` with one line (what the CLI prints), and a
file it was given is left byte for byte as it was."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from robotrl.errors import RobotrlError

BASE = {
    "name": "arm",
    "robot_type": "ur5e",
    "kinematics": "ur5e",
    "joints": {
        "names": ["a", "b", "c", "d", "e", "f"],
        "lower": "-pi",
        "upper": "pi",
        "max_velocity": 1.0,
        "home": 0.0,
    },
    "gripper": {"joint": "finger", "open": 0.04, "closed": 0.0},
    "cameras": [{"name": "front", "image_topic": "/cam/image"}],
}
CAMERA = BASE["cameras"][0]


def joints(**changes):
    return {**BASE, "joints": {**BASE["joints"], **changes}}


# (id, the config as YAML data, what the one line must say)
CONFIGS = [
    ("top-list", [1, 2], "expected a mapping"),
    ("names-text", joints(names="a,b,c"), "joints.names must be a list"),
    ("names-empty", joints(names=[]), "joints.names must be a list"),
    ("names-twice", joints(names=["a", "a", "c", "d", "e", "f"]), "names a joint twice"),
    ("lower-mapping", joints(lower={"a": 1}), "must be a number or a list"),
    ("lower-count", joints(lower=[0, 0]), "has 2 entries, 6 joints"),
    ("lower-text", joints(lower="low"), "not a number or a multiple of pi"),
    ("lower-above-upper", joints(lower=1, upper=0), "lower > upper"),
    ("home-outside", joints(home=[4, 0, 0, 0, 0, 0]), "home is outside the limits for a"),
    ("velocity-0", joints(max_velocity=0), "max_velocity must be positive"),
    ("state-rate-0", {**BASE, "state_rate": 0}, "state_rate must be positive"),
    ("control-hz-neg", {**BASE, "control_hz": -20}, "control_hz must be positive"),
    ("control-hz-text", {**BASE, "control_hz": "fast"}, "control_hz must be a number"),
    ("steps-0", {**BASE, "max_episode_steps": 0}, "max_episode_steps must be positive"),
    ("steps-fraction", {**BASE, "max_episode_steps": 2.5}, "must be a whole number"),
    ("controller-number", {**BASE, "controller": 5}, "controller must be a string"),
    ("action-mode", {**BASE, "action_mode": "torque"}, "action_mode must be one of"),
    ("control-mode", {**BASE, "control_mode": "torque"}, "control_mode must be one of"),
    ("unknown-field", {**BASE, "colour": "red"}, "unknown field colour"),
    ("gripper-list", {**BASE, "gripper": [1]}, "gripper: expected a mapping"),
    (
        "gripper-same",
        {**BASE, "gripper": {"joint": "f", "open": 0.0, "closed": 0.0}},
        "open and closed are the same",
    ),
    (
        "gripper-rate-0",
        {**BASE, "gripper": {"joint": "f", "state_topic": "/g", "state_rate": 0}},
        "gripper: state_rate must be positive",
    ),
    ("cameras-mapping", {**BASE, "cameras": {"front": CAMERA}}, "cameras must be a list"),
    ("camera-height-0", {**BASE, "cameras": [{**CAMERA, "height": 0}]}, "height must be positive"),
    ("camera-rate-neg", {**BASE, "cameras": [{**CAMERA, "rate": -30}]}, "rate must be positive"),
    ("cameras-same-name", {**BASE, "cameras": [CAMERA, CAMERA]}, "two cameras have one name"),
]


def snapshot(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def one_line(error: pytest.ExceptionInfo, message: str) -> None:
    text = str(error.value)
    assert "\n" not in text and message in text, text


def test_the_base_config_is_good():
    from robotrl.drivers.config import parse_config

    assert parse_config(BASE).joint_names == ("a", "b", "c", "d", "e", "f")


@pytest.mark.parametrize("raw, message", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_bad_robot_config(raw, message, tmp_path):
    from robotrl.drivers.config import load_config

    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(raw))
    before = snapshot(tmp_path)
    with pytest.raises(RobotrlError) as error:
        load_config(str(path))
    one_line(error, message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "what, message",
    [("directory", "cannot read the robot config"), ("binary", "not a text (YAML) file")],
)
def test_robot_config_path_that_is_not_a_yaml_file(what, message, tmp_path):
    from robotrl.drivers.config import load_config

    path = tmp_path / "arm.yaml"
    if what == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(RobotrlError) as error:
        load_config(str(path))
    one_line(error, message)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"control_hz": 0}, "control_hz 0.0 must be in"),
        ({"control_hz": -5}, "control_hz -5.0 must be in"),
        ({"obs_mode": "pixels", "image_size": (0, 96)}, "image_size must be"),
        ({"obs_mode": "pixels", "image_size": (96,)}, "image_size must be"),
        ({"max_episode_steps": 0}, "max_episode_steps must be at least 1"),
        ({"render_mode": "human"}, "unknown render_mode 'human'"),
        ({"robot": "/nonexistent/arm.xml"}, "robot MJCF not found"),
    ],
)
def test_bad_sim_env(kwargs, message):
    from robotrl.tasks import make

    with pytest.raises(RobotrlError) as error:
        make("Reach", **kwargs)
    one_line(error, message)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from tests.test_data import record

    root = tmp_path_factory.mktemp("api_bad_input") / "ds"
    record(root, task="Reach", episodes=1)
    return root


@pytest.mark.parametrize(
    "rel, content, message",
    [
        ("meta/info.json", "[]", "holds a list where an object belongs"),
        ("meta/info.json", "3", "holds a number where an object belongs"),
        ("meta/info.json", "null", "holds null where an object belongs"),
        ("meta/stats.json", '["mean"]', "holds a list where an object belongs"),
        ("meta/stats.json", '{"action": [1, 2]}', "statistics must be an object"),
    ],
)
def test_dataset_json_of_the_wrong_type(dataset, rel, content, message, tmp_path):
    import shutil

    from robotrl.data.dataset import Dataset

    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    (root / rel).write_text(content)
    before = snapshot(tmp_path)
    with pytest.raises(RobotrlError) as error:
        Dataset(root).stats  # noqa: B018  (reading the statistics is the point)
    one_line(error, message)
    assert snapshot(tmp_path) == before


def test_recorder_onto_a_file(tmp_path):
    from robotrl.data.recorder import Recorder
    from robotrl.tasks import make

    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(RobotrlError) as error:
        Recorder(make("Reach"), path)
    one_line(error, "is a file, not a dataset directory")
    assert path.read_text() == "mine" and snapshot(tmp_path) == {"notes.txt": b"mine"}


@pytest.mark.parametrize(
    "where, frames, message",
    [
        ("dir", [np.zeros((16, 16, 3), np.uint8)], "is a directory"),
        ("under-file", [np.zeros((16, 16, 3), np.uint8)], "cannot write the video"),
        ("ok", [], "no frames to write"),
    ],
)
def test_bad_video_output(where, frames, message, tmp_path):
    from robotrl.video import write_mp4

    (tmp_path / "f").write_text("x")
    path = {"dir": tmp_path, "under-file": tmp_path / "f/v.mp4", "ok": tmp_path / "v.mp4"}[where]
    with pytest.raises(RobotrlError) as error:
        write_mp4(path, frames, fps=10)
    one_line(error, message)
    assert snapshot(tmp_path) == {"f": b"x"}


@pytest.mark.parametrize("config", ["[]", '"diffusion"', '{"policy": "diffusion", "config": 3}'])
def test_checkpoint_config_of_the_wrong_type(config, tmp_path):
    from robotrl.policies.checkpoint import load_policy

    (tmp_path / "config.json").write_text(config)
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    before = snapshot(tmp_path)
    with pytest.raises(RobotrlError) as error:
        load_policy(tmp_path)
    one_line(error, "corrupt checkpoint")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"control_hz": -10}, "control_hz must be a positive number"),
        ({"stale_periods": 0}, "stale_periods must be at least 1"),
        ({"cameras": ("side",)}, "has cameras"),
    ],
)
def test_bad_ros_env_arguments(kwargs, message):
    """Refused before anything connects (no driver is running)."""
    pytest.importorskip("rclpy")
    from robotrl.drivers.config import load_config
    from robotrl.drivers.ros_env import RosEnv

    with pytest.raises(RobotrlError) as error:
        RosEnv(load_config("ur5e"), connect_timeout=0.1, **kwargs)
    one_line(error, message)


def test_case_count():
    from tests.test_bad_input_cli import CASES
    from tests.test_bad_input_cli_more import CASES as MORE

    api = len(CONFIGS) + 2 + 7 + 5 + 1 + 3 + 3 + 3
    assert len(CASES) + len(MORE) + api >= 60
