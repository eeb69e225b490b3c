"""Where a camera policy's training step goes: drawing the batch from the decoded-video
cache, the image encoder (forward + backward), the U-Net (forward + backward), and the whole
step as `robotrl train` runs it (loss, backward, clipping, AdamW). Used by `robotrl bench
data` to set the cache's throughput beside what training consumes."""

from __future__ import annotations

import time

import numpy as np
import torch

from robotrl.data.dataset import Dataset
from robotrl.data.windows import WindowDataset


def profile_train_step(
    dataset: Dataset, batch_size: int = 64, n_obs: int = 2, horizon: int = 16, repeats: int = 5
) -> dict:
    """Median ms per part of a training step of the default camera policy on `dataset`
    (all its cameras + `observation.state`), after two untimed steps."""
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    keys, stats = tuple(dataset.video_keys), dataset.stats
    state = "observation.state"
    windows = WindowDataset(dataset, n_obs, horizon, (state,), keys)
    dataset.preload_videos()
    config = DiffusionConfig(
        obs_keys=(state,),
        obs_dims=(dataset.features[state]["shape"][0],),
        action_dim=dataset.features["action"]["shape"][0],
        n_obs=n_obs,
        horizon=horizon,
        image_keys=keys,
        image_shapes=tuple(tuple(dataset.features[k]["shape"]) for k in keys),
    )
    torch.manual_seed(0)
    policy = DiffusionPolicy(
        config,
        [(stats[state]["min"], stats[state]["max"])],
        (stats["action"]["min"], stats["action"]["max"]),
    ).train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"data": [], "encoder": [], "unet": [], "step": []}

    def timed(name: str, fn, count: bool):
        start = time.perf_counter()
        out = fn()
        if count:
            times[name].append((time.perf_counter() - start) * 1e3)
        return out

    for i in range(repeats + 2):
        count = i >= 2
        batch = timed("data", lambda: windows[rng.integers(0, len(windows), batch_size)], count)

        def encoder(batch=batch):
            policy.image_encoder(batch).square().mean().backward()

        def unet(batch=batch):
            with torch.no_grad():
                features = policy.image_encoder(batch)
            policy.loss(batch, image_features=features).backward()

        def step(batch=batch):
            loss = policy.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()

        timed("encoder", encoder, count)
        timed("unet", unet, count)
        policy.zero_grad(set_to_none=True)
        timed("step", step, count)
    out = {f"{k}_ms": float(np.median(v)) for k, v in times.items()}
    # the U-Net timing includes an encoder forward pass without autograd: not the U-Net's
    out["unet_ms"] = max(0.0, out["unet_ms"] - _forward_ms(policy, windows, rng, batch_size))
    out["batch_size"], out["n_obs"], out["threads"] = batch_size, n_obs, torch.get_num_threads()
    out["consumed_windows_per_s"] = batch_size / (out["step_ms"] + out["data_ms"]) * 1e3
    return out


def _forward_ms(policy, windows, rng, batch_size: int, repeats: int = 3) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            batch = windows[rng.integers(0, len(windows), batch_size)]
            start = time.perf_counter()
            policy.image_encoder(batch)
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))
