"""Bad input through the CLI, continued (the harness and the first cases are in
`test_bad_input_cli.py`): train, distill, eval, bench, launch, deploy and usage errors. Each
ends in exit code 2 and one line, its working directory left exactly as it was."""

from __future__ import annotations

import pytest

from tests.test_bad_input_cli import CASES as FIRST_CASES
from tests.test_bad_input_cli import (
    _checkpoint,
    _dataset,
    _files,
    base,  # noqa: F401  (the fixture the cases build from)
    both,
    run_case,
)

LAUNCH_FOREIGN = "launch:\n- node: {pkg: ur_robot_driver, exec: ur_ros2_control_node}\n"

CASES = [
    # train / distill (the dataset and checkpoint readers)
    ("train-data-missing", "train --data {w}/nothing --out {w}/run --steps 2", "no dataset", []),
    (
        "train-info-list",
        "train --data {w}/ds --out {w}/run --steps 2",
        "holds a list",
        [_dataset("meta/info.json", "[]")],
    ),
    (
        "train-stats-list",
        "train --data {w}/ds --out {w}/run --steps 2",
        "stats.json holds a list where an object belongs",
        [_dataset("meta/stats.json", "[]")],
    ),
    (
        "train-stats-values",
        "train --data {w}/ds --out {w}/run --steps 2",
        "statistics must be an object of number lists",
        [_dataset("meta/stats.json", '{"action": {"mean": "high"}}')],
    ),
    ("train-steps-0", "train --data {w}/ds --out {w}/run --steps 0", "--steps", both),
    ("train-batch-0", "train --data {w}/ds --out {w}/run --batch-size 0", "--batch-size", both),
    ("distill-missing", "distill --teacher {w}/nothing --out {w}/d", "no checkpoint", []),
    (
        "distill-config-list",
        "distill --teacher {w}/ckpt --out {w}/d",
        "corrupt checkpoint",
        [_checkpoint("[1]")],
    ),
    # eval (the checkpoint reader)
    ("eval-missing", "eval --policy {w}/nothing --task Reach", "no checkpoint at", []),
    ("eval-file", "eval --policy {w}/f --task Reach", "is a file", [_files(f="x")]),
    (
        "eval-pickle",
        "eval --policy {w}/model.pt --task Reach",
        "refusing to load",
        [_files(**{"model.pt": b"\x80\x04K\x01."})],
    ),
    ("eval-config-list", "eval --policy {w}/ckpt", "corrupt checkpoint", [_checkpoint("[1]")]),
    ("eval-config-json", "eval --policy {w}/ckpt", "corrupt checkpoint", [_checkpoint("{")]),
    (
        "eval-config-inner-list",
        "eval --policy {w}/ckpt",
        "corrupt checkpoint",
        [_checkpoint('{"policy": "diffusion", "config": []}')],
    ),
    (
        "eval-kind",
        "eval --policy {w}/ckpt",
        "holds a policy of type 'transformer'",
        [_checkpoint('{"policy": "transformer", "config": {}}')],
    ),
    (
        "eval-weights-garbage",
        "eval --policy {w}/ckpt --task Reach",
        "corrupt checkpoint",
        [_checkpoint(), lambda w, b: (w / "ckpt/model.safetensors").write_bytes(b"garbage")],
    ),
    ("eval-no-task", "eval --policy {w}/ckpt", "--task is required", [_checkpoint()]),
    ("eval-task", "eval --policy {w}/ckpt --task Stack", "unknown task 'Stack'", [_checkpoint()]),
    (
        "eval-episodes-0",
        "eval --policy {w}/ckpt --task Reach --episodes 0",
        "at least 1",
        [_checkpoint()],
    ),
    (
        "eval-workers-neg",
        "eval --policy {w}/ckpt --task Reach --workers -2",
        "--workers must be at least 1",
        [_checkpoint()],
    ),
    (
        "eval-warm-sigma",
        "eval --policy {w}/ckpt --task Reach --warm-sigma 0.5",
        "--warm-sigma is for consistency policies",
        [_checkpoint()],
    ),
    # bench
    ("bench-sim-robot", "bench sim --robot kuka", "unknown robot 'kuka'", []),
    ("bench-sim-steps-0", "bench sim --steps 0", "steps must be at least 1", []),
    ("bench-data-missing", "bench data {w}/nothing", "no dataset at", []),
    ("bench-data-batch-0", "bench data {w}/ds --batch-size 0", "--batch-size", both),
    ("bench-loop-hz-text", "bench loop --hz abc", "comma-separated rates", []),
    ("bench-loop-hz-0", "bench loop --hz 0", "--hz rates must be in", []),
    ("bench-loop-ticks-0", "bench loop --ticks 0", "--ticks must be at least 1", []),
    ("bench-ros-ticks-0", "bench ros --ticks 0", "--ticks must be at least 1", []),
    ("bench-ros-hz-0", "bench ros --hz 0", "--hz must be in", []),
    ("bench-policy-repeats-0", "bench policy --repeats 0", "--repeats must be at least 1", []),
    ("bench-policy-missing", "bench policy --policy {w}/nothing", "no checkpoint at", []),
    # launch
    ("launch-missing", "launch {w}/x.launch.yaml", "no launch file at", []),
    ("launch-dir", "launch {w}", "is a directory, not a launch file", []),
    ("launch-binary", "launch {w}/b.yaml", "not a text", [_files(**{"b.yaml": b"\xff\xfe\x00"})]),
    ("launch-yaml", "launch {w}/l.yaml", "not valid YAML", [_files(**{"l.yaml": "launch: ["})]),
    (
        "launch-list",
        "launch {w}/l.yaml",
        "a mapping with a 'launch' list",
        [_files(**{"l.yaml": "- 1"})],
    ),
    (
        "launch-foreign",
        "launch {w}/l.yaml",
        "only pkg robotrl",
        [_files(**{"l.yaml": LAUNCH_FOREIGN})],
    ),
    ("launch-arg-form", "launch launch/sim_robot.launch.yaml task", "name:=value", []),
    ("launch-arg-unknown", "launch launch/sim_robot.launch.yaml nope:=1", "no argument named", []),
    ("launch-arg-required", "launch launch/deploy.launch.yaml --print", "is required", []),
    # deploy
    ("deploy-missing", "deploy --policy {w}/nothing", "no checkpoint at", []),
    ("deploy-env-config", "deploy --policy {w}/ckpt --env ros:kuka", "kuka", [_checkpoint()]),
    (
        "deploy-env-kind",
        "deploy --policy {w}/ckpt --env gazebo:x",
        "unknown env kind",
        [_checkpoint()],
    ),
    ("deploy-episodes-0", "deploy --policy {w}/ckpt --episodes 0", "at least 1", [_checkpoint()]),
    # usage
    ("usage-command", "nosuchcommand", "invalid choice", []),
    ("usage-option", "tasks --bogus", "unrecognized arguments", []),
    ("usage-missing-sub", "dataset", "required", []),
]


@pytest.mark.parametrize("argv, message, make", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_bad_input(argv, message, make, base, tmp_path, capsys):  # noqa: F811 (fixture)
    run_case(argv, message, make, base, tmp_path, capsys)


def test_case_count():
    assert len(FIRST_CASES) + len(CASES) >= 60
