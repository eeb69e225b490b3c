"""`robotrl bench loop`: lateness of the control loop at 100 and 500 Hz while a policy infers
concurrently (temporal ensembling, so the worker is never idle: a new chunk is requested the
moment the last one lands).

The policy runs in its own process by default (`inference="thread"` for the in-process worker,
to see what the GIL costs). The env is Reach with state observations at the bench rate (the step itself is MuJoCo physics
and the safety filter, ~0.2 ms at 500 Hz); the policy is a checkpoint, or by default an
untrained diffusion policy of the standard size (U-Net 64/128/256, DDIM-10), whose inference
costs what a trained one does. Episodes run until `ticks` ticks have been measured.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from robotrl.control.inference import InferenceWorker, ProcessInferenceWorker, policy_inference
from robotrl.control.loop import ControlLoop, LoopConfig
from robotrl.control.telemetry import Telemetry

BENCH_TASK = "Reach"


def bench_policy(env, checkpoint: str | None = None):
    """The policy the bench infers with: a checkpoint, or an untrained standard-size one."""
    if checkpoint:
        from robotrl.policies.checkpoint import load_policy

        return load_policy(checkpoint).eval()
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    spaces = env.observation_space.spaces
    keys = ("observation.state", "observation.environment_state")
    config = DiffusionConfig(
        obs_keys=keys,
        obs_dims=tuple(spaces[k.removeprefix("observation.")].shape[0] for k in keys),
        action_dim=env.action_space.shape[0],
    )
    torch.manual_seed(0)
    return DiffusionPolicy(config).eval()


def save_policy(policy, path: Path) -> Path:
    from robotrl.policies.checkpoint import save_policy as save

    return save(policy, path)


def bench_loop(
    hz: float,
    ticks: int = 3000,
    policy: str | None = None,
    strategy: str = "ensemble",
    inference_threads: int = 1,
    inference: str = "process",
    realtime_sched: bool = False,
    spin_s: float = 0.0005,
    switch_interval_s: float = 0.0001,
    telemetry: str | None = None,
) -> dict:
    from robotrl.tasks import make

    torch.set_num_threads(inference_threads)
    env = make(BENCH_TASK, robot="panda", obs_mode="state", control_hz=hz, max_episode_steps=ticks)
    model = bench_policy(env, policy)
    config = LoopConfig(
        strategy=strategy,
        realtime_sched=realtime_sched,
        spin_s=spin_s,
        switch_interval_s=switch_interval_s,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if inference == "process":
            checkpoint = policy or save_policy(model, Path(tmp) / "policy")
            worker = ProcessInferenceWorker(str(checkpoint), threads=inference_threads)
        else:
            worker = InferenceWorker(policy_inference(model))
        loop = ControlLoop(env, model, config, worker=worker, telemetry=Telemetry(telemetry))
        start, seed = time.perf_counter(), 0
        try:
            while len(loop.telemetry.records) < ticks:
                loop.run(1, seed=seed)
                seed += 1
        finally:
            loop.close()
            env.close()
    summary = loop.telemetry.summary(skip_ticks=1)  # a first tick anchors the schedule
    return {
        "hz": hz,
        "ticks": summary["ticks"],
        "lateness_ms": summary["lateness_ms"],
        "overruns": summary["overruns"],
        "work_ms": summary["work_ms"],
        "inference_ms": summary["inference_ms"],
        "chunks": summary["chunks"],
        "held_ticks": summary["held_ticks"],  # no fresh action: the policy could not keep up
        "wall_s": round(time.perf_counter() - start, 2),
        "inference": inference,
        "realtime_sched": realtime_sched,
        "rt_problems": loop.rt_problems,
        "switch_interval_s": switch_interval_s,
    }


def format_bench(rows: list[dict]) -> str:
    lines = [
        f"inference in a {rows[0]['inference']}, real-time scheduling "
        f"{'on' if rows[0]['realtime_sched'] else 'off'}",
        "| rate | ticks | lateness median | p99 | max | overruns | tick work p99 | "
        "inference median | chunks | held ticks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        late, work, inf = r["lateness_ms"], r["work_ms"], r["inference_ms"]
        lines.append(
            f"| {r['hz']:.0f} Hz | {r['ticks']} | {late['median']:.3f} ms | {late['p99']:.3f} ms "
            f"| {late['max']:.3f} ms | {r['overruns']} | {work['p99']:.3f} ms "
            f"| {inf['median']:.1f} ms | {r['chunks']} | {r['held_ticks']} |"
        )
    problems = {p for r in rows for p in r["rt_problems"]}
    return "\n".join(lines + [f"note: {p}" for p in sorted(problems)])
