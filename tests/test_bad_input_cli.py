"""Bad input through every CLI command, run in-process (`robotrl.cli.main.main`): each case
ends in exit code 2 and one line on stderr, no traceback, and leaves its working directory
exactly as it was — every input byte for byte, no output file or directory left behind.

Each case gets a directory of its own holding what it needs (a small Reach dataset, a policy
checkpoint that fits Reach, a regular file, a non-empty directory), with one thing broken.
This file: rollout, collect and dataset; `test_bad_input_cli_more.py`: train, distill, eval,
bench, launch, deploy and usage. `tests/test_bad_input.py` runs a few as real processes to
prove the exit code.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

UNWRITABLE = "/sys/robotrl_bad_input"  # sysfs: not even root may create files there


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A Reach dataset (2 expert episodes) and a diffusion checkpoint that fits Reach."""
    import torch

    from robotrl.policies.checkpoint import save_policy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy
    from tests.test_data import record

    root = tmp_path_factory.mktemp("bad_input")
    record(root / "ds", task="Reach", episodes=2)
    config = DiffusionConfig(
        obs_keys=("observation.state",),
        obs_dims=(15,),
        action_dim=7,
        n_obs=2,
        horizon=8,
        n_action_steps=4,
        channels=(16, 32),
    )
    torch.manual_seed(0)
    policy = DiffusionPolicy(config, [(np.zeros(15), np.ones(15))], (-np.ones(7), np.ones(7)))
    save_policy(policy, root / "ckpt")
    return root


def _dataset(rel=None, content=None):
    def make(w, base):
        shutil.copytree(base / "ds", w / "ds")
        if rel is not None:
            path = w / "ds" / rel
            path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return make


def _info(**changes):
    """The dataset with meta/info.json changed: `changes` replace fields."""

    def make(w, base):
        shutil.copytree(base / "ds", w / "ds")
        path = w / "ds/meta/info.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return make


def _checkpoint(config=None, extra=None):
    def make(w, base):
        shutil.copytree(base / "ckpt", w / "ckpt")
        if config is not None:
            (w / "ckpt/config.json").write_text(config)
        for name, data in (extra or {}).items():
            (w / name).write_bytes(data)

    return make


def _files(**files):
    def make(w, base):
        for name, data in files.items():
            (w / name).write_bytes(data if isinstance(data, bytes) else data.encode())

    return make


both = [_dataset(), _checkpoint()]

# (id, argv ({w}: the case's directory), what the one line must say, inputs to make)
CASES = [
    # rollout
    ("rollout-episodes-0", "rollout --task Reach --episodes 0", "at least 1", []),
    ("rollout-episodes-neg", "rollout --task Reach --episodes -2", "at least 1", []),
    ("rollout-episodes-text", "rollout --task Reach --episodes abc", "invalid int value", []),
    ("rollout-task", "rollout --task Stack", "unknown task 'Stack'", []),
    ("rollout-robot", "rollout --task Reach --robot kuka", "unknown robot 'kuka'", []),
    ("rollout-mjcf", "rollout --task Reach --robot {w}/arm.xml", "robot MJCF not found", []),
    ("rollout-policy", "rollout --task Reach --policy ghost", "unknown policy 'ghost'", []),
    (
        "rollout-policy-other-task",
        "rollout --task PushT --policy {w}/ckpt --episodes 1",
        "policy expects state",
        [_checkpoint()],
    ),
    ("rollout-video-dir", "rollout --task Reach --video {w}", "is a directory", []),
    (
        "rollout-video-under-file",
        "rollout --task Reach --video {w}/f/v.mp4",
        "cannot write the video",
        [_files(f="x")],
    ),
    (
        "rollout-video-readonly",
        f"rollout --task Reach --video {UNWRITABLE}/v.mp4",
        "cannot write the video",
        [],
    ),
    (
        "rollout-video-episodes-0",
        "rollout --task Reach --video {w}/v.mp4 --video-episodes 0",
        "--video-episodes must be at least 1",
        [],
    ),
    ("rollout-obs-mode", "rollout --task Reach --obs-mode depth", "unknown obs_mode", []),
    ("rollout-action-mode", "rollout --task Reach --action-mode torque", "unknown action", []),
    # collect
    ("collect-episodes-0", "collect --teleop expert --episodes 0 --out {w}/o", "at least 1", []),
    ("collect-episodes-neg", "collect --teleop expert --episodes -1 --out {w}/o", "at least", []),
    (
        "collect-out-file",
        "collect --task Reach --teleop expert --episodes 1 --out {w}/f",
        "is a file, not a dataset directory",
        [_files(f="x")],
    ),
    (
        "collect-out-dir",
        "collect --task Reach --teleop expert --episodes 1 --out {w}/d",
        "exists and is not a dataset",
        [lambda w, b: (w / "d").mkdir() or (w / "d/x.txt").write_text("x")],
    ),
    (
        "collect-out-readonly",
        f"collect --task Reach --teleop expert --episodes 1 --out {UNWRITABLE}/ds",
        "cannot create a dataset",
        [],
    ),
    (
        "collect-info-list",
        "collect --task Reach --teleop expert --episodes 1 --out {w}/ds",
        "holds a list where an object belongs",
        [_dataset("meta/info.json", "[1, 2]")],
    ),
    (
        "collect-other-task",
        "collect --task Lift --teleop expert --episodes 1 --out {w}/ds",
        "feature shape mismatch",
        [_dataset()],
    ),
    (
        "collect-teleop",
        "collect --task Reach --teleop nope --out {w}/o",
        "unknown teleop device 'nope'",
        [],
    ),
    (
        "collect-noise",
        "collect --task Reach --teleop expert --action-noise -1 --out {w}/o",
        "--action-noise must be >= 0",
        [],
    ),
    (
        "collect-image-0",
        "collect --task Reach --teleop expert --obs-mode pixels --image-size 0 --out {w}/o",
        "image_size must be",
        [],
    ),
    (
        "collect-image-neg",
        "collect --task Reach --teleop expert --obs-mode pixels --image-size -96 --out {w}/o",
        "image_size must be",
        [],
    ),
    (
        "collect-coverage-high",
        "collect --task PushT --teleop expert --success-coverage 2 --out {w}/o",
        "success coverage must be in (0, 1]",
        [],
    ),
    (
        "collect-coverage-0",
        "collect --task PushT --teleop expert --success-coverage 0 --out {w}/o",
        "success coverage must be in (0, 1]",
        [],
    ),
    (
        "collect-max-seconds-neg",
        "collect --task Reach --teleop expert --max-seconds -1 --out {w}/o",
        "--max-seconds must be positive",
        [],
    ),
    (
        "collect-max-seconds-0",
        "collect --task Reach --teleop expert --max-seconds 0 --out {w}/o",
        "--max-seconds must be positive",
        [],
    ),
    (
        "collect-env-config",
        "collect --task Reach --teleop expert --env ros:kuka --out {w}/o",
        "unknown robot config 'kuka'",
        [],
    ),
    (
        "collect-env-kind",
        "collect --task Reach --teleop expert --env gazebo:x --out {w}/o",
        "unknown env kind 'gazebo'",
        [],
    ),
    (
        "collect-spacemouse-missing",
        "collect --task Reach --teleop spacemouse --device {w}/hidraw9 --out {w}/o",
        "no SpaceMouse at",
        [],
    ),
    (
        "collect-gamepad-dir",
        "collect --task Reach --teleop gamepad --device {w} --out {w}/o",
        "is a directory",
        [],
    ),
    (
        "collect-leader-no-calibration",
        "collect --task Reach --teleop leader --device {w}/tty --out {w}/o",
        "the leader arm needs",
        [_files(tty="")],
    ),
    (
        "collect-leader-calibration-list",
        "collect --task Reach --teleop leader --device {w}/tty --calibration {w}/c.json "
        "--out {w}/o",
        "calibration",
        [_files(tty="", **{"c.json": "[1, 2]"})],
    ),
    # dataset info / view / merge / drop
    ("info-missing", "dataset info {w}/nothing", "no dataset at", []),
    ("info-file", "dataset info {w}/f", "not a directory", [_files(f="x")]),
    ("info-no-meta", "dataset info {w}", "meta/info.json is missing", [_files(f="x")]),
    (
        "info-list",
        "dataset info {w}/ds",
        "holds a list where an object belongs",
        [_dataset("meta/info.json", "[1, 2]")],
    ),
    (
        "info-string",
        "dataset info {w}/ds",
        "holds a string where an object belongs",
        [_dataset("meta/info.json", '"v3.0"')],
    ),
    ("info-json", "dataset info {w}/ds", "not valid JSON", [_dataset("meta/info.json", "{")]),
    ("info-fps-text", "dataset info {w}/ds", "fps must be a positive", [_info(fps="fast")]),
    ("info-fps-0", "dataset info {w}/ds", "fps must be a positive", [_info(fps=0)]),
    ("info-fps-neg", "dataset info {w}/ds", "fps must be a positive", [_info(fps=-30)]),
    (
        "info-features-list",
        "dataset info {w}/ds",
        "features must be an object",
        [_info(features=[1])],
    ),
    (
        "info-feature-list",
        "dataset info {w}/ds",
        "feature 'action' must be an object",
        [_info(features={"action": [7]})],
    ),
    ("info-version", "dataset info {w}/ds", "LeRobot v2.1", [_info(codebase_version="v2.1")]),
    (
        "info-episodes-garbage",
        "dataset info {w}/ds",
        "corrupt episodes table",
        [_dataset("meta/episodes/chunk-000/file-000.parquet", b"garbage")],
    ),
    (
        "info-tasks-garbage",
        "dataset info {w}/ds",
        "corrupt tasks table",
        [_dataset("meta/tasks.parquet", b"garbage")],
    ),
    (
        "info-data-garbage",
        "dataset info {w}/ds",
        "corrupt data file",
        [_dataset("data/chunk-000/file-000.parquet", b"garbage")],
    ),
    ("view-episode-99", "dataset view {w}/ds --episode 99 --out {w}/v", "no episode 99", both),
    ("view-episode-neg", "dataset view {w}/ds --episode -1 --out {w}/v", "no episode -1", both),
    ("view-episode-text", "dataset view {w}/ds --episode x --out {w}/v", "integers", both),
    ("view-episode-none", "dataset view {w}/ds --episode , --out {w}/v", "no episode given", both),
    (
        "view-out-file",
        "dataset view {w}/ds --episode 0 --out {w}/f",
        "is a file",
        [_dataset(), _files(f="x")],
    ),
    ("merge-missing", "dataset merge {w}/ds {w}/nothing --out {w}/m", "no dataset at", both),
    (
        "merge-out-file",
        "dataset merge {w}/ds {w}/ds --out {w}/f",
        "already exists",
        [_dataset(), _files(f="x")],
    ),
    ("merge-out-self", "dataset merge {w}/ds --out {w}/ds", "already exists", both),
    (
        "merge-info-list",
        "dataset merge {w}/ds --out {w}/m",
        "holds a list",
        [_dataset("meta/info.json", "[]")],
    ),
    (
        "merge-out-readonly",
        f"dataset merge {{w}}/ds --out {UNWRITABLE}/m",
        "cannot create a dataset",
        both,
    ),
    ("drop-episode-99", "dataset drop {w}/ds --episodes 99", "no episode 99", both),
    ("drop-episode-text", "dataset drop {w}/ds --episodes a", "integers", both),
    ("drop-episode-none", "dataset drop {w}/ds --episodes ''", "no episode given", both),
    (
        "drop-out-file",
        "dataset drop {w}/ds --episodes 0 --out {w}/f",
        "already exists",
        [_dataset(), _files(f="x")],
    ),
]


def snapshot(root):
    """Every path under `root` with its bytes (None for a directory)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def run_case(argv, message, make, base, tmp_path, capsys) -> None:
    import shlex

    from robotrl.cli.main import main

    for build in make:
        build(tmp_path, base)
    before = snapshot(tmp_path)
    try:
        code = main(shlex.split(argv.format(w=tmp_path)))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("robotrl") and ": error: " in lines[0], lines[0]
    assert message in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "the inputs changed, or an output was left behind"


@pytest.mark.parametrize("argv, message, make", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_bad_input(argv, message, make, base, tmp_path, capsys):
    run_case(argv, message, make, base, tmp_path, capsys)
