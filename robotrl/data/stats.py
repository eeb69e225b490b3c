"""Normalization statistics, per episode and aggregated (the LeRobot stats.json shape).

Per feature: min, max, mean, std, count and the quantiles q01, q10, q50, q90, q99. Images
get per-channel statistics of pixel values in [0, 1], shaped [3, 1, 1] as LeRobot does.
Aggregated quantiles are the count-weighted mean of the episodes' quantiles (an
approximation LeRobot makes as well); min, max, mean and std are exact.
"""

from __future__ import annotations

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
IMAGE_SAMPLE_FRAMES = 20  # frames per episode used for image statistics


def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics over axis 0 of [T, ...] values (float64 for accuracy)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    stats = {
        "min": x.min(0),
        "max": x.max(0),
        "mean": x.mean(0),
        "std": x.std(0),
        "count": np.array([len(x)]),
    }
    for name, q in QUANTILES.items():
        stats[name] = np.quantile(x, q, axis=0)
    return stats


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of uint8 frames [T, H, W, 3], values in [0, 1], shape [3, 1, 1]."""
    step = max(1, len(frames) // IMAGE_SAMPLE_FRAMES)
    pixels = frames[::step].reshape(-1, 3).astype(np.float64) / 255.0
    stats = {k: v.reshape(3, 1, 1) for k, v in feature_stats(pixels).items() if k != "count"}
    return stats | {"count": np.array([len(frames)])}  # frames, not sampled pixels


def aggregate(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict:
    """Combine episodes' statistics into the dataset's."""
    if not per_episode:
        return {}
    out = {}
    for key in per_episode[0]:
        parts = [ep[key] for ep in per_episode if key in ep]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        weights = counts / counts.sum()
        means = np.stack([p["mean"] for p in parts])
        mean = np.tensordot(weights, means, axes=1)
        # Total variance = mean of variances + variance of means (parallel-axis theorem).
        second = np.tensordot(weights, np.stack([p["std"] ** 2 for p in parts]) + means**2, axes=1)
        out[key] = {
            "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
            "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
            "mean": mean,
            "std": np.sqrt(np.maximum(second - mean**2, 0.0)),
            "count": np.array([int(counts.sum())]),
        }
        for name in QUANTILES:
            out[key][name] = np.tensordot(weights, np.stack([p[name] for p in parts]), axes=1)
    return out


def flatten(stats: dict, prefix: str = "stats") -> dict[str, list]:
    """{feature: {stat: array}} -> {"stats/feature/stat": list} for the episodes table."""
    return {
        f"{prefix}/{k}/{s}": np.asarray(v).tolist() for k, d in stats.items() for s, v in d.items()
    }


def unflatten(row: dict, prefix: str = "stats") -> dict:
    out: dict = {}
    for column, value in row.items():
        if column.startswith(prefix + "/") and value is not None:
            _, feature, stat = column.rsplit("/", 2)
            out.setdefault(feature, {})[stat] = np.asarray(value, dtype=np.float64)
    return out
