"""The teleop node publishes a device over ROS 2 and `RosTeleop` reads it: a keyboard on a
pseudo-terminal presses `w` (+x) and Enter (SUCCESS)."""

from __future__ import annotations

import os
import pty
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from robotrl.drivers import process  # noqa: E402

# This process's own ROS domain. conftest's `setdefault` is inherited by pytest-xdist workers
# from the controller (one domain for all of them), so each worker picks its own here.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)


def test_keyboard_through_the_teleop_node():
    from robotrl.drivers.teleop_node import RosTeleop, robot_spec
    from robotrl.teleop.base import Event

    master, slave = pty.openpty()
    tty = os.ttyname(slave)
    params = {"device": "keyboard", "config": "sim_panda", "device_path": tty, "rate": 50.0}
    node = process.start(process.node_command("teleop", params))
    reader = RosTeleop(robot_spec("sim_panda", "ee_delta", 50.0))
    try:
        actions, events, intervening = [], set(), False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (actions and Event.SUCCESS in events):
            os.write(master, b"w")
            command = reader.read()
            if command.action is not None:
                actions.append(command.action)
            events |= set(command.events)
            intervening |= command.intervening
            if actions:
                os.write(master, b"\r")
            time.sleep(0.05)
        assert node.poll() is None, "the teleop node died"
        assert actions, "no action arrived from the teleop node"
        assert Event.SUCCESS in events
        forward = [a for a in actions if a[0] > 0]
        assert forward and np.allclose(forward[0][1:6], 0)  # +x only, nothing else
    finally:
        reader.close()
        process.stop(node)
        os.close(master)
        os.close(slave)
