"""Actor <-> learner messages over ZeroMQ, with explicit schemas and no pickle on the wire.

A message is a multipart ZeroMQ message: frame 0 is a UTF-8 JSON header, the following
frames are raw little-endian array buffers, described in order by the header's `arrays`
list (`name`, `dtype` from a fixed allow-list, `shape`). Nothing received is ever unpickled
or evaluated: a message either matches its schema or is answered with an `error` and
dropped, and the learner carries on.

    header = {"v": 1, "kind": ..., "token": ..., "arrays": [{"name", "dtype", "shape"}], ...}

Kinds (actor -> learner, answered by the learner):
- `hello` {actor}                       -> `welcome` {boot, version}
- `transitions` {actor, seq, episode}   -> `ack` {seq, boot, version}; arrays: one row per step
- `weights` {actor}                     -> `weights` {boot, version, spec}; arrays: the weights
- `status` {}                           -> `status` {counters}
and `error` {reason} for anything refused.

Security: the learner binds loopback by default. Bound to any other address it refuses to
start without a shared-secret token, and answers every message whose token does not match
(compared in constant time) with an error. The token authenticates; it does not encrypt:
across untrusted networks run the link through SSH or a VPN.

Delivery: the actor keeps every batch until the learner acknowledges it (the learner
acknowledges only after the rows are in its buffer) and resends after a timeout; batches
carry a per-actor sequence number so a resend is stored once.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import time

import numpy as np

from robotrl.errors import RobotrlError

PROTOCOL = 1
DTYPES = ("float32", "float64", "uint8", "bool", "int32", "int64")
NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
MAX_ARRAYS = 256
MAX_HEADER_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 256 << 20
TOKEN_ENV = "ROBOTRL_HIL_TOKEN"


class MessageError(RobotrlError):
    """A message that does not match the wire schema (answered with `error`, then dropped)."""


def _zmq():
    try:
        import zmq
    except ImportError:
        raise RobotrlError("the actor/learner transport needs pyzmq: pip install pyzmq") from None
    return zmq


# ---- encoding ------------------------------------------------------------------------------
def encode(kind: str, header: dict | None = None, arrays: dict | None = None, token: str = ""):
    """Frames of one message: the JSON header, then each array's raw bytes."""
    arrays = {k: np.ascontiguousarray(v) for k, v in (arrays or {}).items()}
    described = []
    for name, a in arrays.items():
        if a.dtype.name not in DTYPES:
            raise MessageError(f"array {name} has dtype {a.dtype}, not one of {DTYPES}")
        described.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape)})
    meta = {**(header or {}), "v": PROTOCOL, "kind": kind, "token": token, "arrays": described}
    return [json.dumps(meta).encode()] + [a.astype(a.dtype.newbyteorder("<")).tobytes() for a in arrays.values()]  # fmt: skip


def decode(frames: list[bytes]) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a message, or `MessageError` saying what is wrong with it."""
    if not frames or len(frames[0]) > MAX_HEADER_BYTES:
        raise MessageError("missing or oversized header frame")
    try:
        header = json.loads(bytes(frames[0]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MessageError("header is not UTF-8 JSON") from None
    if not isinstance(header, dict) or header.get("v") != PROTOCOL:
        raise MessageError(f"header is not a protocol-{PROTOCOL} object")
    if not isinstance(header.get("kind"), str) or not isinstance(header.get("token", ""), str):
        raise MessageError("header lacks a string kind or token")
    described = header.get("arrays", [])
    if not isinstance(described, list) or len(described) > MAX_ARRAYS:
        raise MessageError("header arrays must be a list of at most {MAX_ARRAYS}")
    if len(described) != len(frames) - 1:
        raise MessageError(
            f"header describes {len(described)} arrays, message has {len(frames) - 1}"
        )
    arrays = {}
    for spec, frame in zip(described, frames[1:]):
        if not isinstance(spec, dict):
            raise MessageError("array descriptions must be objects")
        name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        if not isinstance(name, str) or not NAME.match(name) or name in arrays:
            raise MessageError(f"bad or repeated array name {name!r}")
        if dtype not in DTYPES:
            raise MessageError(f"array {name}: dtype {dtype!r} is not one of {DTYPES}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise MessageError(f"array {name}: shape must be a list of non-negative ints")
        size = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.float64))
        if size > MAX_MESSAGE_BYTES or size != len(frame):
            raise MessageError(f"array {name}: {len(frame)} bytes do not hold {dtype}{shape}")
        arrays[name] = np.frombuffer(frame, np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return header, arrays


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ endpoint only listens on this machine (ipc/inproc, or tcp on a
    loopback address)."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(\[?[^\]]+\]?|\*):(\d+|\*)$", address)
    if not m:
        raise RobotrlError(f"bad endpoint '{address}': use tcp://HOST:PORT")
    host = m.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface or host name: beyond loopback


# ---- learner side --------------------------------------------------------------------------
class LearnerServer:
    """A ROUTER socket answering actors; `handler(header, arrays) -> (kind, header, arrays)`.

    Anything malformed, unauthenticated or refused by the handler (a `RobotrlError`) is
    answered with `error` and counted in `rejected`; the server never raises on input."""

    def __init__(self, address: str, token: str | None, handler):
        zmq = _zmq()
        if not token and not is_loopback(address):
            raise RobotrlError(
                f"refusing to bind {address} without a token: beyond loopback every actor must "
                f"present a shared secret (set {TOKEN_ENV} or pass --token)"
            )
        self.token, self.handler = token or "", handler
        self.rejected: dict[str, int] = {}
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        try:
            self.socket.bind(address)
        except zmq.ZMQError as e:
            self.socket.close()
            raise RobotrlError(f"cannot bind {address}: {e}") from None
        self.address = address

    def poll(self, timeout_ms: int = 0) -> int:
        """Answer every message waiting (waiting up to `timeout_ms` for the first)."""
        handled = 0
        while self.socket.poll(timeout_ms if handled == 0 else 0):
            frames = self.socket.recv_multipart(copy=True)
            identity, body = frames[0], frames[1:]
            self.socket.send_multipart([identity, *self._answer(body)])
            handled += 1
        return handled

    def _answer(self, body: list[bytes]) -> list[bytes]:
        try:
            header, arrays = decode(body)
            if not hmac.compare_digest(header.get("token", "").encode(), self.token.encode()):
                raise MessageError("bad or missing token")
            kind, reply, out = self.handler(header, arrays)
            return encode(kind, reply, out)
        except RobotrlError as e:
            reason = str(e)
        except Exception as e:  # a bug or an unforeseen input must not take the learner down
            reason = f"internal error: {type(e).__name__}: {e}"
        key = reason.split(":")[0][:60]
        self.rejected[key] = self.rejected.get(key, 0) + 1
        return encode("error", {"reason": reason[:500]})

    def close(self) -> None:
        self.socket.close(0)


# ---- actor side ----------------------------------------------------------------------------
class ActorClient:
    """A DEALER socket with a request timeout; after a timeout the socket is replaced (the
    reply to an abandoned request must not be taken for the next one's)."""

    def __init__(self, address: str, token: str | None = None, timeout: float = 1.0):
        self.address, self.token, self.timeout = address, token or "", timeout
        self.zmq = _zmq()
        self.context = self.zmq.Context.instance()
        self.socket = None
        self._connect()

    def _connect(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
        self.socket = self.context.socket(self.zmq.DEALER)
        self.socket.setsockopt(self.zmq.LINGER, 0)
        self.socket.connect(self.address)

    def request(self, kind: str, header=None, arrays=None, timeout: float | None = None):
        """(header, arrays) of the reply, or None if the learner did not answer in time.
        An `error` reply raises `RobotrlError` with the learner's reason."""
        self.socket.send_multipart(encode(kind, header, arrays, self.token), copy=False)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (left := deadline - time.monotonic()) > 0:
            if self.socket.poll(int(left * 1000) + 1):
                reply, out = decode(self.socket.recv_multipart())
                if reply["kind"] == "error":
                    raise RobotrlError(f"learner refused {kind}: {reply.get('reason')}")
                return reply, out
        self._connect()
        return None

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None
