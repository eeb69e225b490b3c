"""Human interventions: a gymnasium wrapper through which any `Teleop` device can take over
from the policy, as in HIL-SERL.

Each step the device is read with the latest observation; while its command says a human is
intervening, its action replaces the policy's. The step's `info` says what happened:
`intervention` (bool), `action` (what was sent, before the safety layer below clips it) and,
on the last step of an episode, `hil` with the episode's counts. Wrap the *safe* env, so the
human's commands pass the safety layer exactly like the policy's:

    env = InterventionWrapper(safe(make_env("sim:Lift")), device)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from robotrl.teleop.base import Event, Teleop


class InterventionWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, device: Teleop):
        super().__init__(env)
        self.device = device
        self._obs = None
        self._reset_counts()

    def _reset_counts(self) -> None:
        self.steps = self.intervention_steps = self.takeovers = 0
        self._was_intervening = False
        self.events: list[Event] = []

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.device.reset()
        self._reset_counts()
        self._obs = obs
        return obs, info

    def step(self, action):
        command = self.device.read(self._obs)
        self.events.extend(command.events)
        human = bool(command.intervening and command.action is not None)
        if human:
            action = command.action
        action = np.asarray(action, np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._obs = obs
        self.steps += 1
        self.intervention_steps += human
        self.takeovers += human and not self._was_intervening  # count each takeover once
        self._was_intervening = human
        info = {**info, "intervention": human, "action": action}
        if terminated or truncated or Event.QUIT in command.events:
            info["hil"] = self.episode_stats()
        return obs, reward, terminated, truncated, info

    def episode_stats(self) -> dict:
        return {
            "steps": self.steps,
            "intervention_steps": self.intervention_steps,
            "interventions": self.takeovers,
            "intervention_rate": self.intervention_steps / max(self.steps, 1),
        }
