"""Datasets: what the recorder is given is what the reader returns; layout; edits; windows."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from robotrl.data import layout, stats, video
from robotrl.data.dataset import Dataset
from robotrl.data.edit import drop, merge
from robotrl.data.layout import DatasetError
from robotrl.data.recorder import Recorder
from robotrl.data.windows import WindowDataset
from robotrl.tasks import make, make_expert

VIDEO_TOLERANCE = 4.0  # mean absolute error per pixel (0-255) allowed from H.264 at CRF 18


def record(root, task="Lift", episodes=2, seed=0, label=None, **env_kwargs):
    """Record expert episodes (the dataset's task: `label`, default "<task> task"); returns
    what was fed to the recorder, per episode."""
    env = make(task, **env_kwargs)
    recorder = Recorder(env, root, task=label or f"{task} task")
    expert = make_expert(env)
    given = []
    for ep in range(episodes):
        obs, _ = recorder.reset(seed=seed + ep)
        expert.reset()
        frames, done = [], False
        while not done:
            action = expert.select_action(obs)
            next_obs, reward, terminated, truncated, info = recorder.step(action)
            frames.append(
                {"obs": obs, "action": action, "reward": reward, "done": terminated or truncated}
            )
            obs, done = next_obs, terminated or truncated
        given.append(frames)
    recorder.close()
    return given


@pytest.fixture(scope="module")
def pixel_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "lift_pixels"
    given = record(root, obs_mode="state+pixels", episodes=2)
    return root, given


def test_round_trip_is_exact_for_vectors_and_close_for_video(pixel_dataset):
    root, given = pixel_dataset
    dataset = Dataset(root)
    assert dataset.num_episodes == 2
    for ep, frames in enumerate(given):
        data = dataset.episode(ep)
        np.testing.assert_array_equal(
            data["observation.state"], np.stack([f["obs"]["state"] for f in frames])
        )
        np.testing.assert_array_equal(data["action"], np.stack([f["action"] for f in frames]))
        np.testing.assert_array_equal(
            data["next.reward"], np.float32([f["reward"] for f in frames])
        )
        np.testing.assert_array_equal(data["next.done"], [f["done"] for f in frames])
        np.testing.assert_array_equal(data["frame_index"], np.arange(len(frames)))
        for cam in ("front", "wrist"):
            sent = np.stack([f["obs"][f"images.{cam}"] for f in frames]).astype(int)
            got = data[f"observation.images.{cam}"].astype(int)
            assert got.shape == sent.shape
            assert np.abs(got - sent).mean() < VIDEO_TOLERANCE


def test_layout_is_lerobot_v3(pixel_dataset):
    root, _ = pixel_dataset
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2
    assert info["features"]["observation.images.front"]["dtype"] == "video"
    for path in (
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "videos/observation.images.wrist/chunk-000/file-001.mp4",
    ):
        assert (root / path).is_file(), path
    import pandas as pd
    import pyarrow.parquet as pq

    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.loc["Lift task", "task_index"] == 0
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert episodes[1]["dataset_from_index"] == episodes[0]["dataset_to_index"]
    schema = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    state_type = schema.field("observation.state").type  # HF's Sequence(length=15, float32)
    assert state_type.list_size == 15 and str(state_type.value_type) == "float"


def test_stats_aggregate_equals_stats_of_all_frames(pixel_dataset):
    dataset = Dataset(pixel_dataset[0])
    action = dataset.columns["action"].astype(np.float64)
    agg = dataset.stats["action"]
    np.testing.assert_allclose(agg["mean"], action.mean(0), atol=1e-9)
    np.testing.assert_allclose(agg["std"], action.std(0), atol=1e-9)
    np.testing.assert_array_equal(agg["min"], action.min(0))
    assert np.asarray(dataset.stats["observation.images.front"]["mean"]).shape == (3, 1, 1)


def test_sim_timestamps_are_sim_time_and_realtime_ones_are_wall_time(tmp_path):
    record(tmp_path / "sim", task="Reach", episodes=1)
    t = Dataset(tmp_path / "sim").episode(0)["timestamp"]
    np.testing.assert_allclose(t, np.arange(len(t)) / 20, atol=1e-6)

    env = make("Reach", control_hz=50, realtime=True)
    recorder = Recorder(env, tmp_path / "wall")
    recorder.reset(seed=0)
    for k in range(15):
        if k == 10:
            time.sleep(0.1)  # a stall: the rate falls below nominal
        recorder.step(np.zeros(env.action_space.shape, np.float32))
    recorder.save_episode()
    dataset = Dataset(tmp_path / "wall")
    t = dataset.episode(0)["timestamp"]
    # Paced to 50 Hz on a fixed grid (a late tick is followed by a short one), so under load
    # single intervals wander but the median is the period.
    assert np.median(np.diff(t[:10])) == pytest.approx(0.02, abs=0.003)
    assert t[11] - t[10] > 0.1
    assert dataset.episodes[0]["below_nominal_rate"] is True
    assert dataset.episodes[0]["achieved_fps"] < 0.95 * 50


def test_append_resumes_and_checks_features(tmp_path):
    root = tmp_path / "d"
    record(root, task="Reach", episodes=2)
    record(root, task="Reach", episodes=1, seed=10)
    dataset = Dataset(root)
    assert dataset.num_episodes == 3
    np.testing.assert_array_equal(dataset.columns["index"], np.arange(dataset.num_frames))
    with pytest.raises(DatasetError, match="mismatch"):
        record(root, task="Lift", episodes=1)


def test_bad_files_give_one_clear_error(tmp_path):
    root = tmp_path / "d"
    record(root, task="Reach", episodes=2)
    data_file = root / "data/chunk-000/file-001.parquet"
    data_file.write_bytes(data_file.read_bytes()[:200])
    with pytest.raises(DatasetError, match="corrupt data file"):
        Dataset(root)
    (root / "meta/info.json").unlink()
    with pytest.raises(DatasetError, match="meta/info.json is missing"):
        Dataset(root)
    for args, message in [
        (["dataset", "info", str(root)], "meta/info.json is missing"),
        (["dataset", "info", str(tmp_path / "absent")], "no dataset at"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "robotrl.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_reads_lerobot_aggregated_layout(tmp_path):
    """LeRobot packs many episodes per data file and per video file; the reader follows the
    episodes table's indices and video timestamps."""
    import pandas as pd
    import pyarrow.parquet as pq

    from robotrl.data.writer import frame_table, write_episodes

    root, fps, lengths = tmp_path / "lerobot", 10.0, (12, 8)
    features = {
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["a", "b", "c"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "observation.images.top": {"dtype": "video", "shape": [32, 48, 3], "names": None},
        **layout.INDEX_FEATURES,
    }
    rng = np.random.default_rng(0)
    n = sum(lengths)
    columns = {
        "observation.state": rng.normal(size=(n, 3)).astype(np.float32),
        "action": rng.normal(size=(n, 2)).astype(np.float32),
        "timestamp": np.concatenate([np.arange(k) / fps for k in lengths]).astype(np.float32),
        "frame_index": np.concatenate([np.arange(k) for k in lengths]),
        "episode_index": np.repeat([0, 1], lengths),
        "index": np.arange(n),
        "task_index": np.zeros(n, int),
    }
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(frame_table(columns, features), root / "data/chunk-000/file-000.parquet")
    images = (np.arange(n)[:, None, None, None] * 12 % 256 * np.ones((1, 32, 48, 3))).astype(
        np.uint8
    )
    video.encode(
        root
        / layout.VIDEO_PATH.format(video_key="observation.images.top", chunk_index=0, file_index=0),
        images,
        np.arange(n) / fps,
        fps,
    )
    rows = []
    for ep, (start, length) in enumerate(zip((0, lengths[0]), lengths)):
        rows.append(
            {
                "episode_index": ep,
                "tasks": ["stack"],
                "length": length,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": start,
                "dataset_to_index": start + length,
                "videos/observation.images.top/chunk_index": 0,
                "videos/observation.images.top/file_index": 0,
                "videos/observation.images.top/from_timestamp": start / fps,
                "videos/observation.images.top/to_timestamp": (start + length) / fps,
            }
        )
    write_episodes(root, rows)
    pd.DataFrame({"task_index": [0]}, index=["stack"]).to_parquet(root / layout.TASKS_PATH)
    info = layout.new_info(features, fps, "koch")
    (root / "meta/info.json").write_text(json.dumps(info))

    dataset = Dataset(root)
    second = dataset.episode(1)
    np.testing.assert_array_equal(second["observation.state"], columns["observation.state"][12:])
    frames = second["observation.images.top"].astype(int)
    assert frames.shape == (8, 32, 48, 3)
    assert np.abs(frames - images[12:].astype(int)).mean() < VIDEO_TOLERANCE
    assert dataset.tasks == {0: "stack"}


def test_windows_pad_at_episode_edges(pixel_dataset):
    dataset = Dataset(pixel_dataset[0])
    windows = WindowDataset(dataset, n_obs=2, horizon=8)
    assert len(windows) == dataset.num_frames
    first = windows[0]
    np.testing.assert_array_equal(first["observation.state"][0], first["observation.state"][1])
    last = windows[int(dataset.ends[0]) - 1]  # last frame of episode 0
    assert last["action_is_pad"].tolist() == [False] + [True] * 7
    np.testing.assert_array_equal(last["action"][1], last["action"][0])
    batch = next(iter(windows.loader(batch_size=16)))
    assert batch["observation.images.front"].shape == (16, 2, 96, 96, 3)
    assert batch["action"].shape == (16, 8, 7)
    second_ep = int(dataset.starts[1])
    assert windows[second_ep + 1]["observation.state"].shape == (2, 15)
    np.testing.assert_array_equal(
        windows[second_ep]["observation.state"][0], dataset.columns["observation.state"][second_ep]
    )


def test_merge_and_drop(pixel_dataset, tmp_path):
    root = pixel_dataset[0]
    merged = merge([root, root], tmp_path / "merged")
    dataset = Dataset(merged)
    assert dataset.num_episodes == 4
    original = Dataset(root)
    np.testing.assert_array_equal(
        dataset.episode(3)["observation.images.wrist"],
        original.episode(1)["observation.images.wrist"],
    )
    drop(merged, {0, 3})
    dataset = Dataset(merged)
    assert [e["length"] for e in dataset.episodes] == [e["length"] for e in original.episodes][::-1]
    np.testing.assert_array_equal(dataset.columns["index"], np.arange(dataset.num_frames))
    with pytest.raises(DatasetError, match="no episode 9"):
        drop(merged, {9})


def test_image_stats_shape():
    frames = np.zeros((5, 4, 4, 3), np.uint8)
    frames[..., 0] = 255
    s = stats.image_stats(frames)
    assert s["mean"].shape == (3, 1, 1) and s["mean"][0, 0, 0] == 1.0 and s["mean"][1, 0, 0] == 0.0
