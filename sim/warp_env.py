"""`WarpVectorEnv`: a task's MuJoCo scene on N worlds of MuJoCo Warp, as a `VectorRobotEnv`.

The scene is the CPU env's own compiled model (built with MjSpec as always), put on the Warp
device (`cpu`, or `cuda:N` on a GPU machine). A step stays on that device: the batched safety
filter, the batched controller writing `ctrl`, one captured graph of the control period's
physics substeps, then the task's batched reward/success and the observation, all on torch
views of Warp's arrays (no copies, no numpy). Worlds that end are reset in the same step.

The task supplies three batched hooks (see `tasks/warp_tasks.py`): `place` (the reset
distribution, drawn per world from that world's own stream with the CPU task's own draw),
`environment_state` and `evaluate`. Not on this backend yet: cameras (MuJoCo Warp's batched
renderer) and the randomizer's mass/colour changes.

Kernel compilation: the first use on a machine compiles MuJoCo Warp's kernels (minutes on
2 cores), cached by Warp (`~/.cache/warp`, or `ROBOTRL_WARP_CACHE`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from robotrl.control.safety_batched import BatchedSafety
from robotrl.errors import RobotrlError
from robotrl.sim.warp_control import make_batched_controller, mat2quat
from robotrl.vector_env import VectorRobotEnv, world_rngs

CONTACTS_PER_WORLD = 32  # contact slots per world (all worlds share naconmax = N * this)
CONSTRAINT_ROWS = 256  # njmax: constraint rows per world


def import_warp():
    """`warp` and `mujoco_warp`, initialised quietly, or one line naming the extra."""
    try:
        import warp

        # before anything initialises it: no banner, no per-module load lines
        warp.config.quiet, warp.config.log_level = True, warp.LOG_WARNING
        if os.environ.get("ROBOTRL_WARP_CACHE"):
            warp.config.kernel_cache_dir = os.environ["ROBOTRL_WARP_CACHE"]
        import mujoco_warp
    except ImportError as e:
        raise RobotrlError(
            f"the warp backend needs MuJoCo Warp ({e.name}): pip install robotrl[warp]"
        ) from None
    warp.init()
    return warp, mujoco_warp


@dataclass
class WorldViews:
    """Torch views of the Warp data (writes go straight to the simulator)."""

    qpos: torch.Tensor  # [N, nq]
    qvel: torch.Tensor
    ctrl: torch.Tensor  # [N, nu]
    mocap_pos: torch.Tensor  # [N, nmocap, 3]
    mocap_quat: torch.Tensor  # [N, nmocap, 4]
    xpos: torch.Tensor  # [N, nbody, 3]
    xmat: torch.Tensor  # [N, nbody, 3, 3]
    site_xpos: torch.Tensor  # [N, nsite, 3]
    site_xmat: torch.Tensor  # [N, nsite, 3, 3]
    xaxis: torch.Tensor  # [N, njnt, 3]
    xanchor: torch.Tensor
    contact_geom: torch.Tensor  # [naconmax, 2]
    contact_world: torch.Tensor  # [naconmax]
    contact_dist: torch.Tensor
    contact_margin: torch.Tensor
    nacon: torch.Tensor  # [1]
    arm_joint_ids: tuple[int, ...] = ()

    def contacts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(geom pairs, world ids, valid mask) of this step's contacts, without a sync."""
        rows = torch.arange(len(self.contact_world), device=self.contact_world.device)
        valid = (rows < self.nacon[0]) & (self.contact_dist <= self.contact_margin)
        return self.contact_geom, self.contact_world, valid


class WarpVectorEnv(VectorRobotEnv):
    def __init__(self, template, task, num_envs: int, device: str = "cpu"):
        """`template`: the task's CPU `MujocoEnv` (state observations); `task`: its batched
        hooks, built with this env; `device`: a Warp device name (`cpu`, `cuda:0`)."""
        if template.robot.cameras:
            raise RobotrlError("the warp backend has state observations only (no cameras yet)")
        if num_envs < 1:
            raise RobotrlError(f"num_envs must be at least 1, got {num_envs}")
        wp, mjw = import_warp()
        self._wp, self._mjw = wp, mjw
        self.template, self.num_envs, self.robot = template, num_envs, template.robot
        self.warp_device = wp.get_device(device)
        self.device = torch.device(
            "cpu" if self.warp_device.is_cpu else f"cuda:{self.warp_device.ordinal}"
        )
        self.max_episode_steps = template.max_episode_steps
        self.sparse = template.reward_type == "sparse"
        template.reset(seed=0)  # the home state every world starts from
        mjm = template.model
        with wp.ScopedDevice(self.warp_device):
            self.m = mjw.put_model(mjm)
            self.d = mjw.put_data(
                mjm, template.data, nworld=num_envs,
                naconmax=num_envs * CONTACTS_PER_WORLD, njmax=CONSTRAINT_ROWS,
            )  # fmt: skip
        d, t = self.d, wp.to_torch
        arm = template.arm
        self.w = WorldViews(
            t(d.qpos), t(d.qvel), t(d.ctrl), t(d.mocap_pos), t(d.mocap_quat), t(d.xpos),
            t(d.xmat), t(d.site_xpos), t(d.site_xmat),
            t(d.xaxis), t(d.xanchor), t(d.contact.geom), t(d.contact.worldid), t(d.contact.dist),
            t(d.contact.includemargin), t(d.nacon),
            tuple(int(mjm.dof_jntid[a]) for a in arm.dof_adr),
        )  # fmt: skip
        self.home_qpos = torch.as_tensor(
            template.data.qpos, dtype=torch.float32, device=self.device
        )
        self.home_ctrl = torch.as_tensor(
            template.data.ctrl, dtype=torch.float32, device=self.device
        )
        self.controller = make_batched_controller(
            self.w, arm, self.robot.action, template.controller.dt
        )
        self.safety = BatchedSafety(self.robot, num_envs, self.device)
        self.steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.rngs = world_rngs(None, num_envs)
        self.task_name = type(template).__name__.removesuffix("Env")
        self.task = task(self)
        finger_qadr = template._finger_qadr
        self._finger_qadr = finger_qadr[0] if finger_qadr else None
        self._quat_site = arm.ee_site
        self._graph = self._capture()

    # ---- VectorRobotEnv -----------------------------------------------------------------
    def reset(self, seed=None, options=None):
        self.rngs = world_rngs(seed, self.num_envs)
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._reset_worlds(everyone)
        obs = self.observe()
        self._state = obs["state"]
        return obs, {"is_success": torch.zeros_like(everyone)}

    def step(self, actions):
        commands = self.safety.filter(self.check_actions(actions), self._state)
        self.controller.apply(commands)
        self._physics()
        self.steps += 1
        reward, success = self.task.evaluate(self)
        if self.sparse:
            reward = success.float()
        truncated = self.steps >= self.max_episode_steps
        terminated = success.clone()
        obs = self.observe()
        done = terminated | truncated
        info = {"is_success": success, "done": done, "final_obs": obs}
        if bool(done.any()):
            info["final_obs"] = {k: v.clone() for k, v in obs.items()}
            self._reset_worlds(done)
            obs = self.observe()
        self._state = obs["state"]
        return obs, reward, terminated, truncated, info

    def observe(self) -> dict[str, torch.Tensor]:
        w, arm = self.w, self.template.arm
        parts = [w.qpos[:, self.controller.qpos_adr]]
        if arm.gripper_actuator is not None:
            if self._finger_qadr is not None:
                opening = w.qpos[:, self._finger_qadr] / max(
                    self.template.arm_model.gripper_open, 1e-9
                )
            else:
                lo, hi = arm.gripper_range
                opening = (w.ctrl[:, arm.gripper_actuator] - lo) / (hi - lo)
            parts.append(opening[:, None])
        parts += [w.site_xpos[:, arm.ee_site], mat2quat(w.site_xmat[:, arm.ee_site])]
        obs = {"state": torch.cat(parts, 1)}
        if self.robot.environment_state_names:
            # a copy: the task may hand out a view of the simulator's memory
            obs["environment_state"] = self.task.environment_state(self).clone()
        return obs

    # ---- internals ----------------------------------------------------------------------
    def _capture(self):
        """One graph for a control period's substeps (replaying it skips the per-kernel launch
        cost that dominates on CPU); plain launches where the device cannot capture."""
        wp = self._wp
        with wp.ScopedDevice(self.warp_device):
            self._mjw.step(self.m, self.d)  # compile outside the capture
            self._reset_worlds(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
            try:
                with wp.ScopedCapture() as capture:
                    for _ in range(self.template.n_substeps):
                        self._mjw.step(self.m, self.d)
            except Exception:  # noqa: BLE001  (a device or build without graph capture)
                return None
        self._reset_worlds(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return capture.graph

    def _physics(self) -> None:
        wp = self._wp
        with wp.ScopedDevice(self.warp_device):
            if self._graph is not None:
                wp.capture_launch(self._graph)
            else:
                for _ in range(self.template.n_substeps):
                    self._mjw.step(self.m, self.d)

    def _reset_worlds(self, mask: torch.Tensor) -> None:
        """New episodes for the worlds in `mask`: MuJoCo's reset, the arm at home with the
        gripper open, the task's placement, then kinematics for those worlds only (the
        others keep what their last step computed, as their CPU envs would)."""
        wp, mjw, w = self._wp, self._mjw, self.w
        keep = ~mask
        derived = (w.site_xpos, w.site_xmat, w.xaxis, w.xanchor, w.xpos, w.xmat)
        saved = [x.clone() for x in derived]
        with wp.ScopedDevice(self.warp_device):
            mjw.reset_data(self.m, self.d, reset=wp.from_torch(mask.contiguous()))
            w.qpos[mask] = self.home_qpos
            w.ctrl[mask] = self.home_ctrl
            ids = mask.nonzero()[:, 0]
            self.task.place(self, ids, [self.rngs[i] for i in ids.tolist()])
            mjw.forward(self.m, self.d)
        for view, before in zip(derived, saved):
            view[keep] = before[keep]
        self.controller.reset(mask)
        self.safety.reset(mask)
        self.steps[mask] = 0
