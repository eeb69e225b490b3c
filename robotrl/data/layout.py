"""The LeRobotDataset v3.0 on-disk layout: paths, feature descriptions, atomic file writes.

    meta/info.json  meta/stats.json  meta/tasks.parquet
    meta/episodes/chunk-000/file-000.parquet      one row per committed episode
    data/chunk-XXX/file-XXX.parquet               frames
    videos/<key>/chunk-XXX/file-XXX.mp4           camera streams

robotrl writes one episode per data file and per video file (a valid v3 layout: the episodes
table says where each episode lives), which is what makes committing an episode atomic. It
reads the aggregated layout LeRobot writes (many episodes per file) too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from robotrl.env import RobotSpec
from robotrl.errors import RobotrlError

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
VIDEO_CODEC, VIDEO_PIX_FMT = "h264", "yuv420p"

# Every frame has these, whatever the robot.
INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
STEP_FEATURES = {
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "next.success": {"dtype": "bool", "shape": [1], "names": None},
    "intervention": {"dtype": "bool", "shape": [1], "names": None},
}


class DatasetError(RobotrlError):
    """A dataset on disk is missing, corrupt or does not match what is being written."""


def features_for(robot: RobotSpec, fps: float, policy_action: bool = False) -> dict:
    """The feature table (info.json `features`) for recording an env with this robot."""
    features = {
        "observation.state": _vector(robot.state_names),
        "action": _vector(robot.action.names),
    }
    if robot.environment_state_names:
        features["observation.environment_state"] = _vector(robot.environment_state_names)
    for cam in robot.cameras:
        features[f"observation.images.{cam.name}"] = {
            "dtype": "video",
            "shape": [cam.height, cam.width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": cam.height,
                "video.width": cam.width,
                "video.codec": VIDEO_CODEC,
                "video.pix_fmt": VIDEO_PIX_FMT,
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    if policy_action:
        features["policy_action"] = _vector(robot.action.names)
    return {**features, **STEP_FEATURES, **INDEX_FEATURES}


def _vector(names) -> dict:
    return {"dtype": "float32", "shape": [len(names)], "names": list(names)}


def video_keys(features: dict) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] == "video"]


def new_info(features: dict, fps: float, robot_type: str) -> dict:
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video_keys(features) else None,
        "features": features,
    }


def load_info(root: Path) -> dict:
    path = root / INFO_PATH
    if not root.is_dir():
        raise DatasetError(f"no dataset at {root}: not a directory")
    if not path.is_file():
        raise DatasetError(f"{root} is not a dataset: {INFO_PATH} is missing")
    info = read_json(path, dict)
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DatasetError(f"{root} is a LeRobot {version or '?'} dataset; only v3.x is supported")
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise DatasetError(f"{path} has no '{key}'")
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < float("inf"):
        raise DatasetError(f"{path}: fps must be a positive number, got {fps!r}")
    if not isinstance(info["data_path"], str):
        raise DatasetError(
            f"{path}: data_path must be a string, got {json_type(info['data_path'])}"
        )
    features = info["features"]
    if not isinstance(features, dict):
        raise DatasetError(f"{path}: features must be an object, got {json_type(features)}")
    for key, feature in features.items():
        if not isinstance(feature, dict):
            raise DatasetError(
                f"{path}: feature '{key}' must be an object, got {json_type(feature)}"
            )
        shape = feature.get("shape")
        if not isinstance(feature.get("dtype"), str) or not (
            isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
        ):
            raise DatasetError(
                f"{path}: feature '{key}' needs a dtype and a shape (a list of sizes)"
            )
    if video_keys(features) and not isinstance(info.get("video_path"), str):
        raise DatasetError(f"{path}: the dataset has videos but no video_path")
    return info


def read_json(path: Path, kind: type):
    """A JSON file that must hold a `kind` (dict or list): one clear line when it does not."""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from e
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror}") from e
    if not isinstance(value, kind):
        want = "an object" if kind is dict else "a list"
        raise DatasetError(f"{path} holds {json_type(value)} where {want} belongs")
    return value


def json_type(value) -> str:
    """What a parsed JSON value is, in words."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def check_same_features(existing: dict, wanted: dict, root: Path) -> None:
    """Appending must not change what a frame holds: one line naming the first difference."""
    for key in sorted(set(existing) | set(wanted)):
        a, b = existing.get(key), wanted.get(key)
        if a is None or b is None:
            side = "the dataset" if a is None else "the recording"
            raise DatasetError(f"feature mismatch with {root}: '{key}' is missing from {side}")
        if list(a["shape"]) != list(b["shape"]) or a["dtype"] != b["dtype"]:
            raise DatasetError(
                f"feature shape mismatch with {root}: '{key}' is {a['dtype']}{list(a['shape'])} "
                f"there, {b['dtype']}{list(b['shape'])} here"
            )


def chunk_file(episode_index: int) -> tuple[int, int]:
    return divmod(episode_index, CHUNKS_SIZE)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary name, flush to disk, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    commit_file(tmp, path)


def commit_file(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def copy_file(source: Path, path: Path) -> None:
    atomic_write_bytes(path, Path(source).read_bytes())


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, json.dumps(_plain(data), indent=4).encode())


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
