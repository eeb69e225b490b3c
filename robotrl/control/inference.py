"""Asynchronous inference: the policy predicts chunks in its own thread (`InferenceWorker`) or
process (`ProcessInferenceWorker`), so the control loop never waits on it (unless the strategy
asks to, as `sync` does).

One request at a time: the loop submits the observation window of a tick (and, for RTC, the
prefix to inpaint toward), carries on ticking, and collects the chunk when it is done. The worker
thread spends its time in torch kernels, which release the GIL; the loop thread gets the GIL back
within `sys.getswitchinterval()` of waking, which the control loop lowers (see loop.py).

`delay_s` injects extra latency after each chunk (to emulate a slower policy or a remote
inference server), `stall()` makes the worker stop answering (to test the watchdog).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robotrl.control.chunking import Prefix


@dataclass
class Request:
    window: dict[str, np.ndarray]  # policy obs key -> [n_obs, ...]
    start_tick: int  # the tick the window describes (its newest observation's, or forecast)
    prefix: Prefix | None = None  # RTC: inpaint toward these actions
    submitted: float = 0.0  # monotonic seconds


@dataclass
class Result:
    actions: np.ndarray  # [H, A]
    start_tick: int
    submitted: float
    finished: float
    compute_s: float  # time in the policy, without the injected delay

    @property
    def latency_s(self) -> float:
        return self.finished - self.submitted


class ObservationHistory:
    """The last `n_obs` observations in the policy's keys, padded with the first at a reset (as
    `DiffusionPolicy.select_action` does)."""

    def __init__(self, config):
        self.keys = tuple(config.obs_keys) + tuple(config.image_keys)
        self.frames: deque = deque(maxlen=config.n_obs)

    def reset(self, obs: dict) -> None:
        self.frames.clear()
        frame = self._frame(obs)
        self.frames.extend([frame] * self.frames.maxlen)

    def append(self, obs: dict) -> None:
        self.frames.append(self._frame(obs))

    def window(self) -> dict[str, np.ndarray]:
        return {k: np.stack([f[k] for f in self.frames]) for k in self.keys}

    def _frame(self, obs: dict) -> dict[str, np.ndarray]:
        frame = {}
        for key in self.keys:
            value = np.asarray(obs[key.removeprefix("observation.")])
            frame[key] = value if value.dtype == np.uint8 else value.astype(np.float32)
        return frame


def policy_inference(policy, seed: int = 0) -> Callable[[Request], np.ndarray]:
    """A function from request to chunk [H, A] for a `DiffusionPolicy`-like policy; RTC requests
    go through the guided sampler."""
    import torch

    from robotrl.policies.guided import guided_chunk

    generator = torch.Generator().manual_seed(seed)

    def infer(request: Request) -> np.ndarray:
        window = {k: torch.as_tensor(v)[None] for k, v in request.window.items()}
        if request.prefix is None:
            chunk = policy.predict_chunk(window, generator=generator)
        else:
            p = request.prefix
            chunk = guided_chunk(
                policy, window, p.actions, p.weights, generator=generator, jacobian=p.guidance
            )
        return chunk[0].numpy().astype(np.float64)

    return infer


class InferenceWorker:
    """Runs `infer(request) -> actions [H, A]` on a daemon thread, one request at a time."""

    def __init__(
        self,
        infer: Callable[[Request], np.ndarray],
        delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.infer, self.delay_s, self.clock = infer, delay_s, clock
        self._lock = threading.Condition()
        self._request: Request | None = None
        self._result: Result | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._stalled = threading.Event()
        self._closing = threading.Event()  # interrupts an injected delay or stall
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    # ---- the loop's side --------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A request is in flight (or its result has not been collected)."""
        with self._lock:
            return self._request is not None or self._result is not None

    def submit(self, request: Request) -> None:
        with self._lock:
            if self._request is not None or self._result is not None:
                raise RuntimeError("the inference worker is busy")
            request.submitted = self.clock()
            self._request = request
            self._lock.notify_all()

    def poll(self) -> Result | None:
        """The finished chunk, if there is one (never blocks)."""
        with self._lock:
            return self._take()

    def wait(self, timeout: float | None = None) -> Result | None:
        """Block until the chunk in flight is done (or `timeout` seconds pass)."""
        with self._lock:
            self._lock.wait_for(
                lambda: self._result is not None or self._error is not None or self._closed,
                timeout,
            )
            return self._take()

    def stall(self, stalled: bool = True) -> None:
        """Fault injection: while stalled, finished chunks are withheld."""
        if stalled:
            self._stalled.set()
        else:
            self._stalled.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._closing.set()
        self._thread.join(timeout=5.0)

    def _take(self) -> Result | None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"policy inference failed: {error}") from error
        result, self._result = self._result, None
        return result

    # ---- the worker thread ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._request is not None or self._closed)
                if self._closed:
                    return
                request = self._request
            try:
                start = self.clock()
                actions = self.infer(request)
                compute = self.clock() - start
                if self.delay_s > 0:
                    self._closing.wait(self.delay_s)
                while self._stalled.is_set() and not self._closing.is_set():
                    self._closing.wait(0.005)
                result = Result(
                    actions, request.start_tick, request.submitted, self.clock(), compute
                )
                error = None
            except Exception as e:  # surfaced on the loop's side, with the policy's message
                result, error = None, e
            with self._lock:
                self._request = None
                self._result, self._error = result, error
                self._lock.notify_all()


class ProcessInferenceWorker:
    """The `InferenceWorker` interface with the policy in a child process: no GIL shared with
    the control loop. In one process a real-time loop thread can still wait for the GIL held by
    an inference thread that the OS has preempted (priority inversion through the GIL); here the
    loop's process has nothing else to wait for.

    The child loads the checkpoint at `checkpoint` itself (safetensors, no pickled policy), and
    answers one request at a time over a pipe. Times are `time.monotonic()`, which is the same
    clock in every process of a Linux machine."""

    def __init__(
        self,
        checkpoint: str,
        delay_s: float = 0.0,
        threads: int = 1,
        seed: int = 0,
        timeout_s: float = 60.0,
    ):
        import multiprocessing as mp

        context = mp.get_context("spawn")  # fork after torch's threads started can deadlock
        self._conn, child = context.Pipe()
        args = (child, str(checkpoint), delay_s, threads, seed)
        self._process = context.Process(target=_serve, args=args, name="inference", daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(timeout_s):  # the child reports once the policy is loaded
            self.close()
            raise RuntimeError(f"the inference process did not start within {timeout_s:.0f} s")
        ready = self._conn.recv()
        if isinstance(ready, Exception):
            self.close()
            raise ready
        self._in_flight, self._result = False, None

    @property
    def busy(self) -> bool:
        return self._in_flight or self._result is not None

    def submit(self, request: Request) -> None:
        if self.busy:
            raise RuntimeError("the inference worker is busy")
        request.submitted = time.monotonic()
        self._conn.send(("infer", request))
        self._in_flight = True

    def poll(self) -> Result | None:
        return self.wait(0.0)

    def wait(self, timeout: float | None = None) -> Result | None:
        if self._in_flight and self._conn.poll(timeout):
            self._in_flight = False
            self._result = self._conn.recv()
        result, self._result = self._result, None
        if isinstance(result, Exception):
            raise RuntimeError(f"policy inference failed: {result}") from result
        return result

    def stall(self, stalled: bool = True) -> None:
        self._conn.send(("stall", stalled))

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the child may be gone already
            self._conn.send(("close", None))
        self._process.join(timeout=5.0)
        if self._process.is_alive():
            self._process.terminate()
        self._conn.close()


def _serve(conn, checkpoint: str, delay_s: float, threads: int, seed: int) -> None:
    """The child process: load the policy, then answer requests until told to close."""
    try:
        import torch

        from robotrl.policies.checkpoint import load_policy

        torch.set_num_threads(max(1, threads))
        infer = policy_inference(load_policy(checkpoint).eval(), seed)
        conn.send("ready")
    except Exception as e:  # reported to the parent, which raises it
        conn.send(RuntimeError(f"inference process: {e}"))
        return
    stalled = False
    while True:
        kind, value = conn.recv()
        if kind == "close":
            return
        if kind == "stall":
            stalled = value
            continue
        try:
            start = time.monotonic()
            actions = infer(value)
            compute = time.monotonic() - start
            time.sleep(delay_s)
            while stalled:  # withhold the result; still obey stall/close
                if conn.poll(0.005):
                    kind, flag = conn.recv()
                    if kind == "close":
                        return
                    stalled = flag if kind == "stall" else stalled
            out = Result(actions, value.start_tick, value.submitted, time.monotonic(), compute)
        except Exception as e:  # the parent raises it with the policy's message
            out = e
        conn.send(out)
