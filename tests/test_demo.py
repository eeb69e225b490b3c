"""`robotrl demo`, the main job, on a tiny budget: every stage runs, the report names all four
policies, and a second run resumes instead of redoing the work."""

import json

import pytest

from robotrl.cli.main import main

pytestmark = pytest.mark.xdist_group("demo")


def test_demo_pipeline_writes_the_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--demos", "2", "--train-steps", "3"]
    argv += ["--distill-steps", "2", "--eval-episodes", "1"]
    assert main(argv) == 0
    report = (out / "report.md").read_text()
    for name in ("diffusion DDIM-10", "consistency 1-step", "consistency 1-step cold"):
        assert f"| {name} |" in report
    summary = json.loads((out / "summary.json").read_text())
    assert [r["network_evals"] for r in summary["rows"]] == [10, 1, 1, 3]
    assert all(r["median_ms"] > 0 for r in summary["rows"])
    for name in ("comparison.png", "rollout.mp4", "diffusion/curves.png", "consistency/policy"):
        assert (out / name).exists(), name
    capsys.readouterr()

    assert main(argv) == 0  # everything done: nothing is re-recorded or re-trained
    captured = capsys.readouterr()
    printed = captured.out + captured.err  # collect's status line is on stderr
    assert "resuming" in printed and "saved" not in printed
    from robotrl.data.dataset import Dataset

    assert Dataset(out / "data").num_episodes == 2


def test_camera_demo_trains_policies_that_see_only_cameras_and_state(tmp_path, capsys):
    from robotrl.policies.checkpoint import load_policy

    out = tmp_path / "demo"
    argv = ["demo", "--cameras", "--out", str(out), "--demos", "2", "--train-steps", "3"]
    assert main([*argv, "--distill-steps", "2", "--eval-episodes", "1"]) == 0
    assert "cameras and the robot's own state only" in (out / "report.md").read_text()
    for run in ("diffusion", "consistency"):
        config = load_policy(out / run).config
        assert config.image_keys == ("observation.images.front", "observation.images.wrist")
        assert config.obs_keys == ("observation.state",)
    capsys.readouterr()
    state_out = tmp_path / "state_demo"
    (state_out / "data").mkdir(parents=True)
    from tests.test_data import record

    record(state_out / "data", task="Lift", episodes=1, label="Lift")
    assert main(["demo", "--cameras", "--out", str(state_out), "--demos", "2"]) == 2
    assert "collected without cameras" in capsys.readouterr().err


def test_filmed_frames_show_the_policys_cameras_beside_the_scene():
    import numpy as np

    from robotrl.video import with_cameras

    scene = np.zeros((240, 320, 3), np.uint8)
    front = np.full((96, 96, 3), 10, np.uint8)
    wrist = np.full((96, 96, 3), 200, np.uint8)
    frame = with_cameras(
        scene, {"state": np.zeros(3), "images.front": front, "images.wrist": wrist}
    )
    assert frame.shape == (240, 320 + 96, 3)  # 240 // (2 * 96) = 1: unscaled, stacked
    assert (frame[:96, 320:] == 10).all() and (frame[96:192, 320:] == 200).all()
    assert with_cameras(scene, {"state": np.zeros(3)}) is scene
