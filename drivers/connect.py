"""Connecting `RosEnv` to a driver: wait for a first sample of every stream and a subscriber on
every command topic, and when something does not come, say what is missing and what is there
instead, in one line.

A joint-state topic that carries messages without our joints is answered as soon as that is
clear (a short grace for a second publisher on the same topic), not after the whole timeout:
a driver that publishes at 500 Hz is running; it is the config or the driver's joint names
that disagree.
"""

from __future__ import annotations

import time

from robotrl.errors import RobotrlError

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMMAND_TYPES = ("std_msgs/msg/Float64MultiArray", "trajectory_msgs/msg/JointTrajectory")
GRACE = 2.0  # s a topic may carry only other joints before that is the answer


def streams(cfg, cameras) -> list[str]:
    """The streams a `RosEnv` for `cfg` reads, by their `info["obs_age"]` names."""
    names = ["joint_states"]
    if cfg.gripper and cfg.gripper.own_driver:
        names.append("gripper_state")
    names += [f"images.{c.name}" for c in cameras]
    if cfg.sim:
        names.append("environment_state")
    return names


def wait_connected(io, cfg, cameras, timeout: float) -> None:
    """Return once every stream has a first sample and every command topic a subscriber, or
    raise `RobotrlError` naming what is missing (and what was seen instead)."""
    start = time.monotonic()
    deadline = start + timeout
    wanted = streams(cfg, cameras)
    partial_since: float | None = None
    while True:
        missing = [s for s in wanted if not io.have(s)]
        unmatched = io.link.unmatched()
        if not missing and not unmatched:
            return
        wrong = _wrong_joints(io, missing)
        if wrong:
            partial_since = partial_since or time.monotonic()
            if time.monotonic() - partial_since > min(GRACE, timeout):
                raise RobotrlError(wrong)
        if time.monotonic() > deadline:
            raise RobotrlError(_explain(io, cfg, cameras, missing, unmatched, timeout))
        time.sleep(0.01)


def _wrong_joints(io, missing: list[str]) -> str:
    """Why a joint-state topic that carries messages gives us no sample ('' if none does)."""
    problems = []
    for topic, entries in io.joint_topics.items():
        seen = io.seen.get(topic)
        if not seen:
            continue
        names, count = seen
        for wanted, kind in entries:
            stream = "joint_states" if kind == "arm" else "gripper_state"
            if stream not in missing:
                continue
            lacking = [j for j in wanted if j not in names]
            if lacking:
                problems.append(
                    f"joint states on {topic} lack {_names(lacking)} ({count} messages "
                    f"naming {_names(sorted(names), 8)})"
                )
            else:
                problems.append(f"joint states on {topic} have fewer positions than names")
    return "; ".join(problems)


def _explain(io, cfg, cameras, missing, unmatched, timeout: float) -> str:
    parts = []
    for stream in missing:
        if stream in ("joint_states", "gripper_state"):
            topic = cfg.state_topic if stream == "joint_states" else cfg.gripper.state_topic
            parts.append(f"no joint states on {topic}{_elsewhere(io, JOINT_STATE, topic)}")
        elif stream.startswith("images."):
            cam = next(c for c in cameras if c.name == stream[7:])
            topic = cam.image_topic
            parts.append(f"no images on {topic}{_elsewhere(io, IMAGE, topic)}")
        else:
            topic = cfg.sim.task_state_topic
            parts.append(f"no task state on {topic}: is the sim node running?")
    if unmatched:
        subscribed = [t for t in io.subscribed(COMMAND_TYPES) if t not in unmatched]
        also = f"; command topics taken: {_names(subscribed)}" if subscribed else ""
        parts.append(
            f"nobody subscribes to {_names(list(unmatched))} (is the controller loaded and "
            f"active?){also}"
        )
    nothing = not io.graph(JOINT_STATE) and "joint_states" in missing
    hint = (
        ": is the robot driver (or sim node) running, with this ROS_DOMAIN_ID?" if nothing else ""
    )
    return f"within {timeout:g} s: {'; '.join(parts)}{hint}"


def _elsewhere(io, msg_type: str, topic: str) -> str:
    others = [t for t in io.graph(msg_type) if t != topic]
    return f" (published: {_names(others)})" if others else ""


def _names(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
