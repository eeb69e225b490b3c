"""Keyboard teleop: the byte parser directly, then the real terminal path on a pty."""

import fcntl
import os
import pty
import struct
import termios
import time

import numpy as np
import pytest

from robotrl.env import ActionSpec, RobotSpec
from robotrl.teleop import DeviceIOError, Event, TeleopError
from robotrl.teleop.keyboard import HELP, KeyboardTeleop, parse_keys

LOW = (-0.02, -0.03, -0.04, -0.1, -0.1, -0.2, 0.0)
HIGH = (0.02, 0.03, 0.04, 0.1, 0.1, 0.4, 1.0)


def robot_spec(mode="ee_delta", gripper=True) -> RobotSpec:
    names = ("ee.dx", "ee.dy", "ee.dz", "ee.drx", "ee.dry", "ee.drz") + (("gripper",) * gripper)
    n = len(names)
    action = ActionSpec(mode, names, ("m",) * n, LOW[:n], HIGH[:n])
    return RobotSpec("panda", 20.0, action, ("j1",), ("s",))


@pytest.mark.parametrize(
    "data, keys, rest",
    [
        (b"wWs", ["w", "w", "s"], b""),
        (
            b" \r\n\x7f\x08\t\x03",
            ["space", "enter", "enter", "backspace", "backspace", "tab", "ctrl-c"],
            b"",
        ),
        (b"\x1b[A\x1b[B\x1b[C\x1b[D", ["up", "down", "right", "left"], b""),
        (b"\x1bOA\x1bOD", ["up", "left"], b""),  # arrows in application cursor mode
        (b"\x1b[15~w", ["w"], b""),  # F5 is skipped whole
        (b"\x1b[1;5Cq", ["q"], b""),  # Ctrl-Right (has parameters): skipped
        (b"w\x1b", ["w", "esc"], b""),  # a lone ESC at the end is the Esc key
        (b"\x1bq", ["esc", "q"], b""),
        (b"w\x1b[", ["w"], b"\x1b["),  # an unfinished sequence waits for more bytes
        (b"\x1b[1;", [], b"\x1b[1;"),
        (b"\x1bO", [], b"\x1bO"),
        ("é".encode() + b"\x00d", ["d"], b""),  # non-ASCII and NUL mean nothing
    ],
)
def test_parse_keys(data, keys, rest):
    assert parse_keys(data) == (keys, rest)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def type_keys(master: int, slave: int, data: bytes) -> None:
    """Write to the pty master and wait until the slave can read it all: the kernel hands
    pty input to the line discipline asynchronously."""
    os.write(master, data)
    deadline = time.monotonic() + 2
    while pending(slave) < len(data) and time.monotonic() < deadline:
        time.sleep(0.001)


def pending(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.fixture
def terminal():
    master, slave = pty.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_real_terminal_path(terminal):
    master, slave = terminal
    before = termios.tcgetattr(slave)
    clock = Clock()
    with KeyboardTeleop(robot_spec(), tty=os.ttyname(slave), clock=clock) as kb:
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)

        command = kb.read()  # nothing typed: hold still, gripper open
        np.testing.assert_array_equal(command.action, np.zeros(7, np.float32))
        assert command.events == () and not command.intervening

        type_keys(master, slave, b"wa\x1b[A")  # forward, left, and the Up arrow (forward again)
        command = kb.read()
        assert command.action.dtype == np.float32
        np.testing.assert_allclose(command.action, [0.01, 0.015, 0, 0, 0, 0, 0], rtol=1e-6)
        assert command.intervening  # a key is moving the arm

        clock.t += 0.1  # still inside the 0.15 s window of those presses
        np.testing.assert_allclose(kb.read().action[:2], [0.01, 0.015], rtol=1e-6)
        clock.t += 0.1  # window over: stop
        assert not kb.read().action.any()

        type_keys(master, slave, b"fe ")  # down, yaw clockwise (uses low), close gripper
        np.testing.assert_allclose(kb.read().action, [0, 0, -0.02, 0, 0, -0.1, 1.0], rtol=1e-6)

        type_keys(master, slave, b"ws")  # opposite keys cancel
        assert kb.read().action[0] == 0.0

        clock.t += 1.0  # all motion windows over
        type_keys(master, slave, b"g\rxn\x7fp")
        command = kb.read()
        assert command.events == (
            Event.START,
            Event.SUCCESS,
            Event.RERECORD,
            Event.FAILURE,
            Event.RERECORD,
            Event.INTERVENE,
        )
        assert command.intervening and kb.read().intervening  # the toggle stays on
        type_keys(master, slave, b"\t")
        command = kb.read()
        assert command.events == (Event.INTERVENE,) and not command.intervening

        type_keys(master, slave, b"\x1b[")  # an arrow split across two reads
        assert not kb.read().action[:6].any()
        type_keys(master, slave, b"B")
        assert kb.read().action[0] == pytest.approx(-0.01)

        type_keys(master, slave, b"\x03")  # Ctrl-C arrives as a byte, not SIGINT
        assert kb.read().events == (Event.QUIT,)

        assert kb.read().action[6] == 1.0  # gripper still closed from the space above
        kb.reset()  # a new episode: gripper open again
        assert kb.read().action[6] == 0.0
    assert termios.tcgetattr(slave) == before


def test_terminal_restored_when_the_loop_raises(terminal):
    master, slave = terminal
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError), KeyboardTeleop(robot_spec(), tty=slave):
        assert termios.tcgetattr(slave) != before
        raise RuntimeError("policy crashed")
    assert termios.tcgetattr(slave) == before


def test_no_gripper_and_wrong_mode(terminal):
    _, slave = terminal
    with KeyboardTeleop(robot_spec(gripper=False), tty=slave) as kb:
        assert kb.read().action.shape == (6,)
    with pytest.raises(
        TeleopError, match="produces ee_delta actions but this robot takes joint_pos"
    ):
        KeyboardTeleop(robot_spec("joint_pos"), tty=slave)


def test_not_a_terminal(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with open(path) as f, pytest.raises(DeviceIOError, match="needs a terminal"):
        KeyboardTeleop(robot_spec(), tty=f.fileno())
    assert "Enter: success" in HELP
