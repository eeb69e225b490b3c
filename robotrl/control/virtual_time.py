"""Simulated time for the control loop (`robotrl deploy --virtual-time`): the same loop, chunking
strategies, forecast and safety layer, with every wait replaced by moving a clock forward.

In real-time-paced sim a 50-episode PushT comparison of four strategies takes hours of wall
time; on a `VirtualClock` it takes as long as the policy's forward passes. A chunk requested at
time `t` is computed at once (in wall time) and lands at `t + compute + delay` in sim time, so
the strategies see the latency they would see in real time (in ticks: the same
`ceil(latency / dt)`), minus its jitter and the loop's own lateness. Sim only: a real arm keeps
real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from robotrl.control.inference import Request, Result


class VirtualClock:
    """Seconds that pass only when someone sleeps on them."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)


class VirtualTimeWorker:
    """The `InferenceWorker` interface on a `VirtualClock`: `submit` runs `infer` at once, and
    the chunk becomes visible to `poll` once the clock reaches its landing time. `wait` moves
    the clock there (the loop stands still meanwhile, as with `sync`)."""

    def __init__(
        self,
        infer: Callable[[Request], object],
        clock: VirtualClock,
        delay_s: float = 0.0,
        compute_s: float | None = None,
    ):
        """`compute_s`: the sim-time cost of one inference; None charges the measured wall
        time of each forward pass."""
        self.infer, self.clock, self.delay_s, self.compute_s = infer, clock, delay_s, compute_s
        self._pending: Result | None = None
        self._stalled = False

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def submit(self, request: Request) -> None:
        if self._pending is not None:
            raise RuntimeError("the inference worker is busy")
        request.submitted = self.clock()
        start = time.perf_counter()
        try:
            actions = self.infer(request)
        except Exception as e:  # the loop's side raises it, as the threaded worker does
            raise RuntimeError(f"policy inference failed: {e}") from e
        wall = time.perf_counter() - start
        compute = wall if self.compute_s is None else self.compute_s
        finished = request.submitted + compute + self.delay_s
        self._pending = Result(actions, request.start_tick, request.submitted, finished, compute)

    def poll(self) -> Result | None:
        if self._pending is None or self._stalled or self.clock() < self._pending.finished:
            return None
        result, self._pending = self._pending, None
        return result

    def wait(self, timeout: float | None = None) -> Result | None:
        if self._pending is None:
            return None
        if self._stalled and timeout is None:
            raise RuntimeError("the stalled inference worker would be waited on forever")
        due = float("inf") if self._stalled else self._pending.finished
        if timeout is not None and due > self.clock() + timeout:
            self.clock.sleep_until(self.clock() + timeout)
            return None
        self.clock.sleep_until(due)
        return self.poll()

    def stall(self, stalled: bool = True) -> None:
        self._stalled = stalled

    def close(self) -> None:
        self._pending = None
