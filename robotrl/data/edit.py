"""Merge datasets and drop episodes. Edits build a new dataset next to the target and
swap it in, so a crash mid-edit leaves the original untouched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from robotrl.data import layout
from robotrl.data.dataset import Dataset
from robotrl.data.layout import DatasetError
from robotrl.data.writer import DatasetWriter

PER_EPISODE_KEYS = ("success", "intervention_frames", "achieved_fps", "below_nominal_rate")


def merge(sources: list[str | Path], out: str | Path, keep=None) -> Path:
    """Write every episode of `sources`, in order, to a new dataset `out`.
    `keep(source_index, episode_index) -> bool` filters episodes."""
    datasets = [Dataset(s) for s in sources]
    picks = [
        (s, i)
        for s, dataset in enumerate(datasets)
        for i in range(dataset.num_episodes)
        if keep is None or keep(s, i)
    ]
    return _write_episodes(datasets, picks, out)


def merge_episodes(picks: list[tuple[str | Path, int]], out: str | Path) -> Path:
    """The episodes `picks` ((dataset directory, episode index) pairs), in that order, as a
    new dataset `out`."""
    roots = list(dict.fromkeys(Path(root) for root, _ in picks))
    datasets = [Dataset(root) for root in roots]
    return _write_episodes(datasets, [(roots.index(Path(r)), i) for r, i in picks], out)


def _write_episodes(datasets: list[Dataset], picks: list[tuple[int, int]], out) -> Path:
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out} already exists: choose a new --out")
    first = datasets[0]
    for other in datasets[1:]:
        layout.check_same_features(first.features, other.features, other.root)
        if other.fps != first.fps:
            raise DatasetError(f"{other.root} is {other.fps} fps, {first.root} is {first.fps}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        writer = DatasetWriter(tmp, first.features, first.fps, first.info.get("robot_type", ""))
        for s, i in picks:
            _copy_episode(datasets[s], i, writer)
        os.replace(tmp, out)
    except BaseException:  # a source that fails halfway leaves no half-written dataset
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def swap_in(new: Path, root: Path) -> None:
    """Put the dataset `new` in the place of `root` (the original kept as .old until the
    new one is in place)."""
    old = root.with_name(root.name + ".old")
    os.replace(root, old)
    os.replace(new, root)
    shutil.rmtree(old)


def drop(root: str | Path, episodes: set[int], out: str | Path | None = None) -> Path:
    """Remove `episodes` (renumbering the rest). In place unless `out` is given."""
    root = Path(root)
    dataset = Dataset(root)
    unknown = sorted(e for e in episodes if not 0 <= e < dataset.num_episodes)
    if unknown:
        raise DatasetError(f"no episode {unknown[0]} in {root} ({dataset.num_episodes} episodes)")
    target = Path(out) if out else root.with_name(root.name + ".edited")
    merge([root], target, keep=lambda _, i: i not in episodes)
    if out is None:
        swap_in(target, root)
        target = root
    return target


def _copy_episode(dataset: Dataset, i: int, writer: DatasetWriter) -> None:
    row = dataset.episodes[i]
    sl = slice(dataset.starts[i], dataset.ends[i])
    frames = {
        k: v[sl]
        for k, v in dataset.columns.items()
        if k not in ("frame_index", "episode_index", "index", "task_index")
    }
    whole_files = {}
    for key in dataset.video_keys:
        path = dataset.root / dataset.info["video_path"].format(
            video_key=key,
            chunk_index=row[f"videos/{key}/chunk_index"],
            file_index=row[f"videos/{key}/file_index"],
        )
        frames[key] = dataset.frames(key, np.arange(sl.start, sl.stop))  # for shape and stats
        if _owns_video_file(dataset, i, key):
            whole_files[key] = path  # copied byte for byte: no second lossy encode
    task = dataset.tasks.get(int(dataset.columns["task_index"][sl.start]), "")
    extra = {k: row[k] for k in PER_EPISODE_KEYS if row.get(k) is not None}
    writer.add_episode(frames, task, extra, video_files=whole_files)


def _owns_video_file(dataset: Dataset, i: int, key: str) -> bool:
    """Whether episode i is the only one in its video file (our layout; LeRobot's aggregates)."""

    def file_of(row):
        return row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]

    mine = file_of(dataset.episodes[i])
    return sum(file_of(row) == mine for row in dataset.episodes) == 1
