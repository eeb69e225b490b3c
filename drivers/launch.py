"""`robotrl launch FILE [name:=value ...]`: run a ROS 2 launch file in the YAML format, without
the ROS launch system (which is not on PyPI).

The subset understood, which is also valid for `ros2 launch`:

    launch:
    - arg: {name: task, default: Lift, description: ...}
    - node:
        pkg: robotrl            # robotrl's executables: sim_robot, realsense, teleop
        exec: sim_robot
        name: sim_robot
        namespace: ...          # optional
        param: [{name: task, value: $(var task)}]
        remap: [{from: /joint_states, to: /arm/joint_states}]
        ros_args: ...           # optional, appended after --ros-args
        on_exit: shutdown       # optional: when it ends, everything ends
    - executable: {cmd: "robotrl collect ...", on_exit: shutdown}

Substitutions: `$(var NAME)`, `$(env NAME)`, `$(env NAME DEFAULT)`. Each process runs in its own
process group; SIGINT/SIGTERM to the runner are forwarded to all of them; the runner returns
when all have ended (or one marked `on_exit: shutdown` has), stopping whatever is left.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from robotrl.drivers import process
from robotrl.errors import RobotrlError

_SUBST = re.compile(r"\$\((var|env)\s+([A-Za-z_][\w]*)(?:\s+([^)]*))?\)")


@dataclass
class Process:
    name: str
    cmd: list[str]
    shutdown_on_exit: bool = False
    env: dict = field(default_factory=dict)


def parse_launch(path: str | Path, overrides: dict[str, str] | None = None) -> list[Process]:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RobotrlError(f"no launch file at {path}") from None
    except IsADirectoryError:
        raise RobotrlError(f"{path} is a directory, not a launch file") from None
    except UnicodeDecodeError:
        raise RobotrlError(f"{path} is not a text (YAML) file") from None
    except yaml.YAMLError as e:
        raise RobotrlError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("launch"), list):
        raise RobotrlError(f"{path}: a YAML launch file is a mapping with a 'launch' list")
    overrides = dict(overrides or {})
    variables: dict[str, str] = {}
    procs: list[Process] = []
    for i, entry in enumerate(doc["launch"]):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise RobotrlError(f"{path}: launch entry {i} must be one of arg, node, executable")
        kind, body = next(iter(entry.items()))
        where = f"{path}: {kind} {i}"
        if not isinstance(body, dict):
            raise RobotrlError(f"{where}: expected a mapping")
        if kind == "arg":
            name = body.get("name")
            if not name:
                raise RobotrlError(f"{where}: an arg needs a name")
            if name in overrides:
                variables[name] = overrides.pop(name)
            elif "default" in body:
                variables[name] = _subst(str(body["default"]), variables, where)
            else:
                raise RobotrlError(f"{path}: argument '{name}' is required: add {name}:=VALUE")
        elif kind == "node":
            procs.append(_node(body, variables, where))
        elif kind == "executable":
            cmd = body.get("cmd")
            if not cmd:
                raise RobotrlError(f"{where}: an executable needs a cmd")
            argv = _command(shlex.split(_subst(str(cmd), variables, where)))
            name = body.get("name") or Path(argv[0]).name
            procs.append(Process(name, argv, body.get("on_exit") == "shutdown"))
        else:
            raise RobotrlError(f"{where}: '{kind}' is not supported (arg, node, executable)")
    if overrides:
        raise RobotrlError(f"{path}: no argument named {', '.join(sorted(overrides))}")
    return procs


def _node(body: dict, variables: dict, where: str) -> Process:
    pkg, exe = body.get("pkg"), body.get("exec")
    if pkg != "robotrl":
        raise RobotrlError(f"{where}: only pkg robotrl nodes can run without ROS, got '{pkg}'")
    if exe not in process.EXECUTABLES:
        raise RobotrlError(
            f"{where}: robotrl has no executable '{exe}': choose {', '.join(process.EXECUTABLES)}"
        )
    params = {
        str(p["name"]): _subst(str(p["value"]), variables, where) for p in body.get("param") or []
    }
    remaps = [
        (_subst(r["from"], variables, where), _subst(r["to"], variables, where))
        for r in body.get("remap") or []
    ]
    name = body.get("name")
    cmd = process.node_command(exe, params, name, remaps)
    if body.get("namespace"):
        ns = _subst(str(body["namespace"]), variables, where)
        cmd += ([] if "--ros-args" in cmd else ["--ros-args"]) + ["-r", f"__ns:={ns}"]
    if body.get("ros_args"):
        extra = shlex.split(_subst(str(body["ros_args"]), variables, where))
        cmd += ([] if "--ros-args" in cmd else ["--ros-args"]) + extra
    return Process(name or exe, cmd, body.get("on_exit") == "shutdown")


def _subst(text: str, variables: dict, where: str) -> str:
    def one(m: re.Match) -> str:
        kind, name, default = m.groups()
        if kind == "var":
            if name not in variables:
                raise RobotrlError(f"{where}: $(var {name}) is not a declared argument")
            return variables[name]
        value = os.environ.get(name, default)
        if value is None:
            raise RobotrlError(f"{where}: environment variable {name} is not set")
        return value

    return _SUBST.sub(one, text)


def _command(argv: list[str]) -> list[str]:
    """`robotrl ...` and `python ...` run with this interpreter (no PATH lookup needed)."""
    if argv and argv[0] == "robotrl":
        return [sys.executable, "-m", "robotrl.cli.main", *argv[1:]]
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def run_launch(procs: list[Process], poll: float = 0.05) -> int:
    """Start every process, forward SIGINT/SIGTERM, stop them all when done. Returns the
    first non-zero exit status (0 when all ended cleanly or were stopped on request)."""
    running: list[tuple[Process, subprocess.Popen]] = []
    stop_requested = []

    def on_signal(signum, frame):
        stop_requested.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for proc in procs:
            popen = process.start(proc.cmd, proc.env)
            print(
                f"[launch] {proc.name} pid {popen.pid}: {shlex.join(proc.cmd)}",
                file=sys.stderr,
                flush=True,
            )
            running.append((proc, popen))
        while running and not stop_requested:
            for proc, popen in list(running):
                code = popen.poll()
                if code is None:
                    continue
                running.remove((proc, popen))
                print(f"[launch] {proc.name} exited with {code}", file=sys.stderr, flush=True)
                status = status or code
                if proc.shutdown_on_exit:
                    stop_requested.append("on_exit")
            time.sleep(poll)
    finally:
        for proc, popen in running:
            code = process.stop(popen)
            print(f"[launch] {proc.name} stopped ({code})", file=sys.stderr, flush=True)
        for s, handler in old.items():
            signal.signal(s, handler)
    return status
