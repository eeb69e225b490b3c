"""The actor/learner wire: schemas, tokens beyond loopback, malformed input (real sockets)."""

import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

zmq = pytest.importorskip("zmq")

from robotrl.errors import RobotrlError  # noqa: E402
from robotrl.rl.transport import (  # noqa: E402
    ActorClient,
    LearnerServer,
    MessageError,
    decode,
    encode,
    is_loopback,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_round_trip_keeps_arrays_and_header():
    arrays = {
        "obs.state": np.arange(6, dtype=np.float32).reshape(2, 3),
        "done": np.array([1, 0], bool),
    }
    header, out = decode(encode("transitions", {"seq": 3}, arrays, token="t"))
    assert header["kind"] == "transitions" and header["seq"] == 3 and header["token"] == "t"
    for k, v in arrays.items():
        np.testing.assert_array_equal(out[k], v)
        assert out[k].dtype == v.dtype


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"\x80\x04pickle"],
        [b"[1, 2]"],
        [
            b'{"v": 1, "kind": "transitions", "arrays": [{"name": "x", "dtype": "float32", "shape": [4]}]}'
        ],
        [
            b'{"v": 1, "kind": "t", "arrays": [{"name": "x", "dtype": "float32", "shape": [4]}]}',
            b"abc",
        ],
        [
            b'{"v": 1, "kind": "t", "arrays": [{"name": "x", "dtype": "object", "shape": [1]}]}',
            b"a" * 8,
        ],
        [
            b'{"v": 1, "kind": "t", "arrays": [{"name": "x", "dtype": "uint8", "shape": [-1]}]}',
            b"a",
        ],
        [
            b'{"v": 1, "kind": "t", "arrays": [{"name": "../x", "dtype": "uint8", "shape": [1]}]}',
            b"a",
        ],
        [
            b'{"v": 1, "kind": "t", "arrays": [{"name": "x", "dtype": "uint8", "shape": [99999999, 99999]}]}',
            b"a",
        ],
    ],
)
def test_malformed_messages_are_refused(frames):
    with pytest.raises(MessageError):
        decode(frames)


def test_loopback_detection():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://[::1]:1")
    assert is_loopback("tcp://localhost:1") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555")
    assert not is_loopback("tcp://192.168.1.2:5555")


def serve_in_thread(server, stop):
    def loop():
        while not stop.is_set():
            server.poll(20)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_beyond_loopback_needs_a_token_and_refuses_peers_without_it():
    port = free_port()
    with pytest.raises(RobotrlError, match="token"):
        LearnerServer(f"tcp://0.0.0.0:{port}", None, lambda h, a: ("ok", {}, {}))
    seen = []
    server = LearnerServer(
        f"tcp://0.0.0.0:{port}", "s3cret", lambda h, a: (seen.append(h["kind"]), ("ok", {}, {}))[1]
    )
    stop = threading.Event()
    serve_in_thread(server, stop)
    try:
        for token in (None, "wrong"):
            client = ActorClient(f"tcp://127.0.0.1:{port}", token, timeout=5)
            with pytest.raises(RobotrlError, match="token"):
                client.request("status")
            client.close()
        assert seen == []  # the handler never saw an unauthenticated message
        client = ActorClient(f"tcp://127.0.0.1:{port}", "s3cret", timeout=5)
        assert client.request("status")[0]["kind"] == "ok"
        client.close()
        assert seen == ["status"]
        assert sum(server.rejected.values()) == 2
    finally:
        stop.set()
        time.sleep(0.05)
        server.close()


def test_malformed_messages_do_not_crash_the_learner_process(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    learner = subprocess.Popen(
        [sys.executable, "-m", "robotrl.cli.main", "hil", "learner", "--bind", address,
         "--out", str(tmp_path / "run"), "--hidden", "32", "--batch-size", "8", "--minutes", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(address)
        garbage = [
            [b"not json at all"],
            [b"\x80\x04\x95pickle"],
            [b'{"v": 1, "kind": "hello"}', b"extra frame"],
            [b'{"v": 1, "kind": "transitions", "actor": "a", "seq": 0}'],  # before hello
            [b'{"v": 1, "kind": "launch_missiles"}'],
        ]
        for frames in garbage:
            raw.send_multipart(frames)
            assert raw.poll(15000), "the learner stopped answering"
            header, _ = decode(raw.recv_multipart())
            assert header["kind"] == "error"
        client = ActorClient(address, timeout=15)
        spec = {"obs_shapes": {"state": [3]}, "action_low": [-1, -1], "action_high": [1, 1]}
        assert client.request("hello", {"actor": "t", "spec": spec})[0]["kind"] == "welcome"
        rows = {
            "obs.state": np.zeros((4, 3), np.float32), "next_obs.state": np.zeros((4, 3), np.float32),
            "action": np.zeros((4, 2), np.float32), "reward": np.zeros(4, np.float32),
            "terminated": np.zeros(4, bool), "intervention": np.zeros(4, bool),
        }  # fmt: skip
        bad = [
            {**rows, "action": np.zeros((4, 5), np.float32)},  # wrong shape
            {**rows, "reward": np.full(4, np.nan, np.float32)},  # NaN
            {k: v for k, v in rows.items() if k != "reward"},  # missing field
            {**rows, "reward": np.zeros(4, np.float64)},  # wrong dtype
        ]
        for arrays in bad:
            with pytest.raises(RobotrlError, match="refused"):
                client.request("transitions", {"actor": "t", "seq": 0}, arrays)
        assert client.request("transitions", {"actor": "t", "seq": 0}, rows)[0]["kind"] == "ack"
        status = client.request("status")[0]
        assert status["counters"]["env_steps"] == 4
        assert learner.poll() is None  # still running
        client.close()
        raw.close()
    finally:
        learner.terminate()
        out = learner.communicate(timeout=30)[0]
    assert "Traceback" not in out, out
