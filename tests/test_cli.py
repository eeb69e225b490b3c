"""The command line, run as a user would."""

import json
import subprocess
import sys

import imageio.v2 as imageio


def _cli(*args):
    result = subprocess.run(
        [sys.executable, "-m", "robotrl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tasks_lists_all_four():
    rows = json.loads(_cli("tasks", "--json"))
    assert [r["id"] for r in rows] == [
        "robotrl/Reach-v0",
        "robotrl/PushT-v0",
        "robotrl/Lift-v0",
        "robotrl/PegInsert-v0",
    ]


def test_rollout_json_and_video(tmp_path):
    video = tmp_path / "reach.mp4"
    out = json.loads(
        _cli(
            "rollout",
            "--task",
            "Reach",
            "--episodes",
            "3",
            "--json",
            "--video",
            str(video),
            "--video-episodes",
            "2",
        )
    )
    assert out["success_rate"] == 1.0 and out["episodes"] == 3
    assert out["env_steps_per_s"] > 100 and 5 < out["mean_episode_length"] < 100
    frames = imageio.mimread(video, memtest=False)
    assert len(frames) == sum(out["lengths"][:2])
    assert frames[0].shape == (240, 320, 3)


def test_bench_sim_measures_env_against_raw_loop():
    from robotrl.sim.bench import bench_task

    row = bench_task("Reach", "panda", "state", steps=200)
    assert row.substeps == 25 and row.env_steps_per_s > 0 and row.raw_steps_per_s > 0
    # the env runs the raw loop's physics plus its own work, so it cannot be much faster
    assert row.ratio < 1.3
