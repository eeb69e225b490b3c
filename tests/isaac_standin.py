"""A stand-in of ours for an Isaac Lab `ManagerBasedRLEnv`: NOT Isaac Lab, which cannot be
installed here (Python 3.12, its own torch/warp). It exists to test `robotrl.sim.isaac`.

It follows what Isaac Lab documents and what the adapter reads: `reset(seed, env_ids,
options) -> (obs, extras)`, `step(action) -> (obs, reward, terminated, time_outs, extras)` with
the finished worlds reset inside `step`, observation groups in a dict (`"policy"`),
`extras["final_obs"]` (the observation before that reset) when `cfg.compute_final_obs`,
`unwrapped`, `num_envs`, `device`, `cfg.sim.dt`, `cfg.decimation`, `episode_length_buf`,
`single_action_space`/`single_observation_space`, `scene["robot"]` (joint names and `data`),
and the action/observation/termination managers (`active_terms`, `get_term`,
`total_action_dim`). Action terms carry Isaac Lab's class names and the attributes the adapter
reads (`_joint_names`, `_scale`, `_offset`, `cfg.clip`, `cfg.controller`,
`_compute_frame_pose`), so they are recognised as Isaac's would be.

Dynamics are tiny and deterministic: each joint moves halfway to its target every physics
step; the "end effector" is `EE_BASE + 0.1 * q[:3]`. Episodes end on success (joint 1 past
`SUCCESS_Q`) or on a time-out after `episode_length` steps.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import gymnasium as gym
import torch

ARM = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGERS = ("panda_finger_joint1", "panda_finger_joint2")
DEFAULT_Q = (0.0, -0.57, 0.0, -2.81, 0.0, 3.04, 0.74, 0.04, 0.04)
LIMITS = ((-2.9, 2.9), (-1.76, 1.76), (-2.9, 2.9), (-3.07, -0.07), (-2.9, 2.9), (-0.02, 3.75))
LIMITS += ((-2.9, 2.9), (0.0, 0.04), (0.0, 0.04))
EE_BASE = (0.4, 0.0, 0.4)
SUCCESS_Q = 0.5


class Articulation:
    """`scene["robot"]`: joint names, `data` (positions, defaults, soft limits), targets."""

    def __init__(self, n: int, device: str):
        self.joint_names = list(ARM + FINGERS)
        default = torch.tensor(DEFAULT_Q, device=device).repeat(n, 1)
        limits = torch.tensor(LIMITS, device=device).repeat(n, 1, 1)
        self.data = SimpleNamespace(
            joint_pos=default.clone(), default_joint_pos=default, soft_joint_pos_limits=limits
        )
        self.target = default.clone()

    def find_joints(self, patterns):
        names = [j for j in self.joint_names if any(re.fullmatch(p, j) for p in patterns)]
        return [self.joint_names.index(j) for j in names], names

    def physics_step(self):
        q = self.data.joint_pos
        q += 0.5 * (self.target - q)


class ActionTerm:
    def __init__(self, cfg, env):
        self.cfg, self._env = cfg, env
        self._asset = env.scene[cfg.asset_name]
        self._joint_ids, self._joint_names = self._asset.find_joints(cfg.joint_names)
        self.processed_actions = None

    @property
    def action_dim(self) -> int:
        return len(self._joint_ids)

    def reset(self, env_ids=None):
        pass


class JointAction(ActionTerm):
    """Isaac's affine map: processed = raw * scale + offset, then `cfg.clip`."""

    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        self._scale, self._offset = float(cfg.scale), float(cfg.offset)

    def process_actions(self, actions):
        self.processed_actions = actions * self._scale + self._offset
        for pattern, (lo, hi) in (self.cfg.clip or {}).items():
            for i, name in enumerate(self._joint_names):
                if re.fullmatch(pattern, name):
                    self.processed_actions[:, i].clamp_(lo, hi)


class JointPositionAction(JointAction):
    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        if cfg.use_default_offset:
            self._offset = self._asset.data.default_joint_pos[:, self._joint_ids].clone()

    def apply_actions(self):
        self._asset.target[:, self._joint_ids] = self.processed_actions


class RelativeJointPositionAction(JointAction):
    def apply_actions(self):
        q = self._asset.data.joint_pos[:, self._joint_ids]
        self._asset.target[:, self._joint_ids] = q + self.processed_actions


class JointPositionToLimitsAction(ActionTerm):
    """A term the adapter does not read (Isaac's rescales [-1, 1] to the joint limits)."""


class DifferentialInverseKinematicsAction(ActionTerm):
    """processed = raw * scale; the toy "IK" solves `EE_BASE + 0.1 q[:3] = target` exactly."""

    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        ctrl = cfg.controller
        self._dim = {"position": 3, "pose": 6 if ctrl.use_relative_mode else 7}[ctrl.command_type]
        self._scale = torch.full((env.num_envs, self._dim), float(cfg.scale), device=env.device)

    @property
    def action_dim(self) -> int:
        return self._dim

    def _compute_frame_pose(self):
        q = self._asset.data.joint_pos[:, :3]
        quat = torch.tensor([1.0, 0.0, 0.0, 0.0], device=q.device).expand(len(q), 4)
        return torch.tensor(EE_BASE, device=q.device) + 0.1 * q, quat

    def process_actions(self, actions):
        self.processed_actions = actions * self._scale
        ee, _ = self._compute_frame_pose()
        rel = self.cfg.controller.use_relative_mode
        goal = ee + self.processed_actions[:, :3] if rel else self.processed_actions[:, :3]
        self._q_goal = (goal - torch.tensor(EE_BASE, device=goal.device)) / 0.1

    def apply_actions(self):
        self._asset.target[:, :3] = self._q_goal


class BinaryJointAction(ActionTerm):
    """One entry: negative closes (the close command), otherwise open."""

    @property
    def action_dim(self) -> int:
        return 1

    def process_actions(self, actions):
        close = actions[:, :1] < 0
        opened = torch.tensor([self.cfg.open_command_expr[j] for j in self._joint_names])
        closed = torch.tensor([self.cfg.close_command_expr[j] for j in self._joint_names])
        self.processed_actions = torch.where(close, closed, opened)

    def apply_actions(self):
        self._asset.target[:, self._joint_ids] = self.processed_actions


class BinaryJointPositionAction(BinaryJointAction):
    pass


class ActionManager:
    def __init__(self, terms: dict):
        self._terms = terms

    @property
    def active_terms(self) -> list[str]:
        return list(self._terms)

    @property
    def action_term_dim(self) -> list[int]:
        return [t.action_dim for t in self._terms.values()]

    @property
    def total_action_dim(self) -> int:
        return sum(self.action_term_dim)

    def get_term(self, name: str):
        return self._terms[name]

    def process_action(self, action):
        if action.shape[1] != self.total_action_dim:
            raise ValueError(f"Invalid action shape, expected: {self.total_action_dim}")
        i = 0
        for term in self._terms.values():
            term.process_actions(action[:, i : i + term.action_dim])
            i += term.action_dim

    def apply_action(self):
        for term in self._terms.values():
            term.apply_actions()


class ObservationManager:
    """Group "policy": `joint_pos` (relative to the default pose, 9) and `episode_time` (1);
    with a camera, also `wrist_rgb` (uint8 4x4 RGB) and the group is not concatenated."""

    def __init__(self, env, camera: bool):
        self._env, self.camera = env, camera
        terms = ["joint_pos", "episode_time"] + (["wrist_rgb"] if camera else [])
        self.active_terms = {"policy": terms}
        self.group_obs_term_dim = {"policy": [(9,), (1,), (4, 4, 3)][: len(terms)]}
        self.group_obs_concatenate = {"policy": not camera}

    def compute(self) -> dict:
        env = self._env
        q = env.scene["robot"].data.joint_pos
        terms = {
            "joint_pos": q - env.scene["robot"].data.default_joint_pos,
            "episode_time": env.episode_length_buf[:, None] * env.step_dt,
        }
        if not self.camera:
            return {"policy": torch.cat(list(terms.values()), 1)}
        level = (q[:, 0] * 100).clamp(0, 255).to(torch.uint8)
        terms["wrist_rgb"] = level[:, None, None, None].expand(-1, 4, 4, 3).clone()
        return {"policy": terms}


class TerminationManager:
    """Like Isaac's: persistent buffers, overwritten in place by every `compute`."""

    def __init__(self, env):
        self._env = env
        self.active_terms = ["time_out", "success"]
        self._dones = {k: torch.zeros(env.num_envs, dtype=torch.bool) for k in self.active_terms}
        self._terminated_buf = torch.zeros(env.num_envs, dtype=torch.bool)
        self._truncated_buf = torch.zeros(env.num_envs, dtype=torch.bool)

    def compute(self):
        env = self._env
        self._dones["time_out"][:] = env.episode_length_buf >= env.max_episode_length
        self._dones["success"][:] = env.scene["robot"].data.joint_pos[:, 0] > SUCCESS_Q
        self._truncated_buf[:] = self._dones["time_out"]
        self._terminated_buf[:] = self._dones["success"]
        return self._terminated_buf | self._truncated_buf

    @property
    def terminated(self):
        return self._terminated_buf

    @property
    def time_outs(self):
        return self._truncated_buf

    def get_term(self, name):
        return self._dones[name]


def _cfg(dt: float, decimation: int, episode_length: int, final_obs_flag: bool, n: int):
    cfg = SimpleNamespace(
        sim=SimpleNamespace(dt=dt, device="cpu"),
        decimation=decimation,
        episode_length_s=episode_length * dt * decimation,
        is_finite_horizon=False,
        seed=None,
        scene=SimpleNamespace(num_envs=n),
    )
    if final_obs_flag:  # Isaac Lab 3 has the flag, off by default; 2.x has none
        cfg.compute_final_obs = False
    return cfg


class StandinManagerBasedRLEnv(gym.Env):
    """A stand-in of ours for Isaac Lab's `ManagerBasedRLEnv` (see the module docstring).

    `arm`: the arm action term ("joint_pos", "joint_delta", "ik_rel", "ik_abs_pos",
    "ik_abs_pose", "to_limits"); `gripper`: a trailing binary gripper term; `direct`: expose no
    managers, as a `DirectRLEnv`; `last_action`: the raw action the last `step` received.
    """

    is_vector_env = True

    def __init__(
        self,
        num_envs: int = 4,
        arm: str = "joint_pos",
        gripper: bool = True,
        camera: bool = False,
        final_obs_flag: bool = True,
        episode_length: int = 6,
        direct: bool = False,
    ):
        self.cfg = _cfg(0.01, 2, episode_length, final_obs_flag, num_envs)
        self.scene = {"robot": Articulation(num_envs, "cpu")}
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.long)
        self.reward_buf = torch.zeros(num_envs)  # persistent, overwritten in place as Isaac's
        self.extras: dict = {}
        self.last_action = None
        self._am = ActionManager(self._terms(arm, gripper))
        self._om = ObservationManager(self, camera)
        self._tm = TerminationManager(self)
        if not direct:
            self.action_manager, self.observation_manager = self._am, self._om
            self.termination_manager = self._tm
        dims = self._om.group_obs_term_dim["policy"]
        if camera:
            boxes = {
                k: gym.spaces.Box(-math.inf, math.inf, d)
                for k, d in zip(self._om.active_terms["policy"], dims)
            }
            policy = gym.spaces.Dict(boxes)
        else:
            policy = gym.spaces.Box(-math.inf, math.inf, (sum(math.prod(d) for d in dims),))
        self.single_observation_space = gym.spaces.Dict({"policy": policy})
        self.single_action_space = gym.spaces.Box(-math.inf, math.inf, (self._am.total_action_dim,))

    def _terms(self, arm: str, gripper: bool) -> dict:
        base = {"asset_name": "robot", "joint_names": ["panda_joint.*"], "clip": None}
        if arm in ("joint_pos", "to_limits"):
            cls = JointPositionAction if arm == "joint_pos" else JointPositionToLimitsAction
            cfg = SimpleNamespace(**base, scale=0.5, offset=0.0, use_default_offset=True)
            cfg.clip = {"panda_joint1": (-1.0, 1.0)}
        elif arm == "joint_delta":
            cls, cfg = RelativeJointPositionAction, SimpleNamespace(**base, scale=0.1, offset=0.0)
        else:
            kind = {"ik_rel": ("pose", True), "ik_abs_pos": ("position", False)}
            command, relative = kind.get(arm, ("pose", False))
            ctrl = SimpleNamespace(command_type=command, use_relative_mode=relative)
            cls, cfg = (
                DifferentialInverseKinematicsAction,
                SimpleNamespace(**base, scale=0.5, controller=ctrl),
            )
        terms = {"arm_action": cls(cfg, self)}
        if gripper:
            g = SimpleNamespace(
                asset_name="robot",
                joint_names=["panda_finger.*"],
                open_command_expr={j: 0.04 for j in FINGERS},
                close_command_expr={j: 0.0 for j in FINGERS},
            )
            terms["gripper_action"] = BinaryJointPositionAction(g, self)
        return terms

    # ---- what Isaac Lab documents --------------------------------------------------------
    @property
    def unwrapped(self):
        return self

    @property
    def num_envs(self) -> int:
        return self.cfg.scene.num_envs

    @property
    def device(self) -> str:
        return self.cfg.sim.device

    @property
    def step_dt(self) -> float:
        return self.cfg.sim.dt * self.cfg.decimation

    @property
    def max_episode_length(self) -> int:
        return math.ceil(self.cfg.episode_length_s / self.step_dt - 1e-9)

    @staticmethod
    def seed(seed: int = -1) -> int:
        torch.manual_seed(seed)  # Isaac's configure_seed seeds torch/numpy/random globally
        return seed

    def reset(self, seed=None, env_ids=None, options=None):
        if seed is not None:
            self.seed(seed)
        self._reset_idx(torch.arange(self.num_envs) if env_ids is None else env_ids)
        return self._om.compute(), self.extras

    def step(self, action):
        self.last_action = action.clone()
        self._am.process_action(action.to(self.device))
        for _ in range(self.cfg.decimation):
            self._am.apply_action()
            self.scene["robot"].physics_step()
        self.episode_length_buf += 1
        reset_buf = self._tm.compute()
        terminated, time_outs = self._tm.terminated, self._tm.time_outs
        self.reward_buf[:] = -(self.scene["robot"].data.joint_pos[:, 0] - SUCCESS_Q).abs()
        ids = reset_buf.nonzero(as_tuple=False).squeeze(-1)
        if len(ids) > 0:
            if getattr(self.cfg, "compute_final_obs", False):
                self.extras["final_obs"] = self._om.compute()
            self._reset_idx(ids)
        self.extras["time_outs"] = time_outs  # as Isaac's RL wrappers report it too
        return self._om.compute(), self.reward_buf, terminated, time_outs, self.extras

    def close(self):
        pass

    def _reset_idx(self, ids):
        robot = self.scene["robot"]
        noise = 0.01 * torch.randn(len(ids), 9)
        robot.data.joint_pos[ids] = robot.data.default_joint_pos[ids] + noise
        robot.target[ids] = robot.data.joint_pos[ids]
        self.episode_length_buf[ids] = 0
        self.extras["log"] = {
            "Episode_Termination/success": int(self._tm.get_term("success")[ids].sum())
        }
