"""Vectorized rollouts for residual RL: N sim envs (each behind the safety layer) in a
gymnasium vector env, and the frozen base policy run for all of them with one batched
`predict_chunk` per step.

`BatchedBase` keeps, per env, the observation history and action queue that
`select_action` keeps for one env, so every env executes exactly what the base would alone:
a chunk is planned when the env's queue runs dry and `n_action_steps` of it are executed.
Envs whose queues run dry on the same step share one network call.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from robotrl.vector_env import make_vector_env  # noqa: F401  (DPPO and value use it from here)


def vector_env_for(policy, cfg):
    """The fine-tuner's envs for a residual `policy`, as a `VectorRobotEnv`: the base's action
    mode, its cameras rendered when the base sees them; `cfg.backend` `mujoco` (a CPU MuJoCo
    env per env, each behind `SafeEnv`) or `warp[:DEVICE]` (MuJoCo Warp worlds behind the
    batched safety filter; state bases only)."""
    from robotrl.errors import RobotrlError
    from robotrl.vector_env import GymVectorRobotEnv

    meta = policy.config.meta
    cameras = bool(policy.config.image_keys)
    backend, _, device = cfg.backend.partition(":")
    if backend == "warp":
        if cameras:
            raise RobotrlError(
                "--backend warp runs state observations only: this base sees cameras"
            )
        from robotrl.tasks.warp_tasks import make_warp_env

        return make_warp_env(
            cfg.task,
            cfg.envs,
            device or "cpu",
            robot=cfg.robot,
            action_mode=meta.get("action_mode"),
        )
    if backend != "mujoco":
        raise RobotrlError(f"unknown --backend '{cfg.backend}': choose mujoco or warp[:DEVICE]")
    return GymVectorRobotEnv(
        make_vector_env(cfg.task, cfg.envs, cfg.robot, meta.get("action_mode"), cameras)
    )


def on_cpu(obs: dict) -> dict:
    """An observation's tensors on the CPU, where the fine-tuners' networks run (CPU tensors
    and numpy arrays are returned as they are: no copy)."""
    return {k: v.cpu() if torch.is_tensor(v) else v for k, v in obs.items()}


def episode_ends(info: dict) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """From a `VectorRobotEnv` step's info: the sparse task reward (1 where the step ended an
    episode in success), the done flags as floats, and the envs whose episodes ended."""
    done = info["done"].cpu()
    reward = (info["is_success"].cpu() & done).float()
    return reward, done.float(), done.nonzero()[:, 0].tolist()


class BatchedBase:
    """The base policy's `select_action` for `n` envs at once (camera images included: they
    stay uint8 until the base's encoder)."""

    def __init__(self, policy, n: int, generator: torch.Generator | None = None):
        self.policy, self.n, self.generator = policy, n, generator
        config = policy.config
        self.keys = tuple(config.obs_keys) + tuple(config.image_keys)
        self.dtypes = {k: np.uint8 if k in config.image_keys else np.float32 for k in self.keys}
        self.n_obs, self.n_exec = config.n_obs, config.n_action_steps
        self.history = [deque(maxlen=self.n_obs) for _ in range(n)]
        self.queues = [deque() for _ in range(n)]
        self.chunks_planned = 0

    def reset(self, envs=None) -> None:
        """Forget the history and queue of `envs` (all by default): their episodes ended."""
        for i in range(self.n) if envs is None else envs:
            self.history[i].clear()
            self.queues[i].clear()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Base actions [n, A] for the batched env observations (keys without `observation.`;
        numpy arrays or a `VectorRobotEnv`'s tensors)."""
        obs = {k: v.cpu().numpy() if torch.is_tensor(v) else v for k, v in obs.items()}
        for i in range(self.n):
            frame = {
                k: np.asarray(obs[k.removeprefix("observation.")][i], self.dtypes[k])
                for k in self.keys
            }
            if not self.history[i]:  # pad the history at the episode start
                self.history[i].extend([frame] * self.n_obs)
            self.history[i].append(frame)
        dry = [i for i in range(self.n) if not self.queues[i]]
        if dry:
            window = {
                k: torch.as_tensor(np.stack([[f[k] for f in self.history[i]] for i in dry]))
                for k in self.keys
            }
            chunks = self.plan(window, dry).numpy()
            for i, chunk in zip(dry, chunks):
                self.queues[i].extend(chunk[: self.n_exec])
            self.chunks_planned += len(dry)
        return np.stack([q.popleft() for q in self.queues])

    def plan(self, window: dict, envs: list[int]) -> torch.Tensor:
        """Chunks [len(envs), H, A] for the observation windows of `envs` whose queues ran dry."""
        return self.policy.predict_chunk(window, generator=self.generator)


def ended(terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.logical_or(terminated, truncated))


def successes(info: dict, done: np.ndarray) -> np.ndarray:
    """Per env: 1.0 where the step ended an episode in success (the sparse task reward)."""
    out = np.zeros(len(done), np.float32)
    final = info.get("final_info", {})
    if "is_success" in final:
        flags = np.asarray(final["is_success"], bool) & np.asarray(final["_is_success"], bool)
        out[flags] = 1.0
    return out
