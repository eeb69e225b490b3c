"""`robotrl bench policy`: time to plan one action chunk, batch 1 on this machine, for the
same network sampled five ways: DDPM with 100 steps, DDIM with 10, and the consistency
policy with 1 and 3 steps, and 1 step for 8 candidate chunks at once (what
`candidates = 8` plans with). Latency does not depend on the weights, so without a checkpoint
the benchmark builds the default network at the PushT state policy's sizes."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

# PushT state policy: 14 joint/ee values + 4 block values in, 6-D end-effector deltas out
DEFAULT_DIMS = {"obs_dims": (14, 4), "action_dim": 6}


def bench_policy(
    policy_path: str | None = None,
    repeats: int = 50,
    threads: int = 0,
    only: tuple[str, ...] | None = None,
) -> list:
    """Median and p99 ms per chunk of each sampler (`only`: a subset of the names)."""
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.consistency import ConsistencyPolicy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    loaded = load_policy(policy_path) if policy_path else None
    if loaded is None:
        teacher = DiffusionPolicy(DiffusionConfig(**DEFAULT_DIMS))
    elif loaded.kind == "consistency":  # same network: run it as its own teacher would
        names = {f.name for f in dataclasses.fields(DiffusionConfig)}
        fields = {k: v for k, v in loaded.config.to_dict().items() if k in names}
        teacher = DiffusionPolicy(DiffusionConfig.from_dict(fields))
        teacher.load_state_dict(loaded.state_dict())
    else:
        teacher = loaded
    student = loaded if loaded is not None and loaded.kind == "consistency" else None
    student = (student or ConsistencyPolicy.from_teacher(teacher)).eval()
    teacher.eval()
    window = _random_window(teacher)
    variants = [  # name, policy, sampler, network evaluations, chunks per pass
        ("DDPM-100", teacher, "ddpm", 100, 1),
        ("DDIM-10", teacher, "ddim", 10, 1),
        ("consistency-1", student, "cm", 1, 1),
        ("consistency-3", student, "cm", 3, 1),
        ("consistency-1x8", student, "cm", 1, 8),
    ]
    variants = [v for v in variants if only is None or v[0] in only]
    params = sum(p.numel() for p in teacher.parameters())
    rows = []
    for name, policy, sampler, steps, chunks in variants:
        policy.set_sampler(sampler, steps)
        batch = {k: v.expand(chunks, *v.shape[1:]) for k, v in window.items()}
        times = _time(lambda p=policy, b=batch: p.predict_chunk(b), repeats if steps < 100 else 10)
        rows.append(
            {
                "sampler": name,
                "network_evals": steps,
                "candidates": chunks,
                "median_ms": float(np.median(times)),
                "p99_ms": float(np.percentile(times, 99)),
                "params_M": params / 1e6,
                "threads": torch.get_num_threads(),
            }
        )
    base = next((r["median_ms"] for r in rows if r["sampler"] == "DDIM-10"), None)
    for r in rows:
        if base:
            r["speedup_vs_ddim10"] = base / r["median_ms"]
    return rows


def _random_window(policy) -> dict:
    c = policy.config
    window = {k: torch.rand(1, c.n_obs, d) for k, d in zip(c.obs_keys, c.obs_dims)}
    for key, shape in zip(c.image_keys, c.image_shapes):
        window[key] = torch.randint(0, 256, (1, c.n_obs, *shape), dtype=torch.uint8)
    return window


def _time(fn, repeats: int) -> np.ndarray:
    for _ in range(3):  # warm-up: allocator, lazy initialization
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return np.array(times)


def format_table(rows: list[dict]) -> str:
    lines = [
        f"chunk inference, batch 1, {rows[0]['params_M']:.1f}M-parameter U-Net, "
        f"{rows[0]['threads']} threads",
        f"{'sampler':<15}{'evals':>6}{'median ms':>11}{'p99 ms':>9}{'vs DDIM-10':>12}",
    ]
    for r in rows:
        lines.append(
            f"{r['sampler']:<15}{r['network_evals']:>6}{r['median_ms']:>11.2f}"
            f"{r['p99_ms']:>9.2f}{r.get('speedup_vs_ddim10', float('nan')):>11.1f}x"
        )
    return "\n".join(lines)
