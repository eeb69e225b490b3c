"""`robotrl collect`: record demonstrations from a teleop device (or the scripted expert).

Sim runs real-time paced for a human and as fast as it can for the expert. A live status line
shows the episode count, the step, the achieved control rate and successes. Device events: SUCCESS saves
the episode as a success, FAILURE ends it (saved only with --keep-failures), RERECORD throws
it away and records the same seed again, QUIT stops (the current episode is discarded).
An episode the task itself ends (success, or the step limit) is saved or discarded the same way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from robotrl.env import OBS_MODE_HELP
from robotrl.errors import RobotrlError
from robotrl.teleop import DEVICE_PATH_OPTION


@dataclass
class CollectConfig:
    task: str = field(default="PushT", metadata={"help": "task name"})
    teleop: str = field(
        default="keyboard", metadata={"help": "keyboard, spacemouse, gamepad, leader or expert"}
    )
    episodes: int = field(default=10, metadata={"help": "episodes to save"})
    out: str = field(default="data/demos", metadata={"help": "dataset directory (appends)"})
    robot: str = field(default="panda", metadata={"help": "panda, ur5e or an MJCF path"})
    obs_mode: str = field(default="state", metadata={"help": OBS_MODE_HELP})
    image_size: int = field(default=96, metadata={"help": "camera image height and width"})
    action_mode: str | None = field(
        default=None,
        metadata={"help": "ee_delta, ee_pos, joint_delta or joint_pos (expert only; default: "
                  "the device's mode, else the task's)"},
    )  # fmt: skip
    seed: int = field(default=0, metadata={"help": "seed of the first new episode"})
    device: str | None = field(default=None, metadata={"help": "device path (hidraw, event, tty)"})
    calibration: str | None = field(default=None, metadata={"help": "leader-arm calibration JSON"})
    keep_failures: bool = field(default=False, metadata={"help": "also save failed episodes"})
    action_noise: float = field(
        default=0.0,
        metadata={"help": "std of Gaussian noise added to each executed action (its units); "
                  "the dataset keeps the device's own action (DART)"},
    )  # fmt: skip
    success_coverage: float | None = field(
        default=None,
        metadata={"help": "PushT: goal coverage an episode must reach to count as done "
                  "(default: the task's 0.95); a higher line records demos that finish the "
                  "push more precisely"},
    )  # fmt: skip
    max_seconds: float | None = field(default=None, metadata={"help": "stop after this long"})
    past_success: int = field(
        default=0,
        metadata={"help": "steps recorded after the task's success, the device still acting: "
                  "the goal held on camera, positive frames for a success classifier "
                  "(0: the episode ends at success)"},
    )  # fmt: skip
    env: str | None = field(
        default=None, metadata={"help": "ros:CONFIG records through a ROS 2 arm (RosEnv)"}
    )
    ray: str | None = field(
        default=None,
        metadata={"help": "record on a Ray cluster (ADDRESS, auto, or local), one dataset "
                  "per worker merged into --out (--teleop expert; extra [dist])"},
    )  # fmt: skip


@dataclass
class CollectSummary:
    saved: int = 0
    successes: int = 0
    discarded: int = 0
    wall_time_s: float = 0.0
    achieved_fps: list[float] = field(default_factory=list)
    quit: bool = False


def collect(cfg: CollectConfig) -> CollectSummary:
    if cfg.ray:  # the CLI sends these to ray_episodes.collect_on_ray
        raise RobotrlError("collect(cfg) records here: call ray_episodes.collect_on_ray(cfg)")
    session = CollectSession(cfg)
    for message in session.recorder.writer.messages:
        print(f"robotrl: {message}", file=sys.stderr)
    status = StatusLine(cfg, session.recorder.writer.num_episodes)
    summary, start = CollectSummary(), time.monotonic()
    seed = cfg.seed
    try:
        while summary.saved < cfg.episodes and not summary.quit:
            if cfg.max_seconds and time.monotonic() - start > cfg.max_seconds:
                break
            outcome = session.record(seed, summary, status)
            if outcome != "rerecord":
                seed += 1  # a re-recorded episode runs the same seed again
    finally:
        session.close()
        status.finish(summary)
    summary.wall_time_s = time.monotonic() - start
    return summary


class CollectSession:
    """The env, the device and the dataset of one `collect`, ready to record episodes (the
    Ray collection runs one per worker)."""

    def __init__(self, cfg: CollectConfig):
        from robotrl.control import safe
        from robotrl.data.recorder import Recorder
        from robotrl.tasks import make, task_name
        from robotrl.teleop import make_teleop, teleop_class

        check_collect_config(cfg)
        device_cls = _teleop_class(cfg.teleop) if cfg.teleop == "ros" else teleop_class(cfg.teleop)
        human = cfg.teleop != "expert"
        action_mode = device_cls.required_action_mode
        if cfg.action_mode and action_mode and cfg.action_mode != action_mode:
            raise RobotrlError(
                f"the {cfg.teleop} device sends {action_mode} actions, not --action-mode "
                f"{cfg.action_mode}"
            )
        action_mode = cfg.action_mode or action_mode
        task_options = {}
        if cfg.success_coverage is not None:
            if task_name(cfg.task) != "PushT" or cfg.env:
                raise RobotrlError("--success-coverage is a PushT option (sim only)")
            task_options["success_coverage"] = cfg.success_coverage
        if cfg.env:
            env = _make_env(cfg, action_mode)
        else:
            env = make(
                cfg.task,
                robot=cfg.robot,
                obs_mode=cfg.obs_mode,
                realtime=human,
                image_size=(cfg.image_size, cfg.image_size),
                action_mode=action_mode,
                **task_options,
            )
        # The device first: one that is missing or wrong must not leave a dataset behind.
        try:
            if cfg.teleop == "ros":
                teleop = device_cls(env.robot)
            else:
                teleop = make_teleop(cfg.teleop, env, **_device_options(cfg))
        except BaseException:
            env.close()
            raise
        try:
            recorder = Recorder(env, cfg.out, task=task_name(cfg.task), auto_save=False)
        except BaseException:
            teleop.close()
            env.close()
            raise
        self.cfg, self.env, self.teleop, self.recorder = cfg, env, teleop, recorder
        # Every command passes the safety layer before the recorder, so the dataset holds
        # what the robot was actually sent (with --action-noise: what the device asked for).
        self.guarded = safe(recorder)

    def record(self, seed: int, summary: CollectSummary, status) -> str:
        """One episode on `seed`, saved or discarded by its outcome (returned: success,
        failure, rerecord or quit); `summary` counts it."""
        from robotrl.teleop.base import Event

        status.resetting(summary)
        obs, _ = self.guarded.reset(seed=seed)
        self.teleop.reset()
        noise = ActionNoise(self.cfg.action_noise, seed)
        outcome, achieved = _run_episode(
            self.guarded, self.recorder, self.teleop, obs, status, summary, Event, noise,
            self.cfg.past_success,
        )  # fmt: skip
        if (
            outcome == "rerecord"
            or outcome == "quit"
            or (outcome == "failure" and not self.cfg.keep_failures)
        ):
            self.recorder.discard_episode()
            summary.discarded += outcome != "quit"
            return outcome
        self.recorder.save_episode(success=outcome == "success")
        summary.saved += 1
        summary.successes += outcome == "success"
        if achieved is not None:
            summary.achieved_fps.append(achieved)
        return outcome

    def close(self) -> None:
        try:
            self.teleop.close()
        finally:
            self.recorder.close()


def check_collect_config(cfg: CollectConfig) -> None:
    if cfg.episodes < 1:
        raise RobotrlError(f"--episodes must be at least 1, got {cfg.episodes}")
    if cfg.action_noise < 0:
        raise RobotrlError(f"--action-noise must be >= 0, got {cfg.action_noise}")
    if cfg.past_success < 0:
        raise RobotrlError(f"--past-success must be >= 0, got {cfg.past_success}")
    if cfg.max_seconds is not None and not cfg.max_seconds > 0:
        raise RobotrlError(f"--max-seconds must be positive, got {cfg.max_seconds}")


def _teleop_class(name: str):
    """`ros`: actions from the ROS teleop topics (a teleop node, or the sim node's expert)."""
    from robotrl.drivers.teleop_node import RosTeleop

    return RosTeleop


def _make_env(cfg: CollectConfig, action_mode: str | None):
    """The env named by --env (`ros:CONFIG`), for the task being recorded."""
    from robotrl.tasks import task_name

    try:
        from robotrl.envs import make_env
    except ImportError:
        make_env = None
    options = {"task": task_name(cfg.task)}
    if action_mode:
        options["action_mode"] = action_mode
    if cfg.obs_mode == "state":
        options["cameras"] = ()
    if make_env is not None:
        return make_env(cfg.env, **options)
    if not cfg.env.startswith("ros:"):
        raise RobotrlError(f"unknown --env '{cfg.env}': use ros:CONFIG (e.g. ros:sim_panda)")
    from robotrl.drivers.ros_env import make_ros_env

    return make_ros_env(cfg.env.removeprefix("ros:"), **options)


def _device_options(cfg: CollectConfig) -> dict:
    options = {}
    if cfg.device:
        if cfg.teleop not in DEVICE_PATH_OPTION:
            raise RobotrlError(f"--device does not apply to the {cfg.teleop} device")
        options[DEVICE_PATH_OPTION[cfg.teleop]] = cfg.device
    if cfg.calibration:
        if cfg.teleop != "leader":
            raise RobotrlError("--calibration applies to the leader arm only")
        options["calibration"] = cfg.calibration
    return options


class ActionNoise:
    """DART (Laskey et al. 2017): execute the demonstrator's action plus Gaussian noise and
    record the demonstrator's own action. The dataset then shows how the expert recovers
    from the small drifts a policy makes, instead of only the states of its own clean runs.
    Per-episode seeded, so a dataset is reproducible."""

    def __init__(self, std: float, seed: int):
        self.std, self.rng = std, np.random.default_rng([seed, 0xDA27])

    def __call__(self, action: np.ndarray) -> np.ndarray:
        if not self.std:
            return action
        return (action + self.rng.normal(0.0, self.std, action.shape)).astype(action.dtype)


def _run_episode(
    guarded, recorder, teleop, obs, status, summary, Event, noise: ActionNoise, past: int = 0
) -> tuple[str, float | None]:
    """Step until the task or the human ends the episode (a success: `past` steps later, or
    at the time limit); returns (outcome, achieved Hz, or None before two steps have
    measured it)."""
    t0 = time.monotonic()
    succeeded_at = None
    while True:
        command = teleop.read(obs)
        events = set(command.events)
        if Event.QUIT in events:
            summary.quit = True
            return "quit", None
        if Event.RERECORD in events:
            return "rerecord", None
        if command.action is None:  # the device has nothing to say: stay put
            action = guarded.safety.hold_command(obs).astype(np.float32)
        else:
            action = np.asarray(command.action, np.float32)
        # No policy runs here, so nothing is overridden: `intervention` is for HIL sessions.
        obs, _, terminated, truncated, info = guarded.step(noise(action))
        if noise.std:
            recorder.relabel_last_action(action)
        steps = recorder.episode_length
        achieved = (steps - 1) / max(time.monotonic() - t0, 1e-9) if steps > 1 else None
        status.update(summary, steps, achieved)
        if succeeded_at is None and (
            Event.SUCCESS in events or (terminated and info.get("is_success"))
        ):
            succeeded_at = steps
        if succeeded_at is not None:
            if steps - succeeded_at >= past or truncated:
                return "success", achieved
        elif Event.FAILURE in events or terminated or truncated:
            return "failure", achieved


class StatusLine:
    """One line on stderr, rewritten in place at most ten times a second: the episode being
    recorded, its step and the control rate achieved so far (shown once two steps have
    measured it), or that the env is resetting between episodes (a real arm may take seconds
    to get back to its start pose)."""

    def __init__(self, cfg: CollectConfig, existing: int):
        self.cfg, self.existing, self._last = cfg, existing, 0.0

    def resetting(self, summary: CollectSummary) -> None:
        self._show(summary, "waiting for the env to reset")

    def update(self, summary: CollectSummary, steps: int, achieved: float | None) -> None:
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        rate = "" if achieved is None else f"  {achieved:6.1f} Hz"
        self._show(summary, f"step {steps:4d}{rate}")

    def _show(self, summary: CollectSummary, progress: str) -> None:
        line = (
            f"[{self.cfg.task}/{self.cfg.teleop}] episode {summary.saved + 1}/{self.cfg.episodes}"
            f"  {progress}  saved {summary.saved}"
            f" ({summary.successes} success)  discarded {summary.discarded}"
            f"  dataset {self.existing + summary.saved} episodes"
        )
        print("\r" + line + "\033[K", end="", file=sys.stderr, flush=True)

    def finish(self, summary: CollectSummary) -> None:
        print(file=sys.stderr)
