"""Actor and learner as separate processes over TCP loopback: kill either side mid-run."""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("zmq")

from robotrl.rl.transport import ActorClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose output lines are collected as they come."""

    def __init__(self, *args):
        env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "robotrl.cli.main", "hil", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip())
            self.q.put(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        seen = len(self.lines)
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if m := re.search(pattern, line):
                    return m
            seen = len(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no '{pattern}' in:\n" + "\n".join(self.lines[-30:]))

    def acked(self) -> int:
        found = [int(m.group(1)) for x in self.lines if (m := re.search(r"acked (\d+) rows", x))]
        return found[-1] if found else 0

    def episodes(self) -> int:
        found = [int(m.group(1)) for x in self.lines if (m := re.search(r"episode (\d+) ", x))]
        return found[-1] if found else 0

    def kill(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def learner(address, run):
    return Proc("learner", "--bind", address, "--out", str(run), "--hidden", "32",
                "--batch-size", "16", "--checkpoint-every", "0.5", "--publish-every", "20",
                "--minutes", "2")  # fmt: skip


def actor(address, obs_mode="state"):
    return Proc("actor", "--env", "sim:Lift", "--teleop", "sim-human", "--connect", address,
                "--timeout", "0.3", "--actor-id", "a1", "--obs-mode", obs_mode)  # fmt: skip


def status(address) -> dict:
    client = ActorClient(address, timeout=20)
    reply = client.request("status")
    client.close()
    assert reply is not None, "the learner did not answer"
    return reply[0]


@pytest.mark.parametrize("obs_mode", ["state", "pixels"])
def test_killing_the_actor_loses_no_acknowledged_data(obs_mode, tmp_path):
    """`pixels`: the robot's state and two cameras, no object state; image batches cross."""
    address = f"tcp://127.0.0.1:{free_port()}"
    lrn, act = learner(address, tmp_path / "run"), actor(address, obs_mode)
    try:
        act.wait_for(r"episode 3 .*acked [1-9]", timeout=90)
        act.kill()
        sent = act.acked()
        assert sent > 0
        assert status(address)["counters"]["env_steps"] >= sent
        assert lrn.p.poll() is None
        client = ActorClient(address, timeout=20)
        header = client.request("weights")[0]
        client.close()
        shapes = header["spec"]["obs_shapes"]
        if obs_mode == "pixels":
            assert "environment_state" not in shapes
            assert {k: len(v) for k, v in shapes.items() if k.startswith("images.")} == {
                "images.front": 3,
                "images.wrist": 3,
            }
    finally:
        act.kill()
        lrn.stop()
    counters = json.loads((tmp_path / "run" / "counters.json").read_text())
    assert counters["env_steps"] >= sent  # and the checkpoint at shutdown holds it too


def test_killing_the_learner_leaves_the_actor_acting_until_it_returns(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    run = tmp_path / "run"
    lrn, act = learner(address, run), actor(address)
    try:
        act.wait_for(r"weights version", timeout=60)
        act.wait_for(r"episode 2 .*acked [1-9]", timeout=60)
        lrn.kill()
        away = act.wait_for(r"learner away", timeout=30)
        assert away
        before = act.episodes()
        act.wait_for(rf"episode {before + 1} ", timeout=60)  # still acting, on its last weights
        assert act.p.poll() is None
        acked_while_away = act.acked()
        lrn = learner(address, run)  # comes back on the same run directory: resumes
        lrn.wait_for(r"resuming", timeout=60)
        deadline = time.monotonic() + 60
        while act.acked() <= acked_while_away and time.monotonic() < deadline:
            time.sleep(0.2)
        assert act.acked() > acked_while_away  # the queued episodes were delivered
        act.wait_for(r"weights version", timeout=30)  # and the new learner's weights fetched
        assert act.p.poll() is None
    finally:
        act.kill()
        lrn.stop()
