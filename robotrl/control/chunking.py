"""Action chunk execution strategies: which action runs at each control tick, and when to ask the
policy for the next chunk.

Time is counted in control ticks. A chunk conditioned on the observation available at tick `k`
(the one the env returned after the action of tick `k - 1`) holds actions for ticks
`k, k + 1, ..., k + H - 1` (as `DiffusionPolicy.select_action` executes it). Inference takes
`d` ticks, so with asynchronous inference the chunk arrives during tick `k + d`: its first `d`
actions are in the past by then and are dropped; the queue knows exactly which, because it
keys every action by the absolute tick it was planned for.

- `sync`: the loop stops and waits for each chunk (the baseline the others are measured against:
  no stale actions, but the robot stands still while the policy thinks).
- `receding`: a new chunk is requested `execute_steps` ticks after the last one started (sooner
  when the measured latency would leave the queue dry), and replaces the old one from the tick
  it arrives.
- `ensemble` (ACT, Zhao et al. 2023): a chunk is requested whenever the policy is free; each
  tick executes the average of every chunk's action for it, weights exp(-k * i) with i = 0 for
  the oldest chunk (ACT's convention: older predictions weigh most, which smooths).
- `rtc` (real-time chunking, Black et al. 2025): like `receding`, but the request carries the
  previous chunk's actions for the ticks the new chunk overlaps. The `d` that will execute while
  the policy infers are frozen (weight 1), the rest fade out (RTC's exponential schedule) up to
  where the previous chunk ends, and the sampler inpaints the new chunk toward them (see
  `robotrl.policies.guided`; by default with the network's Jacobian taken as the identity, which
  costs no backward pass). The switch to the new chunk is then continuous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("sync", "receding", "ensemble", "rtc")
# the Jacobian RTC's guided sampler uses (`robotrl.policies.guided`)
RTC_GUIDANCE = ("identity", "network")


@dataclass
class Chunk:
    actions: np.ndarray  # [H, A]
    start_tick: int  # tick of actions[0]: the tick of the observation it was conditioned on

    @property
    def end_tick(self) -> int:  # first tick past the chunk
        return self.start_tick + len(self.actions)

    def at(self, tick: int) -> np.ndarray | None:
        i = tick - self.start_tick
        return self.actions[i] if 0 <= i < len(self.actions) else None


@dataclass
class Prefix:
    """What an RTC request inpaints toward: the previous chunk's actions for the new chunk's
    first ticks, and how strongly each is held (1 = frozen, 0 = free)."""

    actions: np.ndarray  # [H, A], zero where the weight is 0
    weights: np.ndarray  # [H]
    frozen: int  # entries with weight 1: they execute while the policy infers
    guidance: str  # the guided sampler's Jacobian, one of RTC_GUIDANCE


def rtc_weights(horizon: int, delay: int, overlap: int) -> np.ndarray:
    """RTC's soft mask (Black et al. 2025, eq. 5): 1 for the first `delay` entries, then
    c * (e^c - 1) / (e - 1) with c falling linearly to 0 where the previous chunk ends
    (`overlap` entries in), then 0."""
    overlap = min(max(overlap, delay), horizon)
    w = np.zeros(horizon)
    w[:delay] = 1.0
    span = overlap - delay + 1
    for i in range(delay, overlap):
        c = (overlap - i) / span
        w[i] = c * (math.exp(c) - 1) / (math.e - 1)
    return w


class Strategy:
    """Base: one active chunk, replaced by each new one from the tick it arrives."""

    name = ""
    blocking = False  # the loop waits for each chunk
    planned_ahead = False  # chunks start at the tick they are expected to land (a forecast)

    def __init__(self, horizon: int, execute_steps: int):
        if not 1 <= execute_steps <= horizon:
            raise ValueError(f"execute_steps must be in 1..{horizon}, got {execute_steps}")
        self.horizon, self.execute_steps = horizon, execute_steps
        self.dropped = 0  # actions that arrived after their tick
        self.reset()

    def reset(self) -> None:
        self.active: Chunk | None = None
        # the chunk before `active`, for the ticks before `active` starts (a chunk planned for
        # the tick it was expected to land can land early)
        self.previous: Chunk | None = None

    # ---- what the loop asks -----------------------------------------------------------
    def wants_inference(self, tick: int, delay: int) -> bool:
        """Start a request now? `delay`: the expected inference time in ticks."""
        if self.action(tick) is None:
            return True  # nothing left to execute
        # After `execute_steps`, or earlier when the next chunk would otherwise land after this
        # one runs out (a request at tick r lands before tick r + delay starts). A chunk planned
        # for the tick it lands is requested `delay` ticks before this one has run its share.
        if self.planned_ahead:
            lead = max(1, self.execute_steps - delay)
        else:
            lead = max(1, min(self.execute_steps, self.horizon - delay))
        return tick >= self.active.start_tick + lead

    def prefix(self, tick: int, delay: int) -> Prefix | None:
        """The frozen prefix for a request starting at `tick` (RTC only)."""
        return None

    def add(self, chunk: Chunk, tick: int) -> None:
        """A chunk arrived during `tick` (before that tick's action is chosen)."""
        self.dropped += max(0, min(tick, chunk.end_tick) - chunk.start_tick)
        self.previous = self.active if chunk.start_tick > tick else None
        self.active = chunk

    def action(self, tick: int) -> np.ndarray | None:
        """The action for `tick`, or None when there is none (the loop then holds)."""
        if self.active is None:
            return None
        if tick < self.active.start_tick and self.previous is not None:
            return self.previous.at(tick)
        return self.active.at(tick)

    def remaining(self, tick: int) -> int:
        """Actions queued for `tick` and later."""
        if self.active is None:
            return 0
        first = tick if self.previous is not None else max(tick, self.active.start_tick)
        return max(0, self.active.end_tick - first)


class Sync(Strategy):
    """The loop stops while the policy infers; executes `execute_steps` of each chunk."""

    name, blocking = "sync", True

    def wants_inference(self, tick: int, delay: int) -> bool:
        return self.action(tick) is None

    def add(self, chunk: Chunk, tick: int) -> None:
        chunk = Chunk(chunk.actions[: self.execute_steps], chunk.start_tick)
        super().add(chunk, tick)


class Receding(Strategy):
    name = "receding"


class RealTimeChunking(Strategy):
    name = "rtc"
    # Planned ahead (a forecast), the new chunk starts where the actions that run during
    # inference end: nothing is frozen, and the previous chunk's later actions were planned
    # from older observations than the forecast, so they only steer its first few entries.
    soft_ticks_planned_ahead = 2

    def __init__(self, horizon: int, execute_steps: int, guidance: str = "identity"):
        if guidance not in RTC_GUIDANCE:
            choices = ", ".join(RTC_GUIDANCE)
            raise ValueError(f"unknown rtc guidance '{guidance}': choose {choices}")
        self.guidance = guidance
        super().__init__(horizon, execute_steps)

    def prefix(self, tick: int, delay: int) -> Prefix | None:
        if self.active is None:
            return None
        # The previous chunk's actions, re-indexed to the new chunk: entry i is tick `tick + i`.
        overlap = max(0, min(self.active.end_tick - tick, self.horizon))
        if self.planned_ahead:
            overlap = min(overlap, delay + self.soft_ticks_planned_ahead)
        delay = min(delay, overlap)
        if overlap == 0:
            return None
        offset = tick - self.active.start_tick
        actions = np.zeros((self.horizon, self.active.actions.shape[1]))
        actions[:overlap] = self.active.actions[offset : offset + overlap]
        weights = rtc_weights(self.horizon, delay, overlap)
        return Prefix(actions, weights, delay, self.guidance)


class TemporalEnsemble(Strategy):
    """Every chunk that covers a tick votes for it: weights exp(-k * i), i = 0 the oldest."""

    name = "ensemble"

    def __init__(self, horizon: int, execute_steps: int, k: float = 0.01):
        self.k = k
        super().__init__(horizon, execute_steps)

    def reset(self) -> None:
        super().reset()
        self.chunks: list[Chunk] = []

    def wants_inference(self, tick: int, delay: int) -> bool:
        return True  # as often as the policy can

    def add(self, chunk: Chunk, tick: int) -> None:
        self.dropped += max(0, min(tick, chunk.end_tick) - chunk.start_tick)
        self.chunks = [c for c in self.chunks if c.end_tick > tick] + [chunk]
        self.active = chunk

    def action(self, tick: int) -> np.ndarray | None:
        votes = [a for a in (c.at(tick) for c in self.chunks) if a is not None]
        if not votes:
            return None
        weights = np.exp(-self.k * np.arange(len(votes)))  # chunks are kept oldest first
        return np.average(np.stack(votes), axis=0, weights=weights)

    def remaining(self, tick: int) -> int:
        return max((max(0, c.end_tick - max(tick, c.start_tick)) for c in self.chunks), default=0)


def make_strategy(name: str, horizon: int, execute_steps: int, **kwargs) -> Strategy:
    classes = {"sync": Sync, "receding": Receding, "ensemble": TemporalEnsemble}
    classes["rtc"] = RealTimeChunking
    if name not in classes:
        raise ValueError(f"unknown strategy '{name}': choose {', '.join(STRATEGIES)}")
    return classes[name](horizon, execute_steps, **kwargs)


class LatencyEstimate:
    """Expected inference time in ticks: a high quantile of the recent latencies, rounded up, so
    RTC freezes every action that will run before the new chunk lands."""

    def __init__(self, dt: float, window: int = 20, quantile: float = 0.9, initial_s: float = 0.0):
        self.dt, self.window, self.quantile = dt, window, quantile
        self.samples: list[float] = [initial_s] if initial_s > 0 else []

    def add(self, latency_s: float) -> None:
        self.samples = [*self.samples[-(self.window - 1) :], latency_s]

    @property
    def seconds(self) -> float:
        return float(np.quantile(self.samples, self.quantile)) if self.samples else 0.0

    @property
    def ticks(self) -> int:
        # The chunk lands during tick ceil(latency / dt) after its request, at the earliest.
        return int(math.ceil(self.seconds / self.dt - 1e-9))
