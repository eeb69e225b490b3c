"""`robotrl eval --backend warp`: a policy's success over episodes run on a `VectorRobotEnv`,
many at once.

Each world runs its share of the episodes (world `i`'s episodes come from its own seeded
stream, so the figure does not depend on how fast other worlds finish); a world that has run
its share keeps stepping unrecorded until all have. Counting the first N episodes to end
instead would favour short, successful ones. Chunked policies plan for all worlds whose
queues ran dry in one batched call (`BatchedBase`); a residual corrects the whole batch.
"""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import torch
from tqdm import tqdm

from robotrl.errors import RobotrlError
from robotrl.rollout import RolloutSummary

BATCHED_KINDS = ("diffusion", "consistency", "residual")


def evaluate_vector(policy, env, episodes: int, seed: int, progress: bool = True) -> dict:
    from robotrl.rl.vector import BatchedBase

    kind = getattr(policy, "kind", type(policy).__name__)
    if kind not in BATCHED_KINDS:
        raise RobotrlError(f"a {kind} policy has no batched evaluation: drop --backend")
    n = env.num_envs
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    generator = torch.Generator().manual_seed(seed)
    chunked = BatchedBase(policy.base if kind == "residual" else policy, n, generator)
    successes, lengths, scores = [], [], []
    ran, length = np.zeros(n, int), np.zeros(n, int)
    best = np.full(n, -np.inf)
    safety = getattr(env, "safety", None)
    before = Counter(safety.interventions) if safety is not None else Counter()
    bar = tqdm(total=episodes, desc=f"eval ({n} worlds)", unit="ep", disable=not progress)
    started = time.monotonic()
    obs, _ = env.reset(seed=seed)
    with torch.no_grad():
        while (ran < quota).any():
            action = torch.as_tensor(chunked.act(obs))
            if kind == "residual":
                action = policy.correct_batch(obs, action)
            obs, reward, _, _, info = env.step(action)
            length += 1
            best = np.maximum(best, reward.cpu().numpy())
            done = info["done"].cpu().numpy()
            success = info["is_success"].cpu().numpy()
            for i in np.flatnonzero(done):
                if ran[i] < quota[i]:
                    successes.append(bool(success[i]))
                    lengths.append(int(length[i]))
                    scores.append(float(best[i]))
                    bar.update(1)
                ran[i] += 1
            length[done], best[done] = 0, -np.inf
            chunked.reset(np.flatnonzero(done))
    bar.close()
    wall = time.monotonic() - started
    interventions = Counter(safety.interventions) - before if safety is not None else Counter()
    task = getattr(env, "task_name", "")
    robot = env.robot.robot_type
    return RolloutSummary.of(
        task, robot, kind, successes, lengths, scores, wall, wall, interventions
    ).to_dict()


def evaluate_batched(policy, task: str, robot: str, args) -> dict:
    """`eval --backend warp[:DEVICE]`: the episodes on `--envs` MuJoCo Warp worlds at once."""
    from robotrl.rl.vector import vector_env_for

    if args.video or args.ray:
        raise RobotrlError("--backend warp records no video and runs in this process")
    cfg = SimpleNamespace(backend=args.backend, task=task, robot=robot, envs=args.envs)
    env = vector_env_for(policy, cfg)
    try:
        return evaluate_vector(policy, env, args.episodes, args.seed, progress=not args.json)
    finally:
        env.close()
