"""`robotrl bench data`: training-window throughput from a dataset, state only and with video.

"cold" is the first pass over the data, decoding every video episode once; "warm" passes read
the decoded-video cache, which is what every later training epoch sees. For a dataset with
cameras, one training step of the default camera policy is timed too (data, encoder, U-Net,
whole step: `robotrl.policies.step_profile`), so the cache's rate stands beside what a step
consumes.
"""

from __future__ import annotations

import time

from robotrl.data.dataset import Dataset
from robotrl.data.windows import WindowDataset


def bench_loader(
    root,
    batch_size: int = 256,
    n_obs: int = 2,
    horizon: int = 16,
    warm_passes: int = 3,
    train_batch_size: int = 64,
) -> list[dict]:
    rows = []
    dataset = Dataset(root)
    variants = [("state", ())]
    if dataset.video_keys:
        variants.append((f"state+{len(dataset.video_keys)} video", tuple(dataset.video_keys)))
    for name, image_keys in variants:
        windows = WindowDataset(Dataset(root), n_obs, horizon, image_keys=image_keys)
        cold = _one_pass(windows, batch_size)
        warm = max(_one_pass(windows, batch_size, seed=s) for s in range(1, warm_passes + 1))
        rows.append(
            {
                "dataset": str(root),
                "inputs": name,
                "windows": len(windows),
                "batch_size": batch_size,
                "cold_windows_per_s": cold,
                "warm_windows_per_s": warm,
            }
        )
        if image_keys:
            from robotrl.policies.step_profile import profile_train_step

            step = profile_train_step(windows.dataset, train_batch_size, n_obs, horizon)
            rows[-1]["train_step"] = step
            rows[-1]["cache_vs_training"] = warm / step["consumed_windows_per_s"]
    return rows


def _one_pass(windows: WindowDataset, batch_size: int, seed: int = 0) -> float:
    start, count = time.perf_counter(), 0
    for batch in windows.loader(batch_size=batch_size, seed=seed):
        count += len(batch["action"])
    return count / (time.perf_counter() - start)


def format_table(rows: list[dict]) -> str:
    lines = [
        "| dataset | inputs | windows | first pass (decodes) | later passes |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['inputs']} | {r['windows']} | "
            f"{r['cold_windows_per_s']:,.0f}/s | {r['warm_windows_per_s']:,.0f}/s |"
        )
    for r in rows:
        if "train_step" in r:
            s = r["train_step"]
            lines.append(
                f"\n{r['inputs']}: a camera training step at batch {s['batch_size']} "
                f"(n_obs {s['n_obs']}, {s['threads']} threads) takes {s['step_ms']:.0f} ms "
                f"(encoder fwd+bwd {s['encoder_ms']:.0f}, U-Net fwd+bwd {s['unet_ms']:.0f}, "
                f"drawing the batch {s['data_ms']:.1f}) and consumes "
                f"{s['consumed_windows_per_s']:,.0f} windows/s; the cache serves "
                f"{r['cache_vs_training']:,.0f}x that"
            )
    return "\n".join(lines)
