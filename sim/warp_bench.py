"""`robotrl bench sim --backend warp`: env steps/s of the MuJoCo Warp backend at several world
counts, beside one MuJoCo C env of the same task stepping the same kind of actions.

An env step here is the whole step of every world: the batched safety filter, the
controller, the control period's physics substeps (one captured graph), reward, success,
observation and auto-reset. The C env's figure is `bench sim`'s (its `SafeEnv` included:
the same safety filter, one env). The first build on a machine compiles MuJoCo Warp's
kernels; `build_s` says how long each env took to build (compile included when cold).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from robotrl.errors import RobotrlError
from robotrl.sim.bench import smooth_actions


@dataclass
class WarpBenchRow:
    task: str
    device: str
    worlds: int
    substeps: int
    build_s: float  # building the env: model upload, kernel compilation (cold cache), capture
    env_steps_per_s: float  # world-steps per second: worlds x control periods per second
    world_substeps_per_s: float
    cpu_env_steps_per_s: float  # one MuJoCo C env behind the safety layer, same task


def cpu_env_rate(task: str, steps: int) -> float:
    from robotrl.control import safe
    from robotrl.tasks import make

    env = safe(make(task, max_episode_steps=steps + 1))
    actions = smooth_actions(env.action_space, (steps,))
    env.reset(seed=0)
    t = time.perf_counter()
    for action in actions:
        env.step(action)
    rate = steps / (time.perf_counter() - t)
    env.close()
    return rate


def bench_warp(
    tasks: tuple[str, ...] = ("Lift",),
    worlds: tuple[int, ...] = (1, 64, 512),
    steps: int = 200,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict]:
    from tqdm import tqdm

    from robotrl.tasks.warp_tasks import make_warp_env

    if steps < 1 or not worlds or min(worlds) < 1:
        raise RobotrlError(f"steps and world counts must be at least 1, got {steps}, {worlds}")
    rows = []
    jobs = [(t, n) for t in tasks for n in worlds]
    for task, n in tqdm(jobs, desc="bench warp", disable=None if progress else True, leave=False):
        t = time.perf_counter()
        env = make_warp_env(task, n, device)
        build = time.perf_counter() - t
        actions = torch.as_tensor(smooth_actions(env.single_action_space, (steps + 10, n)))
        actions = actions.to(env.device)
        env.reset(seed=0)
        for a in actions[:10]:  # warm-up: first launches, allocator
            env.step(a)
        sync = torch.cuda.synchronize if env.device.type == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        for a in actions[10:]:
            env.step(a)
        sync()
        rate = steps * n / (time.perf_counter() - t)
        substeps = env.template.n_substeps
        env.close()
        rows.append(WarpBenchRow(task, device, n, substeps, build, rate, rate * substeps, 0.0))
    cpu_rates = {task: cpu_env_rate(task, max(steps, 500)) for task in tasks}
    for row in rows:
        row.cpu_env_steps_per_s = cpu_rates[row.task]
    return [asdict(r) for r in rows]


def format_warp_table(rows: list[dict]) -> str:
    lines = [
        "| task | device | worlds | substeps | build s | env steps/s | world substeps/s | "
        "one C env, steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['device']} | {r['worlds']} | {r['substeps']} | "
            f"{r['build_s']:.1f} | {r['env_steps_per_s']:.0f} | "
            f"{r['world_substeps_per_s']:.0f} | {r['cpu_env_steps_per_s']:.0f} |"
        )
    return "\n".join(lines)
