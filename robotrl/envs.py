"""Build an env from a one-word spec: `sim:TASK` (the default when there is no prefix) or
`ros:CONFIG` (a ROS 2 arm: a shipped config name or a YAML path)."""

from __future__ import annotations

from robotrl.errors import RobotrlError

KINDS = ("sim", "ros")


def parse_env_spec(spec: str) -> tuple[str, str]:
    """`"PushT"` -> ("sim", "PushT"); `"ros:ur5e"` -> ("ros", "ur5e")."""
    kind, sep, name = spec.partition(":")
    if not sep:
        kind, name = "sim", spec
    if kind not in KINDS:
        raise RobotrlError(f"unknown env kind '{kind}' in '{spec}': use sim:TASK or ros:CONFIG")
    if not name:
        raise RobotrlError(f"env spec '{spec}' names no {'task' if kind == 'sim' else 'config'}")
    return kind, name


def make_env(spec: str, **kwargs):
    """The bare env for `spec` (wrap it in `robotrl.control.safe` before sending commands)."""
    kind, name = parse_env_spec(spec)
    if kind == "sim":
        from robotrl.tasks import make

        return make(name, **kwargs)
    try:
        from robotrl.drivers.ros_env import make_ros_env
    except ImportError as e:
        raise RobotrlError(
            f"ros:{name} needs ROS 2 ({e.name or e}): pip install robotrl[ros]"
        ) from None
    return make_ros_env(name, **kwargs)
