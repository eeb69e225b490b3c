"""`BatchedSafety`: the safety layer's `filter` for N worlds at once, in torch on the worlds'
device (a batched simulator's actions never leave it).

The same limits, in the same order, as `Safety.filter` (see `robotrl.control.safety`): NaN/inf
-> the hold command; then action limits, gripper range, joint limits, change per step, joint
velocity and acceleration, and the workspace box. Each world keeps its own last command and
commanded joint speed; `reset(mask)` forgets them for the worlds that start a new episode.
The limits come from one `Safety` built from the same `SafetyConfig`, so a config is checked
once and both filters agree (tested world by world against `Safety.filter`).

Not here: the watchdog (a batched simulator has no clock to miss; hardware runs one env per
arm through `SafeEnv`). The e-stop latches for every world.
"""

from __future__ import annotations

from collections import Counter

import torch

from robotrl.control.safety import Safety
from robotrl.control.safety_config import JOINT_MODES, SafetyConfig, SafetyError
from robotrl.env import RobotSpec
from robotrl.errors import InvalidActionError


class BatchedSafety:
    def __init__(
        self,
        robot: RobotSpec,
        num_envs: int,
        device: str | torch.device = "cpu",
        config: SafetyConfig | None = None,
    ):
        self.one = one = Safety(robot, config)  # validates the config, holds the limits
        self.config, self.mode, self.dim, self.n_arm = one.config, one.mode, one.dim, one.n_arm
        self.num_envs, self.device = num_envs, torch.device(device)

        def t(x):
            return None if x is None else torch.as_tensor(x, dtype=torch.float32, device=device)

        def idx(x):
            return None if x is None else torch.as_tensor(x, dtype=torch.long, device=device)

        self._low, self._high = t(one._low), t(one._high)
        self._gripper_low, self._gripper_high = t(one._gripper_low), t(one._gripper_high)
        self._joint_low, self._joint_high = t(one._joint_low), t(one._joint_high)
        self._max_step, self._vmax, self._amax = t(one._max_step), t(one._vmax), t(one._amax)
        self._pos_low, self._pos_high = (
            t(getattr(one, "_pos_low", None)),
            t(getattr(one, "_pos_high", None)),
        )
        self._joint_idx, self._ee_idx = idx(one._joint_idx), idx(one._ee_idx)
        self._opening_idx = idx(one._opening_idx)
        self._workspace = one._workspace
        if self._workspace:
            self._ws_low = t(self.config.workspace_low)
            self._ws_high = t(self.config.workspace_high)
        self.interventions: Counter[str] = Counter()  # worlds clipped, summed over steps
        self.last_interventions: dict[str, int] = {}
        self.estop_reason: str | None = None
        self._last = torch.zeros(num_envs, self.dim, device=device)
        self._has_last = torch.zeros(num_envs, dtype=torch.bool, device=device)
        self._velocity = torch.zeros(num_envs, self.n_arm, device=device)

    def reset(self, mask: torch.Tensor | None = None) -> None:
        """New episodes for the worlds in `mask` (all when None): forget their last command."""
        if mask is None:
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._has_last &= ~mask
        self._velocity[mask] = 0.0

    def estop(self, reason: str = "e-stop") -> None:
        self.estop_reason = reason or "e-stop"

    def reset_estop(self) -> None:
        self.estop_reason = None

    def filter(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The commands to send instead of `actions [N, A]`, given each world's `state [N, S]`."""
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if a.shape != (self.num_envs, self.dim):
            raise InvalidActionError(
                f"actions have shape {tuple(a.shape)}, expected ({self.num_envs}, {self.dim})"
            )
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device)
        self.last_interventions = {}
        hold, ok = self._hold_command(state)
        if self.estop_reason is not None:
            self._count("estop", torch.ones_like(ok))
            return self._sent(hold, hold)
        bad = ~torch.isfinite(a).all(1) | ~ok
        self._count("nan", bad)
        out = torch.where(bad[:, None], hold, a)
        n, dt = self.n_arm, self.config.ctrl_dt
        prev = torch.where(self._has_last[:, None], self._last, hold)
        inf = torch.full_like(out, torch.inf)

        self._clip(out, "action_limit", self._low, self._high)
        if self.one.has_gripper:
            self._clip(out, "gripper", self._gripper_low, self._gripper_high)
        if self._joint_low is not None and self.mode in JOINT_MODES:
            low, high = self._low.expand_as(out).clone(), self._high.expand_as(out).clone()
            if self.mode == "joint_pos":
                low[:, :n], high[:, :n] = self._joint_low, self._joint_high
            else:  # a delta may not take the measured joint further past a limit
                q = state[:, self._joint_idx]
                low[:, :n] = (self._joint_low - q).clamp(max=0.0)
                high[:, :n] = (self._joint_high - q).clamp(min=0.0)
            self._clip(out, "joint_limit", low, high)
        self._clip(
            out,
            "rate_limit",
            torch.minimum(prev - self._max_step, hold),
            torch.maximum(prev + self._max_step, hold),
        )
        if self._vmax is not None:
            low, high = -inf.clone(), inf.clone()
            low[:, :n], high[:, :n] = hold[:, :n] - self._vmax * dt, hold[:, :n] + self._vmax * dt
            self._clip(out, "velocity", low, high)
        if self._amax is not None:
            v, dv = self._velocity, self._amax * dt
            low, high = -inf.clone(), inf.clone()
            low[:, :n] = hold[:, :n] + (v - dv).clamp(max=0.0) * dt
            high[:, :n] = hold[:, :n] + (v + dv).clamp(min=0.0) * dt
            self._clip(out, "acceleration", low, high)
        if self._workspace:
            low, high = -inf.clone(), inf.clone()
            if self.mode == "ee_pos":
                low[:, :3] = torch.minimum(self._ws_low, hold[:, :3])
                high[:, :3] = torch.maximum(self._ws_high, hold[:, :3])
            else:
                ee = state[:, self._ee_idx]
                low[:, :3] = (self._ws_low - ee).clamp(max=0.0)
                high[:, :3] = (self._ws_high - ee).clamp(min=0.0)
            self._clip(out, "workspace", low, high)
        out = torch.where(bad[:, None], hold, out)
        return self._sent(out, hold)

    # ---- internals ----------------------------------------------------------------------
    def _clip(self, out, kind: str, low, high) -> None:
        clipped = torch.clamp(out, low, high)
        moved = (clipped - out).abs().amax(1) > self.config.tolerance
        self._count(kind, moved)
        out.copy_(clipped)

    def _count(self, kind: str, worlds: torch.Tensor) -> None:
        k = int(worlds.sum())
        if k:
            self.interventions[kind] += k
            self.last_interventions[kind] = self.last_interventions.get(kind, 0) + k

    def _sent(self, out: torch.Tensor, hold: torch.Tensor) -> torch.Tensor:
        if self.mode in JOINT_MODES:
            self._velocity = (out[:, : self.n_arm] - hold[:, : self.n_arm]) / self.config.ctrl_dt
        self._last = out.clone()
        self._has_last[:] = True
        return out

    def _hold_command(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each world's hold command (as `Safety._hold_command`) and whether it could be
        checked against a finite state (False rows get the hold, counted as `nan`)."""
        n, N = self.n_arm, self.num_envs
        hold = torch.zeros(N, self.dim, device=self.device)
        ok = torch.ones(N, dtype=torch.bool, device=self.device)
        has = self._has_last[:, None]
        absolute = {"joint_pos": (self._joint_idx, n), "ee_pos": (self._ee_idx, 3)}
        if self.mode in absolute:
            index, k = absolute[self.mode]
            if index is None:
                raise SafetyError(f"{self.mode} needs the positions it commands in the state")
            measured = state[:, index].clamp(self._pos_low, self._pos_high)
            if not (self._has_last | torch.isfinite(measured).all(1)).all():
                raise SafetyError(
                    f"{self.mode} cannot hold before its first command without finite "
                    "positions in the state"
                )
            hold[:, :k] = torch.where(has, self._last[:, :k], torch.nan_to_num(measured))
        if self.one.has_gripper:
            if self._opening_idx is not None:
                opening = state[:, self._opening_idx[0]]
                closed = torch.where(torch.isfinite(opening), 1.0 - opening, 0.0)
            else:
                closed = torch.zeros(N, device=self.device)
            closed = closed.clamp(self._gripper_low[n], self._gripper_high[n])
            hold[:, n] = torch.where(self._has_last, self._last[:, n], closed)
        if self._workspace:
            ok &= torch.isfinite(state[:, self._ee_idx]).all(1)
        if self.mode == "joint_delta" and self._joint_low is not None:
            ok &= torch.isfinite(state[:, self._joint_idx]).all(1)
        return hold, ok
