"""Replay buffers for off-policy RL: a schema-free ring buffer of transitions, symmetric
demo/online sampling (RLPD), demonstrations loaded from a LeRobot-v3 dataset, and
checkpoints as safetensors (no pickle).

A transition is a dict of numpy rows: `obs.<key>`, `next_obs.<key>` (keys as in the env's
observation dict: `state`, `environment_state`, `images.front`), `action` (env units),
`reward`, `terminated` (a true end, not a time limit) and `intervention` (a human acted).
The first `add` fixes the fields and their shapes and dtypes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from robotrl.errors import RobotrlError


class ReplayBuffer:
    def __init__(self, capacity: int = 200_000):
        self.capacity = int(capacity)
        self.data: dict[str, np.ndarray] = {}
        self.size = 0
        self.pos = 0  # next row to write
        self.added = 0  # rows ever added (for logs and resumes)

    def __len__(self) -> int:
        return self.size

    @property
    def fields(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {k: (v.shape[1:], v.dtype) for k, v in self.data.items()}

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Append a batch of transitions (every field with the same leading length)."""
        rows = {k: np.asarray(v) for k, v in rows.items()}
        n = len(next(iter(rows.values())))
        if any(len(v) != n for v in rows.values()):
            raise RobotrlError("transition fields have different lengths")
        if not self.data:
            self.data = {
                k: np.zeros((self.capacity, *v.shape[1:]), v.dtype) for k, v in rows.items()
            }
        if set(rows) != set(self.data):
            raise RobotrlError(
                f"transition fields {sorted(rows)} differ from the buffer's {sorted(self.data)}"
            )
        for start in range(0, n, self.capacity):  # a batch larger than the buffer wraps
            chunk = slice(start, min(n, start + self.capacity))
            idx = (self.pos + np.arange(chunk.stop - chunk.start)) % self.capacity
            for k, v in rows.items():
                self.data[k][idx] = v[chunk]
            self.pos = int((idx[-1] + 1) % self.capacity)
            self.size = min(self.capacity, self.size + len(idx))
        self.added += n

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, self.size, n)
        return {k: v[idx] for k, v in self.data.items()}

    # ---- checkpoints ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the filled rows, oldest first, then rename into place (a kill mid-write
        leaves the previous checkpoint)."""
        from safetensors.numpy import save_file

        path = Path(path)
        order = (self.pos - self.size + np.arange(self.size)) % self.capacity
        tensors = {k: np.ascontiguousarray(v[order]) for k, v in self.data.items()}
        meta = {"capacity": str(self.capacity), "added": str(self.added)}
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path, capacity: int | None = None) -> ReplayBuffer:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                rows = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as e:  # safetensors raises several types for a bad file
            raise RobotrlError(f"cannot read buffer checkpoint {path}: {e}") from None
        buffer = cls(capacity or int(meta.get("capacity", 200_000)))
        if rows:
            buffer.add(rows)
        buffer.added = int(meta.get("added", buffer.size))
        return buffer


def sample_mixed(
    online: ReplayBuffer, demo: ReplayBuffer, n: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """RLPD's symmetric sampling: half the batch from each buffer (all from whichever is the
    only non-empty one). `is_demo` marks the rows drawn from the demo buffer."""
    n_demo = n if len(online) == 0 else (0 if len(demo) == 0 else n // 2)
    parts = []
    if n_demo:
        parts.append({**demo.sample(n_demo, rng), "is_demo": np.ones(n_demo, bool)})
    if n - n_demo:
        parts.append({**online.sample(n - n_demo, rng), "is_demo": np.zeros(n - n_demo, bool)})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def load_demos(
    root: str | Path,
    episodes: int | None = None,
    obs_keys: tuple[str, ...] | None = None,
    reward: str = "sparse",
) -> dict[str, np.ndarray]:
    """Transitions of the first `episodes` episodes of a recorded dataset.

    `reward="sparse"` gives 1 on the step that succeeds (`next.success`), `dense` the recorded
    `next.reward`. The last frame of an episode has no next frame: its next observation
    repeats it, and it is terminal only if the episode succeeded."""
    from robotrl.data.dataset import Dataset

    dataset = Dataset(root)
    keys = obs_keys or tuple(
        k.removeprefix("observation.") for k in dataset.features if k.startswith("observation.")
    )
    count = dataset.num_episodes if episodes is None else min(episodes, dataset.num_episodes)
    if count == 0:
        raise RobotrlError(f"{root} holds no episodes")
    cols = dataset.columns
    parts = []
    for ep in range(count):
        rows = np.arange(dataset.starts[ep], dataset.ends[ep])
        nxt = np.minimum(rows + 1, rows[-1])
        success = _column(cols, "next.success", rows, False).astype(bool)
        part = {}
        for key in keys:
            name = f"observation.{key}"
            if name not in dataset.features:
                raise RobotrlError(f"{root} has no feature {name}")
            column = dataset.frames(name, rows) if name in dataset.video_keys else cols[name][rows]
            part[f"obs.{key}"] = column
            part[f"next_obs.{key}"] = column[np.searchsorted(rows, nxt)]
        part["action"] = cols["action"][rows].astype(np.float32)
        if reward == "dense":
            part["reward"] = _column(cols, "next.reward", rows, 0.0).astype(np.float32)
        else:
            part["reward"] = success.astype(np.float32)
        part["terminated"] = success
        part["intervention"] = _column(cols, "intervention", rows, False).astype(bool)
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _column(cols: dict, name: str, rows: np.ndarray, default) -> np.ndarray:
    if name not in cols:
        return np.full(len(rows), default)
    return np.asarray(cols[name][rows]).reshape(len(rows))


def write_json(path: Path, value) -> None:
    """Small JSON state (counters, versions) written atomically next to the buffers."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
