"""Append episodes to a LeRobot v3.0 dataset, crash-safely.

An episode is committed in this order, every file written under a temporary name and renamed:
  1. its videos, 2. its data file, 3. the episodes table (the commit point),
  4. info.json and stats.json (caches, derived from the episodes table; repaired on open).
A kill at any moment therefore leaves every committed episode intact. On the next open,
files of an episode that was written but not committed are validated and the episode is
recovered, or they are deleted; an episode that was still being recorded is reported as
dropped. Either way with a message.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robotrl.data import layout, stats, video
from robotrl.data.layout import DatasetError

log = logging.getLogger("robotrl.data")
RECORDING_MARKER = "meta/recording.json"  # present while an episode is being recorded


class DatasetWriter:
    """Creates a dataset at `root`, or opens an existing one to append (resume)."""

    def __init__(self, root: str | Path, features: dict, fps: float, robot_type: str):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root} is a file, not a dataset directory")
        if (self.root / layout.INFO_PATH).exists():
            self.info = layout.load_info(self.root)
            layout.check_same_features(self.info["features"], features, self.root)
            if abs(self.info["fps"] - fps) > 1e-6:
                raise DatasetError(f"{self.root} was recorded at {self.info['fps']} fps, not {fps}")
        elif self.root.exists() and any(
            p.is_file() and p.suffix != ".tmp" for p in self.root.rglob("*")
        ):
            raise DatasetError(f"{self.root} exists and is not a dataset (no {layout.INFO_PATH})")
        else:  # new, or a creation that was killed before info.json landed
            self.info = layout.new_info(features, fps, robot_type)
            try:
                layout.atomic_write_json(self.root / layout.INFO_PATH, self.info)
            except OSError as e:
                raise DatasetError(f"cannot create a dataset at {self.root}: {e.strerror}") from e
        self.features = self.info["features"]
        self.video_keys = layout.video_keys(self.features)
        self.episodes = read_episodes(self.root)
        self.tasks = read_tasks(self.root)
        self.messages = self._recover()
        for message in self.messages:
            log.warning(message)
        self._write_derived()

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    # ---- recording markers --------------------------------------------------------------
    def begin_episode(self) -> int:
        """Note that episode N is being recorded, so a crash can be reported on next open."""
        index = self.num_episodes
        marker = {"episode_index": index, "started": time.time(), "pid": os.getpid()}
        layout.atomic_write_json(self.root / RECORDING_MARKER, marker)
        return index

    def abandon_episode(self) -> None:
        (self.root / RECORDING_MARKER).unlink(missing_ok=True)

    # ---- commit -------------------------------------------------------------------------
    def add_episode(
        self,
        frames: dict[str, np.ndarray],
        task: str,
        extra: dict | None = None,
        video_files: dict[str, Path] | None = None,
    ) -> int:
        """Commit one episode atomically. `frames` maps feature names to [T, ...] arrays
        (images as uint8 [T, H, W, 3]); the index columns are filled in here. `video_files`
        gives finished MP4s of exactly this episode to copy instead of encoding frames."""
        index = self.num_episodes
        length = len(frames["action"])
        if length == 0:
            raise DatasetError("cannot save an empty episode")
        if task not in self.tasks:
            self.tasks[task] = len(self.tasks)
            write_tasks(self.root, self.tasks)
        columns = self._index_columns(frames, index, self.tasks[task])
        self._check_shapes(columns, frames, length)
        chunk, file = layout.chunk_file(index)
        timestamps = columns["timestamp"].astype(np.float64)
        for key in self.video_keys:
            path = self.root / layout.VIDEO_PATH.format(
                video_key=key, chunk_index=chunk, file_index=file
            )
            if video_files and key in video_files:
                layout.copy_file(video_files[key], path)
            else:
                video.encode(path, frames[key], timestamps - timestamps[0], self.info["fps"])
        data_path = self.root / layout.DATA_PATH.format(chunk_index=chunk, file_index=file)
        write_parquet(data_path, frame_table(columns, self.features))
        self._commit(columns, frames, task, extra or {})
        return index

    def _index_columns(self, frames: dict, index: int, task_index: int) -> dict[str, np.ndarray]:
        length = len(frames["action"])
        start = self.episodes[-1]["dataset_to_index"] if self.episodes else 0
        columns = {k: np.asarray(v) for k, v in frames.items() if k not in self.video_keys}
        columns["frame_index"] = np.arange(length)
        columns["episode_index"] = np.full(length, index)
        columns["index"] = np.arange(start, start + length)
        columns["task_index"] = np.full(length, task_index)
        return columns

    def _commit(self, columns: dict, frames: dict, task: str, extra: dict) -> None:
        """Append the episode's row to the episodes table: from here on it exists."""
        index, length = int(columns["episode_index"][0]), len(columns["index"])
        episode_stats = {k: stats.feature_stats(v) for k, v in columns.items() if _stat_feature(k)}
        episode_stats |= {k: stats.image_stats(frames[k]) for k in self.video_keys}
        row = self._episode_row(
            index,
            task,
            int(columns["index"][0]),
            length,
            columns["timestamp"].astype(np.float64),
            extra,
        )
        self.episodes.append(row | stats.flatten(episode_stats))
        write_episodes(self.root, self.episodes)  # the commit point
        self.abandon_episode()
        self._write_derived()

    def _episode_row(self, index, task, start, length, timestamps, extra) -> dict:
        chunk, file = layout.chunk_file(index)
        duration = float(timestamps[-1] - timestamps[0]) if length > 1 else 0.0
        achieved = (length - 1) / duration if duration > 0 else float(self.info["fps"])
        row = {
            "episode_index": index,
            "tasks": [task],
            "length": length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": start,
            "dataset_to_index": start + length,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
            "achieved_fps": achieved,
            "below_nominal_rate": bool(achieved < 0.95 * self.info["fps"]),
        }
        for key in self.video_keys:
            row |= {
                f"videos/{key}/chunk_index": chunk,
                f"videos/{key}/file_index": file,
                f"videos/{key}/from_timestamp": 0.0,
                f"videos/{key}/to_timestamp": length / self.info["fps"],
            }
        return row | extra

    def _check_shapes(self, columns: dict, frames: dict, length: int) -> None:
        for key, feature in self.features.items():
            value = frames.get(key) if key in self.video_keys else columns.get(key)
            if value is None:
                raise DatasetError(f"episode has no '{key}'")
            shape = list(feature["shape"])
            got = list(value.shape[1:]) or [1]
            if len(value) != length or got != shape:
                raise DatasetError(
                    f"'{key}' has shape {list(value.shape)}, expected [{length}, "
                    f"{', '.join(map(str, shape))}]"
                )

    def _write_derived(self) -> None:
        """info.json totals and stats.json follow from the episodes table."""
        total = self.episodes[-1]["dataset_to_index"] if self.episodes else 0
        self.info |= {
            "total_episodes": len(self.episodes),
            "total_frames": total,
            "total_tasks": len(self.tasks),
            "splits": {"train": f"0:{len(self.episodes)}"} if self.episodes else {},
        }
        layout.atomic_write_json(self.root / layout.INFO_PATH, self.info)
        per_episode = [stats.unflatten(row) for row in self.episodes]
        layout.atomic_write_json(self.root / layout.STATS_PATH, stats.aggregate(per_episode))

    # ---- recovery -----------------------------------------------------------------------
    def _recover(self) -> list[str]:
        messages = []
        for tmp in sorted(self.root.rglob("*.tmp")):
            tmp.unlink()
            messages.append(f"removed partial file {tmp.relative_to(self.root)}")
        orphans = sorted(
            (_episode_of(p), p)
            for p in self.root.glob("data/chunk-*/file-*.parquet")
            if _episode_of(p) >= self.num_episodes
        )
        for index, path in orphans:
            if index == self.num_episodes and self._try_recover(path, messages):
                continue
            self._delete_episode_files(index)
            messages.append(f"dropped episode {index}: its files were written but never committed")
        for path in sorted(self.root.glob("videos/*/chunk-*/file-*.mp4")):
            if _episode_of(path) >= self.num_episodes:
                path.unlink()
        marker = self.root / RECORDING_MARKER
        if marker.exists():
            try:
                started = json.loads(marker.read_text())
                index = started.get("episode_index", self.num_episodes)
                if index >= self.num_episodes:
                    messages.append(
                        f"dropped interrupted episode {index}: recording stopped "
                        "before the episode finished"
                    )
            except (json.JSONDecodeError, OSError, AttributeError, TypeError):
                messages.append("dropped an interrupted episode (unreadable recording marker)")
            marker.unlink()
        return messages

    def _try_recover(self, path: Path, messages: list[str]) -> bool:
        """Commit an episode whose files are complete but which missed the commit point."""
        index = _episode_of(path)
        try:
            table = pq.read_table(path)
            columns = table_columns(table, self.features)
            task_index = int(columns["task_index"][0])
            task = {i: t for t, i in self.tasks.items()}[task_index]
            chunk, file = layout.chunk_file(index)
            frames = {}
            for key in self.video_keys:
                vpath = self.root / layout.VIDEO_PATH.format(
                    video_key=key, chunk_index=chunk, file_index=file
                )
                frames[key] = video.decode(vpath, count=len(table))
            if int(columns["index"][0]) != (
                self.episodes[-1]["dataset_to_index"] if self.episodes else 0
            ):
                raise DatasetError("its frame indices do not follow the last committed episode")
        except (OSError, pa.ArrowException, KeyError, IndexError, DatasetError) as e:
            messages.append(f"episode {index} is incomplete ({str(e).splitlines()[0]})")
            return False
        self._commit(columns, frames, task, {"recovered": True})
        messages.append(f"recovered episode {index} ({len(table)} frames) written before a crash")
        return True

    def _delete_episode_files(self, index: int) -> None:
        chunk, file = layout.chunk_file(index)
        (self.root / layout.DATA_PATH.format(chunk_index=chunk, file_index=file)).unlink(
            missing_ok=True
        )
        for key in self.video_keys:
            path = layout.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            (self.root / path).unlink(missing_ok=True)


def _stat_feature(key: str) -> bool:
    return key not in ("frame_index", "episode_index", "index", "task_index")


def _episode_of(path: Path) -> int:
    chunk = int(path.parent.name.removeprefix("chunk-"))
    return chunk * layout.CHUNKS_SIZE + int(path.stem.removeprefix("file-"))


# ---- parquet tables -------------------------------------------------------------------------
def frame_table(columns: dict[str, np.ndarray], features: dict) -> pa.Table:
    """Vectors as fixed-size lists (HF `Sequence(length=n)`), scalars as plain columns."""
    arrays = {}
    for key, feature in features.items():
        if feature["dtype"] in ("video", "image"):
            continue
        value = np.asarray(columns[key]).astype(feature["dtype"])
        if list(feature["shape"]) == [1]:
            arrays[key] = pa.array(value.reshape(-1))
        else:
            n = int(np.prod(feature["shape"]))
            arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(value.reshape(-1)), n)
    return pa.table(arrays)


def table_columns(table: pa.Table, features: dict) -> dict[str, np.ndarray]:
    """The inverse of `frame_table`: numpy arrays [T, ...] per feature (bit-exact)."""
    out = {}
    for key, feature in features.items():
        if feature["dtype"] in ("video", "image"):
            continue
        if key not in table.column_names:
            raise DatasetError(f"data has no column '{key}'")
        column = table.column(key).combine_chunks()
        if list(feature["shape"]) == [1]:
            out[key] = column.to_numpy(zero_copy_only=False)
        else:
            values = column.flatten().to_numpy(zero_copy_only=False)
            out[key] = values.reshape(len(column), *feature["shape"])
    return out


def write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    layout.commit_file(tmp, path)


def read_episodes(root: Path) -> list[dict]:
    """Committed episode rows, from every file under meta/episodes/ (LeRobot may have many)."""
    rows = []
    for path in sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet")):
        try:
            rows += pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowException) as e:
            raise DatasetError(f"corrupt episodes table {path}: {str(e).splitlines()[0]}") from e
    return sorted(rows, key=lambda r: r["episode_index"])


def write_episodes(root: Path, rows: list[dict]) -> None:
    # from_pylist takes its columns from the first row: give every row every column.
    keys = list(dict.fromkeys(k for row in rows for k in row))
    table = pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])
    write_parquet(root / layout.EPISODES_PATH, table)


def read_tasks(root: Path) -> dict[str, int]:
    path = root / layout.TASKS_PATH
    if not path.exists():
        return {}
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"corrupt tasks table {path}: {str(e).splitlines()[0]}") from e
    return {str(task): int(i) for task, i in zip(frame.index, frame["task_index"])}


def write_tasks(root: Path, tasks: dict[str, int]) -> None:
    """LeRobot's layout: a DataFrame indexed by the task text, with a `task_index` column."""
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks)).to_parquet(buffer)
    layout.atomic_write_bytes(root / layout.TASKS_PATH, buffer.getvalue())
