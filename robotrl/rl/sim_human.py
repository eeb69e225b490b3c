"""A simulated human for testing human-in-the-loop RL without a person: a `Teleop` device
built from the task's scripted expert, with reaction delay and noise, that takes over when
the policy goes off course.

"Off course" is judged the way a person watching the robot would, with privileged sim state:
- heading nowhere: for `patience` steps the task's progress has not improved and the gripper
  has not closed `min_progress` of its distance to the expert's target (the expert plans
  every step from the real state; far from the object the dense reward is flat, so distance
  tells a dawdling robot from one on its way);
- stuck: the task's progress (its dense reward) has not set a new best for `stall` steps
  (catches what distance misses, e.g. a gripper that never closes);
- regressing: progress stayed `drop` below its best for `drop_steps` steps (the object was
  dropped).
The human reacts `delay` steps later and drives the expert (Gaussian noise on the arm) for at
least `takeover` steps and until progress beats its old best, then hands back. Each takeover
restarts the expert's plan from the current state, as a person re-plans from where the
robot is.
"""

from __future__ import annotations

import numpy as np

from robotrl.teleop.base import Teleop, TeleopCommand


class SimHuman(Teleop):
    name = "sim-human"
    required_action_mode = None  # the expert adapts to the env's action mode

    def __init__(
        self,
        env,
        delay: int = 3,
        noise: float = 0.1,
        patience: int = 20,
        min_progress: float = 0.2,
        stall: int = 40,
        drop: float = 0.3,
        drop_steps: int = 3,
        takeover: int = 20,
        margin: float = 0.02,
        seed: int = 0,
    ):
        super().__init__(env.unwrapped.robot)
        from robotrl.tasks import make_expert  # MuJoCo: imported on use

        self.task = env.unwrapped
        self.expert = make_expert(env)
        self.delay, self.noise, self.patience = delay, noise, patience
        self.min_progress, self.stall, self.drop_steps = min_progress, stall, drop_steps
        self.drop, self.takeover, self.margin = drop, takeover, margin
        self.rng = np.random.default_rng(seed)
        spec = self.robot.action
        self._low, self._high = np.array(spec.low), np.array(spec.high)
        self._arm = spec.dim - int(self.has_gripper)
        self.reset()

    def reset(self) -> None:
        self.expert.reset()
        self._home_rot = None
        self.best = -np.inf  # best progress since the human last judged afresh
        self.stalled = 0  # steps without a new best
        self.dropped = 0  # consecutive steps below the best by more than `drop`
        self.countdown = -1  # steps until a decided takeover starts; -1: none pending
        self.driving = False
        self.driven = 0  # steps into the current takeover
        self.goal = np.inf  # progress that lets the human hand back
        self.distances: list[float] = []  # to the expert's target, since the target last moved
        self._target = None

    def progress(self) -> float:
        return float(self.task.task_evaluate()[0])

    def read(self, obs: dict | None = None) -> TeleopCommand:
        if self._home_rot is None:  # the expert's reference orientation: the home pose
            self.expert.select_action(obs)
            self._home_rot = self.expert.home_rot
        progress = self.progress()
        if self.driving:
            self.driven += 1
            fixed = self.driven >= self.takeover and progress >= self.goal
            if not fixed and self.driven < 3 * self.takeover:  # never hold on forever
                return self._expert_action(obs)
            self.driving, self.best, self.stalled = False, progress, 0  # hand back
            return TeleopCommand(None)
        if progress > self.best + self.margin:
            self.best, self.stalled = progress, 0
        else:
            self.stalled += 1
        # A regression must last a few steps: contact-based rewards flicker for a tick.
        self.dropped = self.dropped + 1 if progress < self.best - self.drop else 0
        off_course = (
            (self._heading_nowhere() and self.stalled >= self.patience)
            or self.stalled >= self.stall
            or self.dropped >= self.drop_steps
        )
        if off_course and self.countdown < 0:
            self.countdown = self.delay  # the human notices, and reacts a little later
        if self.countdown < 0:
            return TeleopCommand(None)
        if self.countdown > 0:
            self.countdown -= 1
            return TeleopCommand(None)
        self.countdown, self.driving, self.driven = -1, True, 0
        self.goal = max(self.best, progress) + self.margin
        self.expert.reset()  # re-plan from here, keeping the home orientation
        self.expert.home_rot = self._home_rot
        return self._expert_action(obs)

    def _heading_nowhere(self) -> bool:
        """Whether the gripper has failed to close in on the expert's target lately."""
        # Planning every step keeps the expert's phase current with the real state.
        target = np.asarray(self.expert.plan()[0], np.float64)
        ee = self.task.ee_pose()[0]
        if self._target is None or np.linalg.norm(target - self._target) > 0.01:
            self.distances = []  # a new target (next phase, or the object moved): start over
        self._target = target
        self.distances.append(float(np.linalg.norm(target - ee)))
        if len(self.distances) <= self.patience:
            return False
        start, now = self.distances[-self.patience - 1], self.distances[-1]
        return now > 0.02 and start - now < self.min_progress * start

    def _expert_action(self, obs) -> TeleopCommand:
        action = np.array(self.expert.select_action(obs), np.float64)
        scale = (self._high[: self._arm] - self._low[: self._arm]) / 2
        action[: self._arm] += self.rng.normal(0.0, self.noise, self._arm) * scale
        action = np.clip(action, self._low, self._high).astype(np.float32)
        return TeleopCommand(action, intervening=True)
