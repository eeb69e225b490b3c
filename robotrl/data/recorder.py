"""`Recorder`: wrap any `RobotEnv` and every episode it runs becomes a dataset episode.

A frame is (observation at t, action at t, what followed: next.reward / next.done /
next.success). Its timestamp is when the observation was taken, relative to the episode's
first: wall-clock time for a real-time env (hardware, or sim paced for a human), sim time
for a sim running as fast as it can (where wall time means nothing). Episodes whose
achieved rate fell below 95% of the nominal fps are flagged in the episodes table.
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from robotrl.data.layout import features_for
from robotrl.data.writer import DatasetWriter
from robotrl.errors import RobotrlError


class Recorder(gym.Wrapper):
    def __init__(
        self,
        env,
        root: str | Path,
        task: str | None = None,
        auto_save: bool = True,
        policy_action: bool = False,
    ):
        super().__init__(env)
        robot = env.unwrapped.robot
        self.fps = robot.control_hz
        self.writer = DatasetWriter(
            root, features_for(robot, self.fps, policy_action), self.fps, robot.robot_type
        )
        self.task = task or type(env.unwrapped).__name__
        self.auto_save = auto_save
        self.policy_action = policy_action
        self.wall_clock = bool(getattr(env.unwrapped, "realtime", True))
        self._buffer: dict[str, list] | None = None

    @property
    def recording(self) -> bool:
        return self._buffer is not None

    @property
    def episode_length(self) -> int:
        return len(self._buffer["action"]) if self._buffer else 0

    def reset(self, **kwargs):
        if self.recording:
            self.discard_episode()
        obs, info = self.env.reset(**kwargs)
        self.writer.begin_episode()
        self._buffer = {
            "timestamp": [],
            "action": [],
            "next.reward": [],
            "next.done": [],
            "next.success": [],
            "intervention": [],
            "_obs": [],
        }
        if self.policy_action:
            self._buffer["policy_action"] = []
        self._t0 = time.monotonic()
        self._obs, self._obs_time = obs, 0.0
        return obs, info

    def step(self, action, intervention: bool = False, policy_action=None):
        if not self.recording:
            raise RobotrlError("call reset() before step(): no episode is being recorded")
        obs, reward, terminated, truncated, info = self.env.step(action)
        buf = self._buffer
        buf["_obs"].append(self._obs)
        buf["timestamp"].append(self._obs_time)
        buf["action"].append(np.asarray(action, np.float32))
        buf["next.reward"].append(reward)
        buf["next.done"].append(terminated or truncated)
        buf["next.success"].append(bool(info.get("is_success", False)))
        buf["intervention"].append(intervention or bool(info.get("intervention", False)))
        if self.policy_action:
            fallback = np.full(len(buf["action"][-1]), np.nan, np.float32)
            buf["policy_action"].append(fallback if policy_action is None else policy_action)
        self._obs = obs
        self._obs_time = (
            time.monotonic() - self._t0 if self.wall_clock else len(buf["action"]) / self.fps
        )
        if self.auto_save and (terminated or truncated):
            self.save_episode()
        return obs, reward, terminated, truncated, info

    def relabel_last_action(self, action) -> None:
        """Record `action` for the last step instead of the command that was executed (DART:
        the demonstrator's intent, not the noise added to it)."""
        if not self.episode_length:
            raise RobotrlError("nothing recorded in this episode")
        self._buffer["action"][-1] = np.asarray(action, np.float32)

    def save_episode(self, success: bool | None = None, extra: dict | None = None) -> int:
        """Commit the episode recorded so far. `success` overrides the env's verdict (a human
        pressed success or failure); the last frame is then marked done."""
        if not self.episode_length:
            raise RobotrlError("nothing recorded in this episode")
        buf, self._buffer = self._buffer, None
        frames = {k: np.asarray(v) for k, v in buf.items() if k != "_obs"}
        frames["timestamp"] = frames["timestamp"].astype(np.float32)
        frames["next.done"][-1] = True
        if success is not None:
            frames["next.success"][-1] = success
        for key in buf["_obs"][0]:
            frames["observation." + key] = np.stack([o[key] for o in buf["_obs"]])
        extra = {
            "success": bool(frames["next.success"][-1]),
            "intervention_frames": int(frames["intervention"].sum()),
        } | (extra or {})
        return self.writer.add_episode(frames, self.task, extra)

    def discard_episode(self) -> None:
        """Throw the current episode away (re-record)."""
        self._buffer = None
        self.writer.abandon_episode()

    def close(self):
        if self.recording:
            self.discard_episode()
        super().close()
