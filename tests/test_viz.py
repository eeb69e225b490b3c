"""rerun recordings (the `viz` extra): `robotrl dataset view --rerun --save F.rrd` and
`robotrl deploy --rerun --save F.rrd` write files that the rerun SDK reads back with the
entities and rows expected (real MuJoCo, a real dataset, a tiny saved policy)."""

import json
import socket
import sys

import numpy as np
import pytest
import torch

from robotrl.cli.main import main
from robotrl.data.dataset import Dataset

rerun = pytest.importorskip("rerun", reason="the viz extra: pip install 'robotrl[viz]'")


def recorded(path) -> dict[str, list]:
    """Entity path -> its non-static chunks (rerun record batches), read back with the SDK."""
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    assert len(reader.recordings()) == 1 and reader.blueprints()  # data and its layout
    chunks: dict[str, list] = {}
    for chunk in reader.stream().to_chunks():
        if not chunk.is_static:
            chunks.setdefault(chunk.entity_path, []).append(chunk.to_record_batch())
    return chunks


def rows(batches) -> int:
    return sum(b.num_rows for b in batches)


@pytest.fixture(scope="module")
def camera_dataset(tmp_path_factory):
    from tests.test_data import record

    root = tmp_path_factory.mktemp("viz") / "reach"
    record(root, task="Reach", episodes=2, obs_mode="state+pixels", image_size=(32, 32))
    return Dataset(root)


def test_dataset_view_writes_cameras_and_plots_on_the_dataset_timeline(
    camera_dataset, tmp_path, capsys
):
    out = tmp_path / "view" / "reach.rrd"
    root = str(camera_dataset.root)
    assert main(["dataset", "view", root, "--episode", "0,1", "--rerun", "--save", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    chunks = recorded(out)
    for e in (0, 1):
        data = camera_dataset.episode(e)
        n = len(data["timestamp"])
        for key in ("cameras/front", "cameras/wrist", "observation.state", "action"):
            assert rows(chunks[f"/episode_{e}/{key}"]) == n, key
        (state,) = chunks[f"/episode_{e}/observation.state"]
        values = np.array(state.column("Scalars:scalars").to_pylist())
        np.testing.assert_allclose(values, data["observation.state"], rtol=1e-6)
        times = state.column("time").to_numpy().astype("timedelta64[ns]").astype(np.int64)
        np.testing.assert_allclose(times / 1e9, data["timestamp"], atol=1e-6)


@pytest.fixture(scope="module")
def joint_policy(tmp_path_factory):
    """A tiny untrained state policy commanding joint positions near zero: far from the arm's
    pose, so the safety layer steps in on every tick."""
    from robotrl.policies.checkpoint import save_policy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    config = DiffusionConfig(
        obs_keys=("observation.state",),
        obs_dims=(15,),
        action_dim=8,
        horizon=8,
        n_action_steps=4,
        channels=(16, 32),
        fps=50.0,
        meta={"task": "Reach", "robot": "panda", "action_mode": "joint_pos"},
    )
    torch.manual_seed(0)
    small = 0.01 * np.ones(8)
    policy = DiffusionPolicy(config, [(-np.ones(15), np.ones(15))], (-small, small))
    return save_policy(policy, tmp_path_factory.mktemp("viz") / "policy")


def test_deploy_records_cameras_joints_chunks_safety_and_lateness(joint_policy, tmp_path, capsys):
    out = tmp_path / "deploy.rrd"
    argv = ["deploy", "--policy", str(joint_policy), "--episodes", "2", "--virtual-time"]
    argv += ["--no-status", "--plot", "", "--json", "--rerun", "--save", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rerun"] == str(out)
    ticks, telemetry = summary["telemetry"]["ticks"], summary["telemetry"]
    assert ticks == 2 * summary["mean_episode_steps"] > 0
    chunks = recorded(out)
    for camera in ("front", "wrist"):  # rendered for the viewer: the policy sees state only
        assert rows(chunks[f"/cameras/{camera}"]) == ticks
    for joint in range(1, 8):
        for side in ("commanded", "measured"):
            assert rows(chunks[f"/joints/joint{joint}.pos/{side}"]) == ticks
    for entity in ("/commanded", "/measured", "/timing/lateness_ms", "/chunks/queue"):
        assert rows(chunks[entity]) == ticks
    assert rows(chunks["/chunks/inference_ms"]) == telemetry["chunks"]
    assert rows(chunks["/safety/interventions"]) > 0 and telemetry["safety"]
    events = [t for b in chunks["/events"] for t in b.column("TextLog:text").to_pylist()]
    events = [t[0] if isinstance(t, list) else t for t in events]
    assert "episode 2 started" in events and any(e.startswith("safety: ") for e in events)
    assert sum(e.startswith("episode ") and " ended after " in e for e in events) == 2


def test_rerun_user_errors_end_in_one_line(camera_dataset, tmp_path, monkeypatch, capsys):
    root = str(camera_dataset.root)
    assert main(["dataset", "view", root, "--rerun", "--save", str(tmp_path / "x.mp4")]) == 2
    assert "a rerun recording is an .rrd file" in capsys.readouterr().err
    assert main(["dataset", "view", root, "--episode", "5", "--save", str(tmp_path / "x.rrd")]) == 2
    assert "no episode 5" in capsys.readouterr().err
    # Headless with no viewer listening: say how to get a recording instead.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    monkeypatch.setattr("robotrl.viz.VIEWER_PORT", free_port)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform == "linux":
        assert main(["dataset", "view", root, "--rerun"]) == 2
        err = capsys.readouterr().err
        assert "--save F.rrd" in err and len(err.strip().splitlines()) == 1
    # Without the extra installed.
    monkeypatch.setitem(sys.modules, "rerun", None)
    assert main(["dataset", "view", root, "--rerun", "--save", str(tmp_path / "x.rrd")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'robotrl[viz]'" in err and len(err.strip().splitlines()) == 1
