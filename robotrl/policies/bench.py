"""`robotrl bench policy`: time to plan one action chunk, batch 1 on this machine, for the
same network sampled five ways: DDPM with 100 steps, DDIM with 10, and the consistency
policy with 1 and 3 steps from noise, and 1 step warm-started from the previous chunk (what
the consistency policy's `select_action` plans with after an episode's first chunk).
Latency does not depend on the weights, so without a checkpoint the benchmark builds the
default network at the PushT state policy's sizes, or with `cameras` the camera network at
Lift's sizes (two 96x96 cameras and the robot state, two frames): its image encoder runs in
every timed chunk."""

from __future__ import annotations

import dataclasses
import time
from functools import partial

import numpy as np
import torch

# PushT state policy: 14 joint/ee values + 4 block values in, 6-D end-effector deltas out
DEFAULT_DIMS = {"obs_dims": (14, 4), "action_dim": 6}
# Lift camera policy: 15 joint/gripper/ee values and two 96x96 cameras in, 7-D deltas out
CAMERA_DIMS = {
    "obs_keys": ("observation.state",),
    "obs_dims": (15,),
    "action_dim": 7,
    "image_keys": ("observation.images.front", "observation.images.wrist"),
    "image_shapes": ((96, 96, 3), (96, 96, 3)),
}


def bench_policy(
    policy_path: str | None = None,
    repeats: int = 50,
    threads: int = 0,
    only: tuple[str, ...] | None = None,
    cameras: bool = False,
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
        teacher = DiffusionPolicy(DiffusionConfig(**(CAMERA_DIMS if cameras else DEFAULT_DIMS)))
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
    variants = [  # name, policy, sampler, network evaluations, warm-started
        ("DDPM-100", teacher, "ddpm", 100, False),
        ("DDIM-10", teacher, "ddim", 10, False),
        ("consistency-1", student, "cm", 1, False),
        ("consistency-3", student, "cm", 3, False),
        ("consistency-1-warm", student, "cm", 1, True),
    ]
    variants = [v for v in variants if only is None or v[0] in only]
    params = sum(p.numel() for p in teacher.parameters())
    plans = []
    for _, policy, sampler, steps, warm in variants:
        policy.set_sampler(sampler, steps)
        if warm:
            plan = partial(policy.continue_chunk, window, policy.predict_chunk(window)[0])
        else:
            plan = partial(policy.predict_chunk, window)
        plans.append(
            (partial(policy.set_sampler, sampler, steps), plan, repeats if steps < 100 else 10)
        )
    rows = []
    for (name, _, _, steps, warm), times in zip(variants, _time_interleaved(plans)):
        rows.append(
            {
                "sampler": name,
                "network_evals": steps,
                "warm_start": warm,
                "median_ms": float(np.median(times)),
                "p99_ms": float(np.percentile(times, 99)),
                "params_M": params / 1e6,
                "cameras": len(teacher.config.image_keys),
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


def _time_interleaved(plans: list, warm_up: int = 3) -> list[np.ndarray]:
    """ms per call of each (select sampler, plan, repeats), timed round-robin: a drift in the
    machine's speed (clock, a neighbour's load) then hits every sampler alike, and their
    ratios hold even when the absolute figures move."""
    times = [[] for _ in plans]
    for round_ in range(warm_up + max(n for *_, n in plans)):
        for i, (select, plan, repeats) in enumerate(plans):
            if round_ >= warm_up + repeats:
                continue
            select()  # the student's samplers share one network; not timed
            t = time.perf_counter()
            plan()
            if round_ >= warm_up:  # the first calls: allocator, lazy initialization
                times[i].append((time.perf_counter() - t) * 1e3)
    return [np.array(t) for t in times]


def format_table(rows: list[dict]) -> str:
    lines = [
        f"chunk inference, batch 1, {rows[0]['params_M']:.1f}M-parameter policy"
        + (f" ({rows[0]['cameras']} cameras, encoder included)" if rows[0]["cameras"] else "")
        + f", {rows[0]['threads']} threads",
        f"{'sampler':<20}{'evals':>6}{'median ms':>11}{'p99 ms':>9}{'vs DDIM-10':>12}",
    ]
    for r in rows:
        lines.append(
            f"{r['sampler']:<20}{r['network_evals']:>6}{r['median_ms']:>11.2f}"
            f"{r['p99_ms']:>9.2f}{r.get('speedup_vs_ddim10', float('nan')):>11.1f}x"
        )
    return "\n".join(lines)
