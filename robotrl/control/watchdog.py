"""A watchdog over the three things a control loop lives on: fresh observations, a policy that
keeps producing actions, and a driver that is still alive.

Pure logic: every event and every check takes the time as an argument (any monotonic clock,
seconds), so tests drive it with an injected clock and the deployment loop with
`time.monotonic()`. A channel is watched from its first event on, so a simulated env that has
no driver (and never sends a heartbeat) does not trip the driver watchdog.
"""

from __future__ import annotations

import math

STALE_OBSERVATION = "stale_observation"
INFERENCE_STALL = "inference_stall"
DRIVER_DEAD = "driver_dead"
CONDITIONS = (STALE_OBSERVATION, INFERENCE_STALL, DRIVER_DEAD)

# A deadline met to within a nanosecond counts as met: times like `t0 + 2 * period` are
# rounded floats, and a trip must not slip a whole control tick because of that rounding.
_SLACK = 1e-9


class Watchdog:
    """Trips a condition once `timeout` seconds have passed since its last good event
    (`now - last >= timeout`); a new event clears it. A timeout of None turns a channel off."""

    def __init__(
        self,
        observation_timeout: float | None,
        inference_timeout: float | None,
        driver_timeout: float | None,
    ):
        self.timeouts = {
            STALE_OBSERVATION: observation_timeout,
            INFERENCE_STALL: inference_timeout,
            DRIVER_DEAD: driver_timeout,
        }
        self.reset()

    def reset(self) -> None:
        """Forget every event: all channels are unwatched until they report again."""
        self._last: dict[str, float | None] = dict.fromkeys(CONDITIONS)

    def observation_received(self, t: float, age: float = 0.0) -> None:
        """An observation arrived at `t` that was captured `age` seconds earlier (sensor and
        transport latency): its staleness counts from the capture time."""
        self._event(STALE_OBSERVATION, t - age)

    def inference_done(self, t: float) -> None:
        """The policy produced an action (or action chunk) at `t`."""
        self._event(INFERENCE_STALL, t)

    def driver_heartbeat(self, t: float) -> None:
        """The robot driver reported it is alive at `t`."""
        self._event(DRIVER_DEAD, t)

    def _event(self, condition: str, t: float) -> None:
        if not math.isfinite(t):
            return  # a broken timestamp is no evidence of life
        last = self._last[condition]
        # Out-of-order delivery must not make the freshest evidence look older.
        self._last[condition] = t if last is None else max(last, t)

    def check(self, now: float) -> tuple[str, ...]:
        """The conditions tripped at `now` (empty when all is well)."""
        broken_clock = not math.isfinite(now)  # a NaN clock must not silence the watchdog
        tripped = []
        for condition in CONDITIONS:
            last, timeout = self._last[condition], self.timeouts[condition]
            if last is None or timeout is None:
                continue
            if broken_clock or now - last + _SLACK >= timeout:
                tripped.append(condition)
        return tuple(tripped)

    def last_event(self, condition: str) -> float | None:
        return self._last[condition]
