"""`robotrl eval`: success rate of a policy on a task over unseen seeds.

Episode `i` runs on seed `seed + i` for the env and for the policy's sampling noise, so its
outcome does not depend on the other episodes: `workers` processes (one torch thread each)
split the episodes and give the same figures as one process, in a fraction of the time.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from tqdm import tqdm

from robotrl.errors import RobotrlError
from robotrl.rollout import RolloutConfig, RolloutSummary, rollout

EVAL_SEED = 100_000  # demonstrations use seeds from 0: evaluation episodes are unseen


def evaluate(
    policy,
    task: str,
    robot: str = "panda",
    episodes: int = 50,
    seed: int = EVAL_SEED,
    video: str | None = None,
    progress: bool = True,
    workers: int = 1,
    ray: str | None = None,
) -> dict:
    from robotrl.tasks import make

    if workers < 1:
        raise RobotrlError(f"--workers must be at least 1, got {workers}")
    if ray:
        if video:
            raise RobotrlError("--video records in this process: drop --ray to record one")
        return _evaluate_on_ray(policy, task, robot, episodes, seed, progress, ray)
    if workers > 1 and episodes > 1 and not video:
        return _evaluate_in_processes(policy, task, robot, episodes, seed, progress, workers)

    cfg = RolloutConfig(
        task=task,
        robot=robot,
        policy=getattr(policy, "kind", type(policy).__name__),
        **env_options(policy),
        episodes=episodes,
        seed=seed,
        video=video,
        video_episodes=1,
        progress=progress,
    )
    env = make(
        task,
        robot=robot,
        obs_mode=cfg.obs_mode,
        action_mode=cfg.action_mode,
        render_mode="rgb_array" if video else None,
    )
    check_compatible(policy, env)
    summary, frames = rollout(cfg, env=env, policy=policy)
    env.close()
    if video:
        from robotrl.video import write_mp4

        write_mp4(video, frames, fps=policy.config.fps)
    return summary.to_dict()


def env_options(policy) -> dict:
    """How to make an env for `policy`: cameras if it sees images, and the action mode it was
    trained in (checkpoints from before the mode was recorded: the env's default)."""
    return {
        "obs_mode": "state+pixels" if policy.config.image_keys else "state",
        "action_mode": (policy.config.meta or {}).get("action_mode"),
    }


def check_compatible(policy, env) -> None:
    """A policy trained for other observations or actions fails here, in one line, rather
    than deep inside a matrix multiply."""
    config, spaces = policy.config, env.observation_space.spaces
    where = f"{env.spec.id if env.spec else type(env).__name__} ({env.unwrapped.robot.robot_type})"
    for key, dim in zip(config.obs_keys, config.obs_dims):
        name = key.removeprefix("observation.")
        if name not in spaces or spaces[name].shape != (dim,):
            got = spaces[name].shape if name in spaces else "nothing"
            raise RobotrlError(f"policy expects {name} of shape ({dim},); {where} gives {got}")
    for key, shape in zip(config.image_keys, config.image_shapes):
        name = key.removeprefix("observation.")
        if name not in spaces or spaces[name].shape != tuple(shape):
            raise RobotrlError(f"policy expects camera {name} {tuple(shape)}; {where} lacks it")
    mode, env_mode = (config.meta or {}).get("action_mode"), env.unwrapped.robot.action.mode
    if mode and mode != env_mode:
        raise RobotrlError(f"policy was trained on {mode} actions; {where} takes {env_mode}")
    if env.action_space.shape != (config.action_dim,):
        raise RobotrlError(
            f"policy outputs {config.action_dim} action values; {where} takes "
            f"{env.action_space.shape[0]}"
        )


def _evaluate_in_processes(policy, task, robot, episodes, seed, progress, workers) -> dict:
    """`evaluate` with the episodes spread over `workers` processes in small batches; the
    policy travels as a checkpoint (saved to a temporary directory, never pickled)."""
    from robotrl.policies.checkpoint import save_policy

    start = time.perf_counter()
    batches = batches_of(episodes, workers)
    with tempfile.TemporaryDirectory(prefix="robotrl-eval-") as tmp:
        save_policy(policy, f"{tmp}/policy")
        with ProcessPoolExecutor(
            min(workers, len(batches)),
            mp_context=get_context("spawn"),
            initializer=_load_worker_policy,
            initargs=(f"{tmp}/policy",),
        ) as pool:
            jobs = [
                pool.submit(_evaluate_batch, task, robot, n, seed + first) for first, n in batches
            ]
            bar = tqdm(total=episodes, desc=task, unit="ep", disable=None if progress else True)
            parts = []
            for job in jobs:  # in episode order; each waits for its own batch
                parts.append(job.result())
                bar.update(parts[-1]["episodes"])
            bar.close()
    return merge_summaries(parts, time.perf_counter() - start)


def batches_of(episodes: int, workers: int) -> list[tuple[int, int]]:
    """(first episode, count) batches: about four per worker, so the last ones balance."""
    per_batch = max(1, episodes // (4 * workers))
    return [(first, min(per_batch, episodes - first)) for first in range(0, episodes, per_batch)]


def _evaluate_on_ray(policy, task, robot, episodes, seed, progress, address) -> dict:
    """`evaluate` with the episodes spread over a Ray cluster's CPUs in small batches; the
    policy travels as its checkpoint's files through Ray's object store (never a pickle of
    the policy, never a path the nodes must share), and Ray re-runs a batch whose worker died."""
    from pathlib import Path

    from robotrl.policies.checkpoint import save_policy
    from robotrl.ray_episodes import connect, worker_count

    start = time.perf_counter()
    ray = connect(address)
    with tempfile.TemporaryDirectory(prefix="robotrl-eval-") as tmp:
        save_policy(policy, f"{tmp}/policy")
        files = {p.name: p.read_bytes() for p in Path(tmp, "policy").iterdir() if p.is_file()}
    checkpoint = ray.put(files)
    run_batch = ray.remote(num_cpus=1, max_retries=3)(_evaluate_files)
    jobs = [
        run_batch.remote(checkpoint, task, robot, n, seed + first)
        for first, n in batches_of(episodes, worker_count(ray))
    ]
    bar = tqdm(total=episodes, desc=f"{task} (ray)", unit="ep", disable=None if progress else True)
    parts = []
    for job in jobs:  # in episode order
        parts.append(ray.get(job))
        bar.update(parts[-1]["episodes"])
    bar.close()
    return merge_summaries(parts, time.perf_counter() - start)


_ray_policies: dict = {}  # checkpoint digest -> policy, per Ray worker process


def _evaluate_files(files: dict, task: str, robot: str, episodes: int, seed: int) -> dict:
    import hashlib
    from pathlib import Path

    import torch

    from robotrl.policies.checkpoint import load_policy

    key = hashlib.sha256(b"".join(files[name] for name in sorted(files))).hexdigest()
    if key not in _ray_policies:
        torch.set_num_threads(1)  # one CPU per task
        with tempfile.TemporaryDirectory(prefix="robotrl-policy-") as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
            _ray_policies[key] = load_policy(tmp).eval()
    return evaluate(_ray_policies[key], task, robot, episodes, seed, progress=False)


_worker_policy = None


def _load_worker_policy(path: str) -> None:
    import torch

    from robotrl.policies.checkpoint import load_policy

    global _worker_policy
    torch.set_num_threads(1)  # the workers share the cores between them
    _worker_policy = load_policy(path).eval()


def _evaluate_batch(task: str, robot: str, episodes: int, seed: int) -> dict:
    return evaluate(_worker_policy, task, robot, episodes, seed, progress=False)


def merge_summaries(parts: list[dict], wall_time_s: float) -> dict:
    """One summary of consecutive batches of episodes (rollout summaries as dicts)."""
    from collections import Counter

    def joined(key: str) -> list:
        return [x for p in parts for x in p[key]]

    safety: Counter = Counter()
    for p in parts:
        safety.update(p["safety_interventions"])
    first = parts[0]
    return RolloutSummary.of(
        first["task"],
        first["robot"],
        first["policy"],
        joined("successes"),
        joined("lengths"),
        joined("scores"),
        sum(sum(p["lengths"]) / p["env_steps_per_s"] for p in parts),
        wall_time_s,
        safety,
    ).to_dict()
