"""`robotrl bench sim`: env steps/s per task against a raw `mj_step` loop on the same model.

The raw loop replays the exact control signals the env produced, so both run the same
physics (same contacts) and the ratio is the env's own overhead: controller, observation,
reward, Python.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import mujoco
import numpy as np

from robotrl.tasks import TASKS, make


@dataclass
class SimBenchRow:
    task: str
    robot: str
    obs_mode: str
    control_hz: float
    substeps: int
    env_steps_per_s: float
    raw_steps_per_s: float  # control periods per second of a bare mj_step loop
    ratio: float


def bench_task(
    task: str, robot: str, obs_mode: str, steps: int, seed: int = 0, rounds: int = 5
) -> SimBenchRow:
    """Alternate `rounds` segments: the env steps from a state, then a bare loop replays the
    same segment from the same state. Interleaving keeps clock-speed drift and background
    load from landing on one side; the figures are medians over the rounds."""
    env = make(task, robot=robot, obs_mode=obs_mode, max_episode_steps=steps + 1)
    actions = smooth_actions(env.action_space, (steps,), seed)
    env.reset(seed=seed)
    m, raw, n = env.model, mujoco.MjData(env.model), env.n_substeps
    env_rates, raw_rates = [], []
    for segment in np.array_split(actions, rounds):
        start_state = _state(env)
        ctrls = np.empty((len(segment), m.nu))
        t = time.perf_counter()
        for i, action in enumerate(segment):
            env.step(action)
            ctrls[i] = env.data.ctrl
        env_rates.append(len(segment) / (time.perf_counter() - t))
        mujoco.mj_setState(m, raw, start_state, mujoco.mjtState.mjSTATE_INTEGRATION)
        t = time.perf_counter()
        for ctrl in ctrls:
            raw.ctrl[:] = ctrl
            mujoco.mj_step(m, raw, nstep=n)
        raw_rates.append(len(segment) / (time.perf_counter() - t))
    env.close()
    ratios = np.array(env_rates) / np.array(raw_rates)
    return SimBenchRow(
        task,
        robot,
        obs_mode,
        env.robot.control_hz,
        n,
        float(np.median(env_rates)),
        float(np.median(raw_rates)),
        float(np.median(ratios)),
    )


def smooth_actions(space, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """`[*shape, A]` random walks (along the first axis) inside the action space: the arm
    keeps moving and touching things as a policy's would."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.2, (*shape, space.shape[0])), 0) * space.high
    return np.clip(walk, space.low, space.high).astype(np.float32)


def _state(env) -> np.ndarray:
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, state, spec)
    return state


def bench_sim(
    robot: str = "panda",
    steps: int = 2000,
    pixel_steps: int = 400,
    tasks: tuple[str, ...] = tuple(TASKS),
    progress: bool = True,
) -> list[dict]:
    from tqdm import tqdm

    from robotrl.errors import RobotrlError

    if steps < 1 or pixel_steps < 1:
        raise RobotrlError(f"steps must be at least 1, got {steps} and {pixel_steps} (pixels)")
    jobs = [(t, "state", steps) for t in tasks] + [(t, "state+pixels", pixel_steps) for t in tasks]
    rows = []
    for task, obs_mode, n in tqdm(
        jobs, desc="bench sim", disable=None if progress else True, leave=False
    ):
        rows.append(asdict(bench_task(task, robot, obs_mode, n)))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| task | robot | obs | control Hz | substeps | env steps/s | raw mj_step loop | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['robot']} | {r['obs_mode']} | {r['control_hz']:.0f} | "
            f"{r['substeps']} | {r['env_steps_per_s']:.0f} | {r['raw_steps_per_s']:.0f} | "
            f"{r['ratio']:.2f} |"
        )
    return "\n".join(lines)
