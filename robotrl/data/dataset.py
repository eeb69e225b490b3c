"""Read a LeRobot v3.0 dataset (ours or LeRobot's): metadata, frames as numpy, decoded video.

All tabular data is loaded into memory as numpy arrays at open (a state dataset of a few
hundred episodes is tens of MB); videos are decoded per episode on first use and kept
(`decoded-video cache`), so training reads memory, not files.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robotrl.data import layout, video
from robotrl.data.layout import DatasetError
from robotrl.data.writer import read_episodes, read_tasks, table_columns


class Dataset:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = layout.load_info(self.root)
        self.features: dict = self.info["features"]
        self.fps: float = float(self.info["fps"])
        self.video_keys = layout.video_keys(self.features)
        self.episodes = read_episodes(self.root)
        self.tasks = {i: t for t, i in read_tasks(self.root).items()}
        self.columns = self._load_columns()
        index = self.columns["index"]
        self.starts = np.searchsorted(index, [e["dataset_from_index"] for e in self.episodes])
        self.ends = np.searchsorted(index, [e["dataset_to_index"] for e in self.episodes])
        self._videos: dict[str, np.ndarray] = {}  # key -> [num_frames, H, W, 3], filled per episode
        self._decoded: dict[str, np.ndarray] = {
            k: np.zeros(len(self.episodes), bool) for k in self.video_keys
        }
        for key in self.video_keys:
            h, w, c = self.features[key]["shape"]
            # np.empty reserves address space; pages are only touched as episodes decode.
            self._videos[key] = np.empty((self.num_frames, h, w, c), np.uint8)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return len(self.columns["index"])

    @cached_property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        path = self.root / layout.STATS_PATH
        if not path.exists():
            return {}
        raw = layout.read_json(path, dict)
        try:
            return {
                k: {s: np.asarray(v, dtype=np.float64) for s, v in d.items()}
                for k, d in raw.items()
            }
        except (AttributeError, TypeError, ValueError):
            raise DatasetError(
                f"{path}: each feature's statistics must be an object of number lists"
            ) from None

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Every feature of episode `i` as [T, ...] arrays (videos decoded)."""
        sl = slice(self.starts[i], self.ends[i])
        out = {k: v[sl] for k, v in self.columns.items()}
        for key in self.video_keys:
            out[key] = self.frames(key, np.arange(sl.start, sl.stop))
        return out

    def frames(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Decoded frames of video `key` at dataset rows `rows` (any shape): decodes the
        episodes they fall in once, then indexes memory."""
        rows = np.asarray(rows)
        episodes = np.searchsorted(self.ends, rows.ravel(), side="right")
        missing = [int(ep) for ep in np.unique(episodes[~self._decoded[key][episodes]])]
        if len(missing) > 1:  # PyAV decodes without the GIL: episodes in parallel
            with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                list(pool.map(lambda ep: self._decode_episode(key, ep), missing))
        elif missing:
            self._decode_episode(key, missing[0])
        return self._videos[key][rows]

    def preload_videos(self) -> None:
        for key in self.video_keys:
            self.frames(key, np.arange(self.num_frames))

    def _decode_episode(self, key: str, ep: int) -> None:
        row = self.episodes[ep]
        path = self.root / self.info["video_path"].format(
            video_key=key,
            chunk_index=row[f"videos/{key}/chunk_index"],
            file_index=row[f"videos/{key}/file_index"],
        )
        count = int(self.ends[ep] - self.starts[ep])
        frames = video.decode(path, start=float(row[f"videos/{key}/from_timestamp"]), count=count)
        self._videos[key][self.starts[ep] : self.ends[ep]] = frames
        self._decoded[key][ep] = True

    def _load_columns(self) -> dict[str, np.ndarray]:
        files = sorted({(e["data/chunk_index"], e["data/file_index"]) for e in self.episodes})
        tables = []
        for chunk, file in files:
            path = self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)
            try:
                tables.append(pq.read_table(path))
            except FileNotFoundError as e:
                raise DatasetError(f"missing data file {path}") from e
            except (OSError, pa.ArrowException) as e:
                raise DatasetError(f"corrupt data file {path}: {str(e).splitlines()[0]}") from e
        if not tables:
            empty = {
                k: np.zeros((0, *f["shape"]))
                for k, f in self.features.items()
                if f["dtype"] not in ("video", "image")
            }
            empty["index"] = np.zeros(0, np.int64)
            return empty
        table = pa.concat_tables(tables, promote_options="default")
        columns = table_columns(table, self.features)
        order = np.argsort(columns["index"], kind="stable")
        committed = np.isin(
            columns["episode_index"][order], [e["episode_index"] for e in self.episodes]
        )
        keep = order[committed]  # files may hold rows of episodes that were never committed
        return {k: v[keep] for k, v in columns.items()}
