"""`eval --ray` and `collect --ray` on a real local Ray cluster of 2 CPUs (`ray start --head`)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# A `ray start` cluster authenticates with a token; a driver sends it in this mode, which
# Ray reads when it is imported.
os.environ["RAY_AUTH_MODE"] = "token"
pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("distributed")  # the cluster's two workers want both cores
ROBOTRL = [sys.executable, "-m", "robotrl.cli.main"]
RAY = Path(sys.executable).with_name("ray")


@pytest.fixture(scope="module")
def cluster():
    """The address of a 2-CPU Ray cluster started on this machine for these tests (with
    Ray's default token authentication)."""
    env = {**os.environ, "MUJOCO_GL": "egl", "RAY_USAGE_STATS_ENABLED": "0"}
    port = 46379 + os.getpid() % 1000
    started = subprocess.run(
        [str(RAY), "start", "--head", "--num-cpus", "2", "--port", str(port)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    address = re.search(r"ray start --address='([^']+)'", started.stdout + started.stderr)
    yield address.group(1)
    import ray

    ray.shutdown()  # a driver still connected when its cluster stops exits its process
    subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=env)


def test_eval_on_ray_gives_the_outcomes_of_worker_processes(reach_data, tmp_path, cluster):
    """`--ray auto`: the cluster this machine belongs to."""
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.evaluate import evaluate
    from robotrl.policies.train import TrainConfig, train

    cfg = TrainConfig(data=str(reach_data), out=str(tmp_path / "run"), steps=4, eval_every=0)
    cfg.batch_size, cfg.horizon, cfg.n_action_steps, cfg.channels = 16, 8, 4, "16,32"
    policy = load_policy(train(cfg, progress=False)).eval()
    policy.set_sampler("ddpm", 5)  # stochastic at every step: outcomes depend on the noise
    local = evaluate(policy, "Reach", episodes=20, seed=11, progress=False, workers=2)
    on_ray = evaluate(policy, "Reach", episodes=20, seed=11, progress=False, ray="auto")
    for key in ("successes", "lengths", "scores"):
        assert on_ray[key] == local[key]
    assert len(set(local["scores"])) == 20  # every episode differs: the match is not vacuous


def _recorder_pids() -> list[int]:
    """Ray actor processes in the middle of recording an episode (Ray titles them so)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "EpisodeRecorder.record" in line]


def test_ray_collection_with_a_killed_worker_is_the_dataset_one_process_records(tmp_path, cluster):
    from robotrl.data.dataset import Dataset

    out = tmp_path / "ray_demos"
    args = ["collect", "--task", "Lift", "--teleop", "expert", "--episodes", "100"]
    proc = subprocess.Popen(
        [*ROBOTRL, *args, "--out", str(out), "--ray", cluster],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed, deadline = False, time.monotonic() + 120
    while not killed and proc.poll() is None and time.monotonic() < deadline:
        parts = list((tmp_path / "ray_demos.ray").glob("worker-*/data/chunk-*/file-*.parquet"))
        pids = _recorder_pids() if len(parts) >= 10 else []
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert killed and "is recorded again" in stdout
    assert not (tmp_path / "ray_demos.ray").exists()  # the per-worker datasets are merged away
    _check_lerobot_layout(out, 100)
    info = subprocess.run([*ROBOTRL, "dataset", "info", str(out)], capture_output=True, text=True)
    assert info.returncode == 0 and "100 episodes" in info.stdout

    subprocess.run(
        [*ROBOTRL, *args, "--out", str(tmp_path / "one")], check=True, capture_output=True
    )
    ray_data, one = Dataset(out), Dataset(tmp_path / "one")
    assert np.array_equal(ray_data.ends - ray_data.starts, one.ends - one.starts)
    np.testing.assert_array_equal(ray_data.columns["action"], one.columns["action"])


def _check_lerobot_layout(root: Path, episodes: int) -> None:
    import json

    import pyarrow.parquet as pq

    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == episodes
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in rows] == list(range(episodes))
    assert rows[0]["dataset_from_index"] == 0
    assert all(b["dataset_from_index"] == a["dataset_to_index"] for a, b in zip(rows, rows[1:]))
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    index = [i for f in files for i in pq.read_table(f, columns=["index"])["index"].to_pylist()]
    assert index == list(range(rows[-1]["dataset_to_index"]))
