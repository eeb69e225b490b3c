"""Our tasks on the MuJoCo Warp backend: each task's reward, success and environment state
for N worlds at once in torch (the CPU task's formulas, term for term), and its reset
distribution drawn per world by the CPU task's own `task_reset`, so world `i` of
`reset(seed=s)` starts where a CPU env whose generator is `default_rng([s, i])` starts.

`make_warp_env("Lift", 64)` builds the env; `WorldExperts` runs the task's scripted expert
one world at a time (a CPU copy of each world's state), for demos and parity checks.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import torch

from robotrl.errors import RobotrlError
from robotrl.sim.warp_env import WarpVectorEnv
from robotrl.tasks import lift, peg_insert, reach, t_block, task_name
from robotrl.tasks import make as make_task


class WarpTask:
    """Batched hooks of one task on a `WarpVectorEnv`."""

    def __init__(self, env: WarpVectorEnv):
        self.env = env
        t = env.template
        if t.randomizer is not None:
            raise RobotrlError("the warp backend does not apply domain randomization yet")
        self._home = t.data.qpos.copy()
        self._mocap = (t.data.mocap_pos.copy(), t.data.mocap_quat.copy())
        dev = env.device
        self.geom_body = torch.as_tensor(t.model.geom_bodyid, dtype=torch.long, device=dev)
        self.fingers = tuple(t._finger_bodies)
        self.ee = t.arm.ee_site

    def place(self, env: WarpVectorEnv, ids: torch.Tensor, rngs: list) -> None:
        """Draw each world's episode start with the CPU task's own `task_reset`."""
        if not rngs:
            return
        t, rows, mocap_pos, mocap_quat = env.template, [], [], []
        for rng in rngs:
            t.data.qpos[:] = self._home
            t.data.mocap_pos[:], t.data.mocap_quat[:] = self._mocap
            t.task_reset(rng)
            rows.append(t.data.qpos.copy())
            mocap_pos.append(t.data.mocap_pos.copy())
            mocap_quat.append(t.data.mocap_quat.copy())
        as_t = lambda x: torch.as_tensor(np.stack(x), dtype=torch.float32, device=env.device)  # noqa: E731
        env.w.qpos[ids] = as_t(rows)
        if env.w.mocap_pos.shape[1]:
            env.w.mocap_pos[ids] = as_t(mocap_pos)
            env.w.mocap_quat[ids] = as_t(mocap_quat)

    def environment_state(self, env) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, env) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense reward `[N]` and success `[N]` (bool) of every world's current state."""
        raise NotImplementedError

    def grasped(self, env, body: int) -> torch.Tensor:
        """`[N]`: whether every finger touches `body` (as `MujocoEnv.grasped`)."""
        if not self.fingers:
            return torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
        geom, world, valid = env.w.contacts()
        b = self.geom_body[geom.long().clamp(min=0)]
        world = world.long().clamp(0, env.num_envs - 1)
        touching = []
        for finger in self.fingers:
            hit = valid & (
                ((b[:, 0] == body) & (b[:, 1] == finger))
                | ((b[:, 1] == body) & (b[:, 0] == finger))
            )
            count = torch.zeros(env.num_envs, device=env.device).index_add_(0, world, hit.float())
            touching.append(count > 0)
        return torch.stack(touching, 1).all(1)


class ReachWarp(WarpTask):
    def environment_state(self, env):
        return env.w.mocap_pos[:, 0]

    def evaluate(self, env):
        distance = (env.w.mocap_pos[:, 0] - env.w.site_xpos[:, self.ee]).norm(dim=1)
        return 1.0 - torch.tanh(5.0 * distance), distance < reach.SUCCESS_DISTANCE


class LiftWarp(WarpTask):
    def __init__(self, env):
        super().__init__(env)
        adr = int(env.template.model.joint("cube").qposadr[0])
        self.cube = slice(adr, adr + 7)
        self.body = env.template.model.body("cube").id

    def environment_state(self, env):
        return env.w.qpos[:, self.cube]

    def evaluate(self, env):
        cube = env.w.qpos[:, self.cube][:, :3]
        reach_term = 1.0 - torch.tanh(10.0 * (cube - env.w.site_xpos[:, self.ee]).norm(dim=1))
        grasped = self.grasped(env, self.body).float()
        height = cube[:, 2] - lift.CUBE_HALF
        lifted = (height / lift.LIFT_HEIGHT).clamp(0.0, 1.0)
        success = height > lift.LIFT_HEIGHT
        return reach_term + 0.5 * grasped + 2.0 * lifted * grasped, success


class PushTWarp(WarpTask):
    def __init__(self, env):
        super().__init__(env)
        first = int(env.template.model.joint("block_x").qposadr[0])
        self.block = slice(first, first + 3)
        self.goal_points = torch.as_tensor(
            t_block._GOAL_POINTS, dtype=torch.float32, device=env.device
        )
        self.success_coverage = env.template.success_coverage

    def pose(self, env) -> torch.Tensor:
        pose = env.w.qpos[:, self.block].clone()
        pose[:, 2] = torch.remainder(pose[:, 2] + math.pi, 2 * math.pi) - math.pi
        return pose

    def environment_state(self, env):
        x, y, yaw = self.pose(env).unbind(1)
        return torch.stack([x, y, torch.cos(yaw), torch.sin(yaw)], 1)

    def coverage(self, pose: torch.Tensor) -> torch.Tensor:
        """`t_block.coverage` for `[N, 3]` block poses."""
        gx, gy, gyaw = t_block.GOAL_POSE
        dyaw = gyaw - pose[:, 2]
        c, s = torch.cos(dyaw), torch.sin(dyaw)
        cb, sb = torch.cos(pose[:, 2]), torch.sin(pose[:, 2])
        dx, dy = gx - pose[:, 0], gy - pose[:, 1]
        ox, oy = dx * cb + dy * sb, -dx * sb + dy * cb
        px, py = self.goal_points[:, 0], self.goal_points[:, 1]
        lx = px[None] * c[:, None] - py[None] * s[:, None] + ox[:, None]
        ly = px[None] * s[:, None] + py[None] * c[:, None] + oy[:, None]
        (_, bar_y, bar_hx, bar_hy), (_, stem_y, stem_hx, stem_hy) = t_block.RECTS
        ax = lx.abs()
        inside = (ax <= bar_hx) & ((ly - bar_y).abs() <= bar_hy)
        inside |= (ax <= stem_hx) & ((ly - stem_y).abs() <= stem_hy)
        return inside.float().mean(1)

    def evaluate(self, env):
        cov = self.coverage(self.pose(env))
        return (cov / self.success_coverage).clamp(max=1.0), cov >= self.success_coverage


class PegInsertWarp(WarpTask):
    def __init__(self, env):
        super().__init__(env)
        m = env.template.model
        adr = int(m.joint("peg").qposadr[0])
        self.peg = slice(adr, adr + 7)
        self.body = m.body("peg").id
        self.mocap = int(m.body("fixture").mocapid[0])

    def hole_yaw(self, env) -> torch.Tensor:
        quat = env.w.mocap_quat[:, self.mocap]
        return 2 * torch.atan2(quat[:, 3], quat[:, 0])

    def environment_state(self, env):
        hole = env.w.mocap_pos[:, self.mocap]
        return torch.cat([env.w.qpos[:, self.peg], hole, self.hole_yaw(env)[:, None]], 1)

    def evaluate(self, env):
        p = peg_insert
        w = env.w
        peg_pos, peg_mat = w.xpos[:, self.body], w.xmat[:, self.body]
        bottom = peg_pos - peg_mat[:, :, 2] * p.PEG_HALF_HEIGHT
        yaw, hole = self.hole_yaw(env), w.mocap_pos[:, self.mocap]
        rel = bottom - hole
        c, s = torch.cos(yaw), torch.sin(yaw)
        local = torch.stack(
            [c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1
        )
        xy_error = local[:, :2].norm(dim=1)
        depth = (-local[:, 2] / p.HOLE_DEPTH).clamp(0.0, 1.0)
        in_opening = local[:, :2].abs().amax(1) < p.HOLE_HALF
        upright = peg_mat[:, 2, 2] > p.UPRIGHT_COS
        success = in_opening & upright & (depth >= p.INSERTED_FRACTION)
        grasp_point = peg_pos + torch.tensor(
            [0.0, 0.0, p.PEG_HALF_HEIGHT - p.GRASP_BELOW_TOP], device=env.device
        )
        reach_term = 0.1 * (
            1 - torch.tanh(10 * (grasp_point - w.site_xpos[:, self.ee]).norm(dim=1))
        )
        grasped = self.grasped(env, self.body)
        lifted = (bottom[:, 2] / (p.HOLE_DEPTH + 0.02)).clamp(0.0, 1.0)
        zero = torch.zeros_like(lifted)
        lift_term = torch.where(grasped, 0.35 + 0.15 * lifted, zero)
        hover = torch.where(
            grasped & (lifted > 0.5), 0.5 + 0.2 * (1 - torch.tanh(20 * xy_error)), zero
        )
        insert = torch.where(in_opening & (local[:, 2] < 0), 0.7 + 0.3 * depth, zero)
        stages = torch.stack([reach_term, lift_term, hover, insert, success.float()], 1)
        return stages.amax(1), success


WARP_TASKS = {"Reach": ReachWarp, "Lift": LiftWarp, "PushT": PushTWarp, "PegInsert": PegInsertWarp}


def make_warp_env(task: str, num_envs: int, device: str = "cpu", **kwargs) -> WarpVectorEnv:
    """`num_envs` worlds of `task` on MuJoCo Warp (`kwargs`: robot, action_mode, reward_type,
    max_episode_steps, control_hz, as for the CPU task)."""
    name = task_name(task)
    if name not in WARP_TASKS:
        raise RobotrlError(f"{name} has no warp backend yet: choose {', '.join(WARP_TASKS)}")
    template = make_task(name, obs_mode="state", **kwargs)
    return WarpVectorEnv(template, WARP_TASKS[name], num_envs, device)


class WorldExperts:
    """The task's scripted expert for every world, one world at a time: each world's state is
    copied into a CPU env of its own, which the unchanged expert reads."""

    def __init__(self, env: WarpVectorEnv):
        t = env.template
        self.env = env
        self.shadows = [make_task(env.task_name, obs_mode="state",
                                  robot=t.arm_model, action_mode=t.robot.action.mode)
                        for _ in range(env.num_envs)]  # fmt: skip
        self.experts = [s.make_expert() for s in self.shadows]

    def reset(self, mask: torch.Tensor | None = None) -> None:
        for i in range(self.env.num_envs) if mask is None else mask.nonzero()[:, 0].tolist():
            self.experts[i].reset()

    def actions(self) -> torch.Tensor:
        w = self.env.w
        qpos, qvel = w.qpos.cpu().numpy(), w.qvel.cpu().numpy()
        mocap_pos, mocap_quat, ctrl = (x.cpu().numpy() for x in (w.mocap_pos, w.mocap_quat, w.ctrl))
        out = []
        for i, (shadow, expert) in enumerate(zip(self.shadows, self.experts)):
            d = shadow.data
            d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[i], qvel[i], ctrl[i]
            d.mocap_pos[:], d.mocap_quat[:] = mocap_pos[i], mocap_quat[i]
            mujoco.mj_forward(shadow.model, d)
            out.append(expert.select_action())
        return torch.as_tensor(np.stack(out), device=self.env.device)
