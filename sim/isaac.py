"""Isaac Lab as a `VectorRobotEnv`: `IsaacVectorEnv` wraps a built `ManagerBasedRLEnv` or
`DirectRLEnv` (Isaac Lab 3; 2.x where noted). Isaac Lab needs Python 3.12 and its own
torch/warp, so it is never imported at module level: `IsaacVectorEnv.make` imports it and says
in one line what to install when it is missing. docs/isaac.md has the set-up and what has run.

The translation, manager-based envs (read from the action manager's terms):
- action: one arm term, optionally followed by a binary gripper term. `JointPositionAction` ->
  `joint_pos`, `RelativeJointPositionAction` -> `joint_delta`, `DifferentialInverseKinematicsAction`
  -> `ee_delta` (relative) or `ee_pos` (absolute position; absolute pose has no robotrl mode),
  `BinaryJointAction` -> the trailing `gripper` (0 open, 1 closed; Isaac closes on a negative
  command). Our entries are in the units the arm receives (rad, m: Isaac's IK works in the
  robot's root frame); Isaac's raw action is `(ours - offset) / scale`, undoing the term's
  affine map (its `_scale`/`_offset`). Limits: the action space, narrowed by the articulation's
  soft joint limits (`joint_pos`) and the term's `clip`.
- every action goes through `BatchedSafety` first; it sees the `state` plus the measured arm
  joints (`<joint>.pos`) or end effector (`ee.x/y/z`, root frame), which its hold needs.
- `state` is the `"policy"` observation group, flat, entries named `<term>.<k>` from the
  observation space or manager (`obs.<k>` when unnamed); `cameras` names uint8 HWC image terms
  of a non-concatenated policy group, or whole image groups, to expose as `images.<name>`.
- terminated is Isaac's `terminated`; truncated its `time_outs` where not terminated (both are
  terminal with `cfg.is_finite_horizon`). `is_success` is the `success` termination term when
  the task has one, else `extras["is_success"]`, else False.
- final observation: Isaac resets finished worlds inside `step` and returns their new episode's
  first observation. With `cfg.compute_final_obs` (Isaac Lab 3, PR isaac-sim/IsaacLab#6219; the
  adapter turns it on) Isaac computes the observation once more before that reset and puts it in
  `extras["final_obs"]`: that is our `final_obs` for done rows. Without the flag (Isaac Lab 2.x)
  the pre-reset observation is gone: `final_obs` then holds the new episode's first observation
  and `final_obs_exact` is False (warned once).
- `reset(seed)` seeds Isaac globally (`env.reset(seed=...)` calls its `seed`): worlds do not get
  the per-world `(seed, i)` streams of the MuJoCo backends.

A `DirectRLEnv` has no action manager: pass `robot=RobotSpec(...)` describing its raw action
and its policy observation; actions then pass untranslated (still through the safety layer).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import replace

import torch

from robotrl.control.safety_batched import BatchedSafety
from robotrl.control.safety_config import SafetyConfig
from robotrl.env import ActionSpec, CameraSpec, RobotSpec
from robotrl.errors import RobotrlError
from robotrl.vector_env import Obs, VectorRobotEnv

ARM_TERMS = {  # Isaac Lab action term class -> robotrl action mode ("ee": by its controller)
    "JointPositionAction": "joint_pos",
    "RelativeJointPositionAction": "joint_delta",
    "DifferentialInverseKinematicsAction": "ee",
}
UNSUPPORTED = ("AbsBinaryJointPositionAction",)  # a BinaryJointAction with other semantics
EE_NAMES = {
    "ee_delta": ("ee.dx", "ee.dy", "ee.dz", "ee.drx", "ee.dry", "ee.drz"),
    "ee_pos": ("ee.x", "ee.y", "ee.z"),
}


def missing_isaac(error: ImportError) -> str:
    return (
        f"Isaac Lab is not installed ({error.name or error}): it needs Python 3.12 and its own "
        "torch/warp, so run robotrl inside Isaac Lab's environment, installed there with "
        "`pip install --no-deps -e .` or the `robotrl[isaac]` extra (see docs/isaac.md)"
    )


class IsaacVectorEnv(VectorRobotEnv):
    """An Isaac Lab RL env (`gym.make(...)` result or its `.unwrapped`) as a `VectorRobotEnv`.

    `robot` replaces the spec read from the action manager (and turns translation off);
    `safety` are `SafetyConfig.for_robot` overrides; `success_term` names the termination term
    that means success; `cameras` are image terms or groups to expose (module docstring).
    """

    def __init__(
        self,
        env,
        robot: RobotSpec | None = None,
        safety: dict | None = None,
        success_term: str = "success",
        cameras: tuple[str, ...] = (),
    ):
        self.env, self.isaac = env, env.unwrapped
        self.num_envs = int(self.isaac.num_envs)
        self.device = torch.device(self.isaac.device)
        self.success_term = success_term
        cfg = self.isaac.cfg
        state_names, camera_specs = self._observation_layout(tuple(cameras))
        self._scale = self._offset = None  # the arm term's affine map (None: pass raw)
        self._measure: list = []  # (names, callable -> [N, k]) for the safety layer's state
        if robot is None:
            action, joint_names = self._read_action_manager()
            task = getattr(getattr(env, "spec", None), "id", None) or type(self.isaac).__name__
            robot = RobotSpec(
                robot_type=f"isaac:{task}",
                control_hz=1.0 / (cfg.sim.dt * cfg.decimation),
                action=action,
                joint_names=joint_names,
                state_names=state_names,
                cameras=camera_specs,
            )
        elif len(robot.state_names) != len(state_names):
            raise RobotrlError(
                f"robot has {len(robot.state_names)} state names, the policy observation "
                f"has {len(state_names)} entries"
            )
        self.robot = robot
        measured = tuple(n for names, _ in self._measure for n in names)
        guard = replace(robot, state_names=robot.state_names + measured)
        joints = [f"{j}.pos" for j in robot.joint_names]
        if robot.action.mode == "joint_pos" and not set(joints) <= set(guard.state_names):
            raise RobotrlError(
                "joint_pos needs the measured joints (<joint>.pos) in the state: the safety "
                "layer holds there; name them in robot.state_names"
            )
        self.safety = BatchedSafety(
            guard, self.num_envs, self.device, SafetyConfig.for_robot(guard, **(safety or {}))
        )
        self.final_obs_exact = True
        if hasattr(cfg, "compute_final_obs"):
            cfg.compute_final_obs = True  # read by every step; costs one extra observation
        else:
            self._no_final_obs("this Isaac Lab has no cfg.compute_final_obs (2.x)")
        self.finite_horizon = bool(getattr(cfg, "is_finite_horizon", False))
        self._guard_state: torch.Tensor | None = None

    @classmethod
    def make(cls, task: str, num_envs: int, device: str = "cuda:0", **kwargs) -> IsaacVectorEnv:
        """Build Isaac Lab's registered `task` with `num_envs` worlds and wrap it. Launch the
        simulation app first where the task needs one (Isaac Sim/PhysX); see docs/isaac.md."""
        try:
            import gymnasium as gym
            import isaaclab_tasks  # noqa: F401  (registers the Isaac-* tasks)
            from isaaclab_tasks.utils import parse_env_cfg
        except ImportError as e:
            raise RobotrlError(missing_isaac(e)) from None
        cfg = parse_env_cfg(task, device=device, num_envs=num_envs)
        if hasattr(cfg, "compute_final_obs"):
            cfg.compute_final_obs = True
        return cls(gym.make(task, cfg=cfg), **kwargs)

    # ---- the VectorRobotEnv contract ---------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        obs, _ = self.env.reset(seed=seed, options=options)
        self.safety.reset()
        out = self._observe(obs)
        self._guard_state = self._guard(out)
        return out, {"is_success": self._zeros()}

    def step(self, actions: torch.Tensor):
        if self._guard_state is None:
            raise RobotrlError("call reset() before step()")
        safe = self.safety.filter(self.check_actions(actions), self._guard_state)
        obs, reward, terminated, time_outs, extras = self.env.step(self._to_isaac(safe))
        # copies: Isaac overwrites its reward and termination buffers in place every step
        terminated = to_torch(terminated).to(self.device, torch.bool).clone()
        time_outs = to_torch(time_outs).to(self.device, torch.bool)
        if self.finite_horizon:  # no bootstrapping past the time limit: it is terminal too
            terminated, truncated = terminated | time_outs, torch.zeros_like(time_outs)
        else:
            truncated = time_outs & ~terminated
        done = terminated | truncated
        out = self._observe(obs)
        info = {"done": done, "is_success": self._success(extras), "final_obs": out}
        if bool(done.any()):
            self.safety.reset(done)  # new episodes: no last command to rate-limit against
            info["final_obs"] = self._final(out, extras, done)
            if "log" in extras:  # Isaac's episode statistics, written by its reset
                info["log"] = extras["log"]
        self._guard_state = self._guard(out)
        reward = to_torch(reward).to(self.device, torch.float32).clone()
        return out, reward, terminated, truncated, info

    def close(self) -> None:
        self.env.close()

    # ---- actions -------------------------------------------------------------------------
    def _read_action_manager(self) -> tuple[ActionSpec, tuple[str, ...]]:
        env = self.isaac
        manager = getattr(env, "action_manager", None)
        if manager is None:
            raise RobotrlError(
                f"{type(env).__name__} has no action manager to read its actions from (a "
                "DirectRLEnv): pass robot=RobotSpec(...) describing them (see docs/isaac.md)"
            )
        names = list(manager.active_terms)
        terms = [manager.get_term(n) for n in names]
        kinds = [_kind(t) for t in terms]
        ok = kinds[:1] and kinds[0] not in (None, "gripper") and kinds[1:] in ([], ["gripper"])
        if not ok:
            listed = ", ".join(f"{n} ({type(t).__name__})" for n, t in zip(names, terms))
            raise RobotrlError(
                f"cannot read the action terms {listed}: robotrl reads one arm term "
                f"({', '.join(ARM_TERMS)}) optionally followed by a BinaryJointAction gripper; "
                "pass robot=RobotSpec(...) to describe other actions"
            )
        term, kind = terms[0], kinds[0]
        joints = tuple(getattr(term, "_joint_names", None) or ())
        dim = int(term.action_dim)
        space = env.single_action_space
        low = [float(v) for v in space.low[:dim]]
        high = [float(v) for v in space.high[:dim]]
        self._scale = self._row(getattr(term, "_scale", 1.0), dim)
        if kind == "ee":
            ctrl = term.cfg.controller
            if ctrl.command_type == "pose" and not ctrl.use_relative_mode:
                raise RobotrlError(
                    "an absolute-pose IK term (quaternion targets) has no robotrl action mode: "
                    "use use_relative_mode=True or command_type='position'"
                )
            mode = "ee_delta" if ctrl.use_relative_mode else "ee_pos"
            names, units = EE_NAMES[mode][:dim], (("m",) * 3 + ("rad",) * 3)[:dim]
            self._offset = torch.zeros_like(self._scale)
            if hasattr(term, "_compute_frame_pose"):  # ee position in the root frame
                self._measure.append(
                    (("ee.x", "ee.y", "ee.z"), lambda: term._compute_frame_pose()[0])
                )
        else:
            mode = kind
            suffix = "pos" if mode == "joint_pos" else "delta"
            names, units = tuple(f"{j}.{suffix}" for j in joints), ("rad",) * dim
            self._offset = self._row(getattr(term, "_offset", 0.0), dim)
            asset = env.scene[term.cfg.asset_name]
            index = torch.tensor(
                [list(asset.joint_names).index(j) for j in joints], device=self.device
            )
            measured = tuple(f"{j}.pos" for j in joints)
            self._measure.append((measured, lambda: to_torch(asset.data.joint_pos)[:, index]))
            limits = getattr(asset.data, "soft_joint_pos_limits", None)
            if mode == "joint_pos" and limits is not None:
                joint_limits = to_torch(limits)[0, index].tolist()
                low = [max(lo, jl) for lo, (jl, _) in zip(low, joint_limits)]
                high = [min(hi, jh) for hi, (_, jh) in zip(high, joint_limits)]
        for pattern, (lo, hi) in (getattr(term.cfg, "clip", None) or {}).items():
            for i, j in enumerate(joints if kind != "ee" else ()):
                if re.fullmatch(pattern, j):
                    low[i], high[i] = max(low[i], float(lo)), min(high[i], float(hi))
        if len(names) != dim:
            raise RobotrlError(
                f"action term {type(term).__name__} has {dim} entries but {len(names)} names "
                "could be read: pass robot=RobotSpec(...) describing them"
            )
        if (self._scale == 0).any():
            raise RobotrlError(f"action term '{type(term).__name__}' has a zero scale")
        if len(terms) == 2:
            names, units = (*names, "gripper"), (*units, "closed_fraction")
            low, high = [*low, 0.0], [*high, 1.0]
        action = ActionSpec(mode, tuple(names), tuple(units), tuple(low), tuple(high))
        return action, joints

    def _row(self, value, dim: int) -> torch.Tensor:
        """A scale or offset as `[1, dim]` or `[N, dim]` float32 on this env's device."""
        t = to_torch(value) if not isinstance(value, (int, float)) else torch.tensor(float(value))
        t = t.to(self.device, torch.float32)
        return t.expand(1, dim).clone() if t.numel() in (1, dim) else t.reshape(-1, dim)

    def _to_isaac(self, actions: torch.Tensor) -> torch.Tensor:
        """Our actions in Isaac's raw action units (see the module docstring)."""
        if self._scale is None:
            return actions
        raw, n = actions.clone(), self.robot.action.arm_dim
        raw[:, :n] = (actions[:, :n] - self._offset) / self._scale
        if self.robot.action.has_gripper:  # Isaac's binary term: negative closes
            raw[:, n] = torch.where(actions[:, n] > 0.5, -1.0, 1.0)
        return raw

    # ---- observations ------------------------------------------------------------------
    def _observation_layout(self, cameras: tuple[str, ...]):
        """State entry names and camera specs; remembers where each comes from in Isaac's obs."""
        space = self.isaac.single_observation_space
        if "policy" not in space.spaces:
            raise RobotrlError(
                f"the Isaac env has no 'policy' observation group: {list(space.spaces)}"
            )
        policy = space["policy"]
        self._state_terms: list[str] | None = None  # None: the whole policy tensor
        self._cameras: dict[str, tuple[str, str | None]] = {}
        specs, names = [], []
        for cam in cameras:
            if hasattr(policy, "spaces") and cam in policy.spaces:
                shape, source = policy[cam].shape, ("policy", cam)
            elif cam != "policy" and cam in space.spaces and not hasattr(space[cam], "spaces"):
                shape, source = space[cam].shape, (cam, None)
            else:
                raise RobotrlError(f"no image term or group '{cam}' in the Isaac observations")
            if len(shape) != 3:
                raise RobotrlError(f"'{cam}' has shape {tuple(shape)}, not an image (H, W, C)")
            specs.append(CameraSpec(cam, int(shape[0]), int(shape[1])))
            self._cameras[cam] = source
        if hasattr(policy, "spaces"):
            self._state_terms = [k for k in policy.spaces if k not in self._cameras]
            for term in self._state_terms:
                names += _entry_names(term, math.prod(policy[term].shape))
        else:
            dim = math.prod(policy.shape)
            manager = getattr(self.isaac, "observation_manager", None)
            terms = getattr(manager, "active_terms", {}).get("policy", [])
            dims = getattr(manager, "group_obs_term_dim", {}).get("policy", [])
            sizes = [math.prod(d) for d in dims]
            if terms and len(terms) == len(sizes) and sum(sizes) == dim:
                for term, size in zip(terms, sizes):
                    names += _entry_names(term, size)
            else:
                names = [f"obs.{k}" for k in range(dim)]
        return tuple(names), tuple(specs)

    def _observe(self, obs: dict) -> Obs:
        """Isaac's observation dict as ours: `state` (float32, a copy) and `images.<name>`."""
        policy, n = obs["policy"], self.num_envs
        if self._state_terms is None:
            parts = [to_torch(policy).reshape(n, -1)]
        else:
            parts = [to_torch(policy[k]).reshape(n, -1) for k in self._state_terms]
        state = torch.cat(parts, 1) if parts else torch.zeros(n, 0)
        out = {"state": state.to(self.device, torch.float32)}
        for cam, (group, term) in self._cameras.items():
            image = to_torch(obs[group] if term is None else obs[group][term])[..., :3]
            if image.dtype != torch.uint8:  # taken as 0-255 values (Isaac's normalize=False)
                image = image.round().clamp(0, 255).to(torch.uint8)
            out[f"images.{cam}"] = image.to(self.device).clone()
        return out

    def _final(self, out: Obs, extras: dict, done: torch.Tensor) -> Obs:
        """The pre-reset observation in done rows, `out` elsewhere (module docstring)."""
        final = extras.get("final_obs") if self.final_obs_exact else None
        if not isinstance(final, dict) or "policy" not in final:
            if self.final_obs_exact:
                self._no_final_obs("Isaac Lab gave no extras['final_obs'] on a reset step")
            return out
        final = self._observe(final)
        return {
            k: torch.where(done.view(-1, *[1] * (v.dim() - 1)), final[k], v) for k, v in out.items()
        }

    def _no_final_obs(self, why: str) -> None:
        self.final_obs_exact = False
        warnings.warn(
            f"{why}: final_obs holds the new episode's first observation for done worlds",
            stacklevel=3,
        )

    def _guard(self, out: Obs) -> torch.Tensor:
        """What the safety layer checks against: the state and the measured arm."""
        parts = [out["state"]] + [
            to_torch(f()).to(self.device, torch.float32) for _, f in self._measure
        ]
        return torch.cat(parts, 1)

    def _success(self, extras: dict) -> torch.Tensor:
        manager = getattr(self.isaac, "termination_manager", None)
        if manager is not None and self.success_term in getattr(manager, "active_terms", ()):
            return to_torch(manager.get_term(self.success_term)).to(self.device, torch.bool).clone()
        if "is_success" in extras:
            return to_torch(extras["is_success"]).to(self.device, torch.bool).reshape(-1).clone()
        return self._zeros()

    def _zeros(self) -> torch.Tensor:
        return torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)


def _kind(term) -> str | None:
    """`joint_pos`, `joint_delta`, `ee`, `gripper` or None, from the term's class and bases
    (by name: Isaac Lab is not imported to compare classes)."""
    for cls in type(term).__mro__:
        if cls.__name__ in UNSUPPORTED:
            return None
        if cls.__name__ in ARM_TERMS:
            return ARM_TERMS[cls.__name__]
        if cls.__name__ == "BinaryJointAction":
            return "gripper"
    return None


def _entry_names(term: str, size: int) -> list[str]:
    return [term] if size == 1 else [f"{term}.{k}" for k in range(size)]


def to_torch(x) -> torch.Tensor:
    """A tensor from what Isaac Lab hands out: torch, its 3.x `ProxyArray` (`.torch`), or a
    warp array (zero-copy through `warp.to_torch`)."""
    if isinstance(x, torch.Tensor):
        return x
    if hasattr(x, "torch"):
        return x.torch
    if type(x).__module__.startswith("warp"):
        import warp  # Isaac Lab's environment has it; ours never reaches here

        return warp.to_torch(x)
    return torch.as_tensor(x)
