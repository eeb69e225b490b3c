"""`VectorRobotEnv`: N environments as one object, torch tensors on one device.

The batched counterpart of `RobotEnv` (Isaac Lab's and MuJoCo Playground's shape of a step):

- `reset(seed) -> (obs, info)`, `step(actions[N, A]) -> (obs, reward[N], terminated[N],
  truncated[N], info)`; `obs` is a dict of tensors `[N, ...]` with the `RobotEnv` keys
  (`state`, `environment_state`, `images.<camera>`);
- same-step auto-reset: a world that ends is reset inside that `step`; the returned `obs`
  row is its new episode's first observation, its last one is in `info["final_obs"]`
  (rows valid where `info["done"]`), and `info["is_success"]` is the step's success before
  the reset;
- world `i` of `reset(seed=s)` draws its episodes from its own stream seeded by `(s, i)`, so
  what one world does never depends on how many worlds run beside it;
- `robot` is the same `RobotSpec` a single env has; `num_envs`, `device`.

Every action goes through the safety layer: backends filter the whole batch with
`robotrl.control.safety_batched.BatchedSafety` (or a `SafeEnv` per world) before it reaches
the simulator. Two adapters connect this to gymnasium both ways: `GymVectorRobotEnv` (a
gymnasium vector env of CPU `RobotEnv`s seen as a `VectorRobotEnv`) and `as_gymnasium` (a
`VectorRobotEnv` seen as a `gymnasium.vector.VectorEnv`, for libraries).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np
import torch

from robotrl.env import RobotSpec, observation_space
from robotrl.errors import InvalidActionError, RobotrlError

Obs = dict[str, torch.Tensor]


class VectorRobotEnv(ABC):
    """N worlds of one robot and task; see the module docstring for the contract."""

    num_envs: int
    device: torch.device
    robot: RobotSpec

    @abstractmethod
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        """Reset every world (world `i` seeded by `(seed, i)`)."""

    @abstractmethod
    def step(self, actions: torch.Tensor):
        """One control period of every world; see the module docstring."""

    def close(self) -> None:  # noqa: B027  (optional: most backends hold nothing to free)
        """Release what the backend holds (renderers, device memory)."""

    # ---- shared helpers -----------------------------------------------------------------
    @property
    def single_observation_space(self) -> gym.spaces.Dict:
        return observation_space(self.robot)

    @property
    def single_action_space(self) -> gym.spaces.Box:
        return self.robot.action.space()

    def check_actions(self, actions) -> torch.Tensor:
        """The actions as float32 `[N, A]` on this env's device, or one clear error."""
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        spec = self.robot.action
        if a.shape != (self.num_envs, spec.dim):
            raise InvalidActionError(
                f"actions have shape {tuple(a.shape)}, expected ({self.num_envs}, {spec.dim}) "
                f"for mode '{spec.mode}'"
            )
        return a


def world_rngs(seed: int | None, n: int) -> list[np.random.Generator]:
    """One independent stream per world: world `i`'s draws depend on `(seed, i)` only."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    return [np.random.default_rng([seed, i]) for i in range(n)]


def make_vector_env(
    task: str, n: int, robot: str = "panda", action_mode: str | None = None, cameras: bool = False
) -> gym.vector.VectorEnv:
    """`n` copies of `task` in one process (2 cores: subprocesses would only add IPC). An env
    that ends is reset in the same step (its last observation is in info["final_obs"]).
    `cameras`: the envs render the task's cameras too (for a base policy that sees them)."""
    from robotrl.control.safety import safe
    from robotrl.tasks import make, task_name

    task = task_name(task)  # unknown names fail here, in one line

    def one():
        # every command is filtered
        obs_mode = "state+pixels" if cameras else "state"
        return safe(make(task, robot=robot, obs_mode=obs_mode, action_mode=action_mode))

    return gym.vector.SyncVectorEnv(
        [one for _ in range(n)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


class GymVectorRobotEnv(VectorRobotEnv):
    """A gymnasium vector env of `RobotEnv`s (each already behind the safety layer) as a
    `VectorRobotEnv`. It must auto-reset in the same step, as `make_vector_env` builds it."""

    def __init__(self, envs: gym.vector.VectorEnv, device: str | torch.device = "cpu"):
        mode = envs.metadata.get("autoreset_mode")
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise RobotrlError(f"the vector env must auto-reset in the same step, not {mode}")
        self.envs, self.num_envs = envs, envs.num_envs
        self.device = torch.device(device)
        self.robot = envs.unwrapped.get_attr("robot")[0]

    @classmethod
    def for_task(cls, task: str, n: int, **kwargs) -> GymVectorRobotEnv:
        """`n` CPU MuJoCo envs of `task`, one process
        (`make_vector_env`'s `kwargs`: robot, action_mode, cameras)."""
        return cls(make_vector_env(task, n, **kwargs))

    def reset(self, seed=None, options=None):
        if seed is not None:  # gymnasium would seed env i with seed + i; ours is (seed, i)
            for i, rng in enumerate(world_rngs(seed, self.num_envs)):
                self.envs.envs[i].unwrapped.np_random = rng
        obs, info = self.envs.reset(options=options)
        return self._tensors(obs), {"is_success": self._flag(info, "is_success")}

    def step(self, actions):
        a = self.check_actions(actions).cpu().numpy()
        obs, reward, terminated, truncated, info = self.envs.step(a)
        done = np.logical_or(terminated, truncated)
        out_info = {"is_success": self._flag(info, "is_success"), "done": self._t(done)}
        final = info.get("final_obs")
        if done.any() and final is not None:
            keys = obs.keys()
            rows = [final[i] if done[i] else {k: obs[k][i] for k in keys} for i in range(len(done))]
            out_info["final_obs"] = self._tensors({k: np.stack([r[k] for r in rows]) for k in keys})
            success = self._flag(info.get("final_info", {}), "is_success")
            out_info["is_success"] = torch.where(self._t(done), success, out_info["is_success"])
        else:
            out_info["final_obs"] = self._tensors(obs)
        return (
            self._tensors(obs),
            self._t(np.asarray(reward, np.float32)),
            self._t(terminated),
            self._t(truncated),
            out_info,
        )

    def close(self):
        self.envs.close()

    def _t(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), device=self.device)

    def _tensors(self, obs: dict) -> Obs:
        return {k: self._t(v) for k, v in obs.items()}

    def _flag(self, info: dict, key: str) -> torch.Tensor:
        values = info.get(key)
        if values is None:
            return torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        present = info.get(f"_{key}", np.ones(self.num_envs, bool))
        return self._t(np.where(present, values, False).astype(bool))


class GymnasiumVectorEnv(gym.vector.VectorEnv):
    """A `VectorRobotEnv` as a `gymnasium.vector.VectorEnv` (numpy in and out), auto-resetting
    in the same step with `info["final_obs"]`/`info["_final_obs"]` as gymnasium does."""

    def __init__(self, env: VectorRobotEnv):
        self.env, self.num_envs = env, env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, self.num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return _numpy(obs), {"is_success": info["is_success"].cpu().numpy()}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(
            torch.as_tensor(np.asarray(actions, np.float32))
        )
        done = info["done"].cpu().numpy()
        out = {"is_success": info["is_success"].cpu().numpy()}
        if done.any():
            final = _numpy(info["final_obs"])
            out["final_obs"] = np.array(
                [{k: v[i] for k, v in final.items()} if done[i] else None for i in range(len(done))]
            )
            out["_final_obs"] = done
        return (
            _numpy(obs),
            reward.cpu().numpy(),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            out,
        )

    def close_extras(self, **kwargs):
        self.env.close()


def as_gymnasium(env: VectorRobotEnv) -> gym.vector.VectorEnv:
    return GymnasiumVectorEnv(env)


def _numpy(obs: Obs) -> dict[str, np.ndarray]:
    return {k: v.cpu().numpy() for k, v in obs.items()}
