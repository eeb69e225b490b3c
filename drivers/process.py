"""Starting and stopping node processes: the launch runner, `robotrl bench ros` and the tests.

Each node runs in its own session (process group) so a stop reaches everything it started;
stopping asks politely first (SIGINT, then SIGTERM) and kills after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from robotrl.drivers.ros import child_env

# Executables of the `robotrl` package, as `node pkg="robotrl" exec="..."` names them.
EXECUTABLES = {
    "sim_robot": "robotrl.drivers.sim_node",
    "realsense": "robotrl.drivers.realsense_node",
    "teleop": "robotrl.drivers.teleop_node",
}


def ros_args(params: dict | None = None, name: str | None = None, remaps=()) -> list[str]:
    """`--ros-args -r __node:=name -r from:=to -p key:=value ...` (empty when nothing is set)."""
    args = []
    if name:
        args += ["-r", f"__node:={name}"]
    for src, dst in remaps:
        args += ["-r", f"{src}:={dst}"]
    for key, value in (params or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        text = text or "''"  # ROS parses the value as YAML: '' is the empty string
        args += ["-p", f"{key}:={text}"]
    return ["--ros-args", *args] if args else []


def node_command(executable: str, params=None, name=None, remaps=()) -> list[str]:
    if executable not in EXECUTABLES:
        known = ", ".join(EXECUTABLES)
        raise KeyError(f"robotrl has no executable '{executable}': choose {known}")
    return [sys.executable, "-m", EXECUTABLES[executable], *ros_args(params, name, remaps)]


def start(cmd: list[str], env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=child_env(env), start_new_session=True, **popen)


def stop(proc: subprocess.Popen, grace: float = 3.0) -> int | None:
    """Stop `proc` and its process group: SIGINT, then SIGTERM, then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in its group goes too
    return proc.poll()
