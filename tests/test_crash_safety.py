"""Kill a recording process with SIGKILL at random moments, 20 times, appending to one dataset:
committed episodes are never lost or changed, and the interrupted one is recovered or dropped."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from robotrl.data.dataset import Dataset
from robotrl.data.writer import DatasetWriter

RUNS = 20
RECORD_FOREVER = """
import sys
from robotrl.tasks import make, make_expert
from robotrl.data.recorder import Recorder
env = make("Reach", obs_mode="state+pixels", image_size=(48, 48))
recorder = Recorder(env, sys.argv[1], task="reach")
print("recording", flush=True)
expert, seed = make_expert(env), 0
while True:
    obs, _ = recorder.reset(seed=seed)
    expert.reset()
    done = False
    while not done:
        obs, _, terminated, truncated, _ = recorder.step(expert.select_action(obs))
        done = terminated or truncated
    seed += 1
"""


def _check_intact(root, verified: dict | None = None) -> Dataset:
    """Every committed episode loads: fully (videos decoded) the first time it is seen, and
    byte-identical files after that."""
    dataset = Dataset(root)
    verified = {} if verified is None else verified
    assert dataset.num_frames == sum(e["length"] for e in dataset.episodes)
    np.testing.assert_array_equal(dataset.columns["index"], np.arange(dataset.num_frames))
    for i, row in enumerate(dataset.episodes):
        files = _episode_files(root, i)
        if i in verified:
            assert verified[i] == files, f"episode {i} changed after it was committed"
            continue
        episode = dataset.episode(i)  # decodes both videos: a truncated file would fail here
        assert row["episode_index"] == i
        np.testing.assert_array_equal(episode["frame_index"], np.arange(row["length"]))
        assert episode["observation.images.front"].shape == (row["length"], 48, 48, 3)
        verified[i] = files
    return dataset


def _episode_files(root, i) -> tuple[bytes, ...]:
    name = f"file-{i:03d}"
    paths = [root / f"data/chunk-000/{name}.parquet"] + sorted(
        root.glob(f"videos/*/chunk-000/{name}.mp4")
    )
    return tuple(hashlib.sha256(p.read_bytes()).digest() for p in paths)


def test_sigkill_never_corrupts_committed_episodes(tmp_path):
    root = tmp_path / "crash"
    rng = np.random.default_rng(0)
    verified: dict[int, tuple] = {}
    outcomes = {"recovered": 0, "dropped": 0}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(RUNS):
        proc = subprocess.Popen(
            [sys.executable, "-c", RECORD_FOREVER, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout.readline().strip() == b"recording", proc.stderr.read().decode()
        time.sleep(rng.uniform(0.05, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        committed_before = len(verified)
        dataset = _check_intact(root, verified)
        assert dataset.num_episodes >= committed_before  # nothing committed vanished
        features, fps = dataset.features, dataset.fps
        messages = DatasetWriter(root, features, fps, "panda").messages  # what the next run does
        outcomes["recovered"] += any("recovered" in m for m in messages)
        outcomes["dropped"] += any("dropped" in m for m in messages)
        assert not list(root.rglob("*.tmp"))
        _check_intact(root, verified)
    assert len(verified) >= 10, f"only {len(verified)} episodes committed in {RUNS} runs"
    assert outcomes["dropped"] + outcomes["recovered"] >= RUNS // 2
    print(f"{len(verified)} episodes committed; interrupted episodes: {outcomes}")


@pytest.mark.parametrize("stage", ["videos", "data"])
def test_episode_written_but_not_committed_is_recovered(tmp_path, stage):
    """Simulate a kill between writing an episode's files and the commit point."""
    from tests.test_data import record

    root = tmp_path / "d"
    record(root, task="Reach", episodes=2, obs_mode="state+pixels", image_size=(48, 48))
    episodes_table = root / "meta/episodes/chunk-000/file-000.parquet"
    before = episodes_table.read_bytes()
    record(root, task="Reach", episodes=1, seed=5, obs_mode="state+pixels", image_size=(48, 48))
    episodes_table.write_bytes(before)  # as if the commit of episode 2 never happened
    if stage == "videos":
        (root / "data/chunk-000/file-002.parquet").unlink()  # killed before the data file
    dataset = Dataset(root)
    assert dataset.num_episodes == 2  # readers see only committed episodes
    writer = DatasetWriter(root, dataset.features, dataset.fps, "panda")
    if stage == "data":
        assert any("recovered episode 2" in m for m in writer.messages), writer.messages
        assert _check_intact(root).num_episodes == 3
    else:
        assert not list(root.glob("videos/*/chunk-000/file-002.mp4"))
        assert _check_intact(root).num_episodes == 2
