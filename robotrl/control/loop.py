"""The real-time control loop: ticks `env.step` at the control rate on a monotonic clock, takes
actions from a chunking strategy fed by an asynchronous inference worker, and sends every command
through the safety layer.

Rate keeping: sleep until `spin_s` before the deadline (the kernel wakes a sleeper late by tens
of microseconds to a millisecond on a loaded machine), then spin on the clock to the deadline. A
tick that starts more than a whole period late re-anchors the schedule instead of bursting steps
to catch up (a robot must not get a quick series of commands). An env that paces itself (a ROS
arm, a sim made with `realtime=True`) is not paced twice: the loop then only measures.

Python detail that decides the latency: the inference thread holds the GIL between torch
kernels, and a woken loop thread waits for it up to `sys.getswitchinterval()` (5 ms by default).
The loop lowers the switch interval to `switch_interval_s` while it runs.

Watchdog feeds (the channels in `robotrl.control.watchdog`): an observation each step (dated by
its capture time: `info["observation_age"]` when the env reports it), the policy each tick it has
a fresh action for, the driver each step that a hardware env did not withhold (`info["held"]`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from robotrl.control.chunking import Chunk, LatencyEstimate, make_strategy
from robotrl.control.forecast import ObservationForecast
from robotrl.control.inference import InferenceWorker, ObservationHistory, Request
from robotrl.control.safety import SafeEnv, safe
from robotrl.control.telemetry import Telemetry, TickRecord
from robotrl.errors import RobotrlError


@dataclass
class LoopConfig:
    strategy: str = "rtc"
    hz: float | None = None  # default: the env's control rate
    execute_steps: int | None = None  # actions per chunk; default: the policy's n_action_steps
    ensemble_k: float = 0.01  # temporal ensembling weight exp(-k * i)
    rtc_guidance: str = "identity"  # RTC's guided sampler: "identity" or "network" Jacobian
    spin_s: float = 0.0005  # busy-wait this long before each deadline
    switch_interval_s: float = 0.0001  # GIL hand-over bound while the loop runs
    realtime_sched: bool = False  # SCHED_FIFO + mlockall (+ cpu affinity) for the loop thread
    priority: int = 80
    cpu: int | None = None  # pin the loop thread to this CPU
    first_chunk_timeout_s: float = 30.0  # an episode starts once the first chunk is there
    pause_gc: bool = True  # no garbage-collector pauses mid-episode (collected between episodes)
    # asynchronous strategies plan from the observation forecast for when the chunk lands
    # (`robotrl.control.forecast`) rather than the one of the tick the request starts
    forecast: bool = False


class RateKeeper:
    """Deadlines every `dt` seconds on `clock`, kept by sleep-then-spin."""

    def __init__(
        self,
        dt: float,
        spin_s: float = 0.0005,
        clock: Callable[[], float] = time.monotonic,
        sleep_until: Callable[[float], None] | None = None,
    ):
        self.dt, self.spin_s, self.clock = dt, spin_s, clock
        self.sleep_until = sleep_until or self._sleep_then_spin
        self.deadline: float | None = None

    def start(self) -> None:
        """The next `wait` returns at once and anchors the schedule there."""
        self.deadline = None

    def wait(self, sleep: bool = True) -> tuple[float, bool]:
        """Wait for the next deadline; returns (lateness s, overrun). Overrun: the deadline had
        already passed when the previous tick's work ended. `sleep=False` only measures (an env
        that paces itself has just returned from its own wait)."""
        now = self.clock()
        if self.deadline is None:
            self.deadline = now
            return 0.0, False
        self.deadline += self.dt
        if not sleep:
            # The env keeps its own clock: follow it, and call a tick overrun when its period
            # stretched past one and a half (a missed tick), not for the env's own jitter.
            late = now - self.deadline
            self.deadline = now
            return max(0.0, late), late > 0.5 * self.dt
        overrun = now > self.deadline
        if now - self.deadline > self.dt:  # a whole period behind: skip, do not burst
            late = now - self.deadline
            self.deadline = now
            return late, True
        self.sleep_until(self.deadline)
        return max(0.0, self.clock() - self.deadline), overrun

    def _sleep_then_spin(self, deadline: float) -> None:
        remaining = deadline - self.clock()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while self.clock() < deadline:
            pass

    def reanchor(self) -> None:
        """The loop stood still (waited for a chunk): the schedule restarts from now."""
        self.deadline = self.clock()


def enable_realtime(priority: int = 80, cpu: int | None = None) -> list[str]:
    """SCHED_FIFO, locked memory and CPU pinning for the calling thread, as far as the process
    is allowed; returns one line per thing that could not be done (empty when all worked)."""
    problems = []
    how = "run as root, or grant CAP_SYS_NICE / an rtprio limit in /etc/security/limits.conf"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError, AttributeError) as e:
        problems.append(f"SCHED_FIFO priority {priority} not allowed ({e}); {how}")
    try:
        import resource

        libc = ctypes.CDLL(None, use_errno=True)
        # MCL_CURRENT (1): no page faults mid-loop. MCL_FUTURE (2) too only without a memlock
        # limit: with one, a later allocation past it (torch grows its memory) would fail.
        unlimited = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] == resource.RLIM_INFINITY
        if libc.mlockall(1 | (2 if unlimited else 0)) != 0:
            err = ctypes.get_errno()
            problems.append(f"mlockall failed ({os.strerror(err)}); raise the memlock limit")
    except (OSError, AttributeError) as e:
        problems.append(f"mlockall unavailable ({e})")
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except (OSError, ValueError) as e:
            problems.append(f"cannot pin to CPU {cpu} ({e})")
    return problems


def restore_normal_scheduling(cpus: set[int] | None = None) -> None:
    """Back to SCHED_OTHER, memory unlocked (and to `cpus`, the affinity from before
    `enable_realtime`): a process that goes on after the loop does not keep its pages pinned."""
    with contextlib.suppress(PermissionError, OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).munlockall()
    if cpus:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setaffinity(0, cpus)


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    steps: int
    wall_s: float  # from the episode's first tick to its last step's return
    stopped: str | None = None  # why the loop stopped early (env error, e-stop)
    returns: float = 0.0
    extra: dict = field(default_factory=dict)


class ControlLoop:
    """Runs `policy` on `env` (wrapped in `safe()` when it is not a `SafeEnv` yet)."""

    def __init__(
        self,
        env,
        policy,
        config: LoopConfig | None = None,
        worker: InferenceWorker | None = None,
        telemetry: Telemetry | None = None,
        on_tick: Callable[[TickRecord, ControlLoop], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = cfg = config or LoopConfig()
        self.env: SafeEnv = env if isinstance(env, SafeEnv) else safe(env, clock=clock)
        self.policy, self.clock, self.on_tick = policy, clock, on_tick
        robot = self.env.unwrapped.robot
        self.hz = cfg.hz or robot.control_hz
        if abs(self.hz - robot.control_hz) > 1e-6 * self.hz:
            # one env step is one control period of the env's own: make the env at this rate
            raise RobotrlError(
                f"the loop rate {self.hz:g} Hz differs from the env's control rate "
                f"{robot.control_hz:g} Hz: create the env with control_hz={self.hz:g}"
            )
        self.dt = 1.0 / self.hz
        self.paced_by_env = bool(getattr(self.env.unwrapped, "realtime", False))
        # residual RL: a per-step correction of the chunk's action from this tick's observation
        self.correct_action = getattr(policy, "correct_action", None)
        pc = policy.config
        self.strategy = make_strategy(
            cfg.strategy,
            pc.horizon,
            cfg.execute_steps or pc.n_action_steps,
            **_strategy_options(cfg),
        )
        if worker is None:
            from robotrl.control.inference import policy_inference

            worker = InferenceWorker(policy_inference(policy), clock=clock)
        self.worker = worker
        self.telemetry = telemetry or Telemetry()
        self.history = ObservationHistory(pc)
        self.forecast = None
        if cfg.forecast and not self.strategy.blocking:
            self.forecast = ObservationForecast(pc.obs_keys, robot.state_names, robot.action.names)
            self.strategy.planned_ahead = True
        # a `VirtualClock` (robotrl.control.virtual_time) is slept on by moving it forward
        self.rate = RateKeeper(self.dt, cfg.spin_s, clock, getattr(clock, "sleep_until", None))
        self.latency = LatencyEstimate(self.dt)
        self.watchdog = self.env.safety.watchdog
        self.episodes: list[EpisodeResult] = []
        self.start_time = clock()
        self.rt_problems: list[str] = []

    # ---- episodes ---------------------------------------------------------------------
    def run(self, episodes: int, seed: int = 0) -> list[EpisodeResult]:
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(self.config.switch_interval_s)
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if self.config.realtime_sched:
            self.rt_problems = enable_realtime(self.config.priority, self.config.cpu)
        gc_was_enabled = gc.isenabled()
        try:
            for episode in range(episodes):
                gc.collect()
                if self.config.pause_gc:
                    gc.disable()
                self.episodes.append(self.run_episode(seed + episode, len(self.episodes)))
                if gc_was_enabled:
                    gc.enable()
                if self.episodes[-1].stopped:
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
            sys.setswitchinterval(old_interval)
            if self.config.realtime_sched:
                restore_normal_scheduling(cpus)
            self.telemetry.flush()
        return self.episodes

    def run_episode(self, seed: int, episode: int = 0) -> EpisodeResult:
        env, strategy, watchdog = self.env, self.strategy, self.watchdog
        obs, info = env.reset(seed=seed)
        self.policy.reset()
        strategy.reset()
        self.history.reset(obs)
        self._drain_worker()
        captured = self.clock() - float(info.get("observation_age", 0.0))
        self.rate.start()
        tick, returns, success, stopped = 0, 0.0, False, None
        start = None
        while True:
            lateness, overrun = self.rate.wait(sleep=not self.paced_by_env)
            t0 = self.clock()
            start = t0 if start is None else start
            source, waited, arrived = "policy", 0.0, None
            result = self.worker.poll()
            if result is not None:
                arrived = self._arrive(result, tick)
            if not self.worker.busy and strategy.wants_inference(tick, self.latency.ticks):
                self.worker.submit(self._request(tick))
            must_wait = strategy.blocking or strategy.active is None
            if must_wait and self.worker.busy and strategy.action(tick) is None:
                # sync, or an episode's first chunk: the robot stands still meanwhile
                timeout = self.config.first_chunk_timeout_s
                result = self.worker.wait(timeout)
                if result is None:
                    raise RobotrlError(f"the policy produced no chunk within {timeout:.0f} s")
                arrived = self._arrive(result, tick)
                waited = self.clock() - t0
                source = "wait"
                self.rate.reanchor()
                if not self.paced_by_env:
                    # A sim's clock stands still while the loop waits: its observation is
                    # as fresh as when the wait began. (Hardware moves on and is re-checked.)
                    captured += waited
                    watchdog.observation_received(self.clock())
                start = start if tick else self.clock()  # an episode starts when it can act
            action = strategy.action(tick)
            now = self.clock()
            if action is None:
                action, source = env.safety.hold_command(obs), "hold"
            else:
                watchdog.inference_done(now)
                if self.correct_action:
                    action = self.correct_action(obs, action)
            obs_age = now - captured
            queue = strategy.remaining(tick)
            previous_state = obs["state"]
            try:
                obs, reward, terminated, truncated, info = env.step(action)
            except Exception as e:  # a dead env or driver: latch the e-stop and stop here
                env.safety.estop(f"env failed: {e}")
                stopped = f"env failed: {type(e).__name__}: {e}"
                break
            done_at = self.clock()
            if self.forecast is not None:
                self.forecast.observe(previous_state, action, obs["state"])
            captured = done_at - float(info.get("observation_age", 0.0))
            watchdog.observation_received(done_at, float(info.get("observation_age", 0.0)))
            if "held" in info and not info["held"]:  # a hardware env says its driver answered
                watchdog.driver_heartbeat(done_at)
            self.history.append(obs)
            returns += float(reward)
            success = success or bool(info.get("is_success", False))
            record = TickRecord(
                episode=episode,
                tick=tick,
                t=t0 - self.start_time,
                lateness_ms=lateness * 1e3,
                overrun=overrun,
                work_ms=(done_at - t0 - waited) * 1e3,
                obs_age_ms=obs_age * 1e3,
                queue=queue,
                source=source,
                inference_ms=None if arrived is None else arrived[0] * 1e3,
                waited_ms=waited * 1e3,
                dropped=0 if arrived is None else arrived[1],
                safety=dict(info.get("safety", {})),
                success=bool(info.get("is_success", False)),
            )
            self.telemetry.add(record)
            if self.on_tick is not None:
                self.on_tick(record, self)
            tick += 1
            if terminated or truncated or env.safety.estopped:
                stopped = env.safety.estop_reason if env.safety.estopped else None
                break
        self.telemetry.flush()
        end = self.clock()
        return EpisodeResult(episode, seed, success, tick, end - (start or end), stopped, returns)

    def close(self) -> None:
        self.worker.close()
        self.telemetry.close()

    # ---- internals --------------------------------------------------------------------
    def _request(self, tick: int) -> Request:
        """The request for a chunk: from this tick's observations, or (forecasting, with a
        chunk running) from the forecast for the tick the new chunk is expected to land."""
        delay, window = self.latency.ticks, self.history.window()
        ahead = delay if self.forecast is not None and self.strategy.active is not None else 0
        if ahead:
            window = self.forecast(window, [self.strategy.action(tick + i) for i in range(ahead)])
        prefix = self.strategy.prefix(tick + ahead, delay - ahead)
        return Request(window, tick + ahead, prefix)

    def _arrive(self, result, tick: int) -> tuple[float, int]:
        """Hand a finished chunk to the strategy; returns (latency s, actions dropped)."""
        before = self.strategy.dropped
        self.strategy.add(Chunk(result.actions, result.start_tick), tick)
        self.latency.add(result.latency_s)
        return result.latency_s, self.strategy.dropped - before

    def _drain_worker(self) -> None:
        """Forget a chunk still in flight from the last episode (its observations are gone)."""
        if self.worker.busy:
            self.worker.wait(self.config.first_chunk_timeout_s)


def _strategy_options(cfg: LoopConfig) -> dict:
    if cfg.strategy == "ensemble":
        return {"k": cfg.ensemble_k}
    if cfg.strategy == "rtc":
        return {"guidance": cfg.rtc_guidance}
    return {}
