"""The task's scripted expert as a teleop device: demonstrations and HIL tests without a human.

It produces actions in whatever action mode the env uses, and always counts as intervening.
It sends no events: the env reports success through `info` as for any episode.
"""

from __future__ import annotations

from robotrl.teleop.base import Teleop, TeleopCommand


class ExpertTeleop(Teleop):
    name = "expert"
    required_action_mode = None  # the expert adapts to the env's action mode

    def __init__(self, env):
        super().__init__(env.robot)
        # Imported here: the experts need MuJoCo, which `robotrl.teleop` must not import.
        from robotrl.tasks import make_expert

        self.expert = make_expert(env)

    def reset(self) -> None:
        self.expert.reset()

    def read(self, obs: dict | None = None) -> TeleopCommand:
        return TeleopCommand(self.expert.select_action(obs), intervening=True)
