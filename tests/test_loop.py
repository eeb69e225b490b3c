"""The real-time control loop on real MuJoCo with real threads: rate keeping, lateness under
concurrent inference, stale-action dropping, RTC's frozen prefix, and the watchdog ending every
fault in a hold (or a stop) within two control periods."""

import math
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from robotrl.control import safe
from robotrl.control.inference import InferenceWorker, policy_inference
from robotrl.control.loop import ControlLoop, LoopConfig, RateKeeper
from robotrl.tasks import make

HZ = 50.0
DT = 1.0 / HZ
# A hold must come within two periods of a fault; the tick it lands on can itself start late
# on a loaded CI machine, by this much at most.
TICK_SLACK = 0.005


class StubPolicy:
    """Chunk interface without a network: small random actions (well inside every safety limit,
    so what was sent is what the policy said), a new random chunk per call."""

    def __init__(self, horizon: int = 8, n_action_steps: int = 4, seed: int = 0):
        self.config = SimpleNamespace(
            obs_keys=("observation.state",),
            image_keys=(),
            n_obs=2,
            horizon=horizon,
            n_action_steps=n_action_steps,
        )
        self.rng = np.random.default_rng(seed)

    def reset(self):
        pass

    def predict_chunk(self, window, generator=None):
        actions = np.zeros((1, self.config.horizon, 7))
        actions[..., :3] = self.rng.uniform(-0.004, 0.004, (1, self.config.horizon, 3))
        return torch.as_tensor(actions)


class Recorder(gym.Wrapper):
    """Inside the safety layer: records every command the env received and when, and injects
    faults from step `fault_at` on: `stale` (the observation stops changing and ages),
    `raise` (the env dies), `held` (a hardware driver stops answering: info["held"])."""

    def __init__(self, env, fault: str | None = None, fault_at: int = 10**9):
        super().__init__(env)
        self.fault, self.fault_at = fault, fault_at
        self.sent: list[tuple[float, np.ndarray]] = []
        self.onset: float | None = None  # when the first faulty step returned (or raised)

    def reset(self, **kwargs):
        self.steps = 0
        obs, info = self.env.reset(**kwargs)
        self.fresh = (obs, time.monotonic())  # the last observation that was current
        return obs, info

    def step(self, action):
        self.sent.append((time.monotonic(), np.array(action)))
        faulty = self.fault is not None and self.steps >= self.fault_at
        self.steps += 1
        if faulty and self.fault == "raise":
            self.onset = time.monotonic()
            raise RuntimeError("driver connection lost")
        obs, reward, terminated, truncated, info = self.env.step(action)
        now = time.monotonic()
        if self.fault == "held":
            info["held"] = faulty
        if faulty and self.fault == "stale":  # the camera/joint stream froze at the last one
            obs, info["observation_age"] = self.fresh[0], now - self.fresh[1]
        else:
            self.fresh = (obs, now)
        if faulty and self.onset is None:
            self.onset = now
        return obs, reward, terminated, truncated, info


class SubmissionLog(InferenceWorker):
    """The worker, keeping every request in the order the loop submitted it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.submitted = []

    def submit(self, request):
        super().submit(request)
        self.submitted.append(request)


def make_loop(strategy="rtc", delay=0.0, steps=60, fault=None, fault_at=10**9, policy=None, **cfg):
    env = Recorder(make("Reach", control_hz=HZ, max_episode_steps=steps), fault, fault_at)
    policy = policy or StubPolicy()
    requests = []
    infer = policy_inference(policy)
    worker = SubmissionLog(lambda r: requests.append(r) or infer(r), delay_s=delay)
    loop = ControlLoop(safe(env), policy, LoopConfig(strategy=strategy, **cfg), worker=worker)
    return loop, env, requests


def hold_after_onset(loop, recorder) -> float:
    """Seconds from the fault's onset to the first command the watchdog held."""
    held = [r for r in loop.telemetry.records if "watchdog" in r.safety]
    assert held, "the watchdog never held"
    return loop.start_time + held[0].t - recorder.onset


def assert_holds_only_wait_on_late_chunks(loop, delay_s: float) -> None:
    """The queue may run dry only because chunks were late: while a chunk is in flight that was
    requested more than its expected latency (ceil(delay / DT) ticks) before (a loaded machine
    stalls one now and then), or, forecasting, before a chunk that landed early for a start
    planned further ahead than that (the latency estimate had measured late chunks). A hold
    with nothing in flight, or with a chunk requested too recently to have landed, is the
    plan's fault. Only the first tick of each hold is judged: a late chunk's actions have
    passed when it lands, and the robot holds on until a fresh one does."""
    records, requests = loop.telemetry.records, loop.worker.submitted
    starts = np.array([loop.start_time + r.t for r in records])
    requested_at = [int(np.searchsorted(starts, q.submitted, side="right")) - 1 for q in requests]
    expected = math.ceil(delay_s / DT - 1e-9)
    arrived, holding = 0, False
    for record in records:
        arrived += record.inference_ms is not None  # arrivals come in request order
        ran_dry = record.source == "hold" and not holding
        holding = record.source == "hold"
        if not ran_dry:
            continue
        latest = arrived - 1  # the newest chunk that has landed
        if requests[latest].start_tick > record.tick:  # landed before its planned start
            planned = requests[latest].start_tick - requested_at[latest]
            assert planned > expected, (
                f"held at tick {record.tick} before a chunk planned {planned} ticks ahead"
            )
            continue
        assert arrived < len(requests) and requested_at[arrived] < record.tick, (
            f"held at tick {record.tick} with no chunk in flight"
        )
        since = record.tick - requested_at[arrived]
        assert since > expected, (
            f"held at tick {record.tick} for a chunk requested {since} ticks before (one of "
            f"{delay_s * 1e3:.0f} ms takes {expected}): the request came too late"
        )


def test_rate_keeper_keeps_the_period():
    rate, stamps = RateKeeper(1 / 200, spin_s=0.0005), []
    lateness = []
    for _ in range(200):
        late, _ = rate.wait()
        lateness.append(late)
        stamps.append(time.monotonic())
    # The typical period is the period. (Not the mean: a tick that wakes a whole period late
    # re-anchors rather than bursts, and a loaded machine's preemptions between the wait and
    # the stamp skew a mean either way by 5-6%.)
    periods = np.diff(stamps[1:])
    assert np.median(periods) == pytest.approx(1 / 200, rel=0.02)
    # `robotrl bench loop` measures the real figures; here only what a loaded CI machine
    # still guarantees: most ticks on time, no stall. (Niced below two busy processes on two
    # cores, this machine measured p99 3-6 ms: the scheduler's time slices, not the loop.)
    assert np.median(lateness) < 0.0005 and np.quantile(lateness, 0.99) < 0.020


def reach_diffusion_policy():
    """An untrained diffusion policy of the standard size for Reach, its actions scaled down to
    millimetres: real torch work on the worker thread, harmless commands."""
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    config = DiffusionConfig(obs_keys=("observation.state",), obs_dims=(15,), action_dim=7)
    high = np.array([0.004, 0.004, 0.004, 0, 0, 0, 0])
    torch.manual_seed(0)
    return DiffusionPolicy(config, [(-np.ones(15), np.ones(15))], (-high, high)).eval()


def test_loop_lateness_with_a_policy_inferring_concurrently():
    torch.set_num_threads(1)  # as deploy does: the other core is the loop's
    # As on an arm (`deploy --realtime-sched`): where allowed, SCHED_FIFO keeps the tick on time
    # while other jobs load every core; where not, the loop runs as before.
    loop, _, requests = make_loop(
        "ensemble", steps=150, policy=reach_diffusion_policy(), realtime_sched=True
    )
    loop.run(1)
    loop.close()
    summary = loop.telemetry.summary(skip_ticks=1)
    # inference really ran alongside (~16 chunks idle; 10 with both cores busy besides)
    assert summary["ticks"] == 149 and len(requests) >= 5
    # target p99 <= 1 ms (see `robotrl bench loop`); loose here for a loaded CI machine
    late = [r.lateness_ms for r in loop.telemetry.records[1:]]
    assert np.median(late) < 0.5 and np.quantile(late, 0.9) < 5.0
    assert summary["overruns"] <= 5


def test_async_strategies_drop_stale_actions_and_rtc_freezes_what_ran():
    # 50 ms inference at 50 Hz: each chunk lands in the third tick after its request, normally
    loop, recorder, requests = make_loop("rtc", delay=0.05, steps=80)
    loop.run(1)
    loop.close()
    records = loop.telemetry.records
    assert_holds_only_wait_on_late_chunks(loop, 0.05)  # the queue runs dry only then
    # Each arrival drops exactly the actions whose ticks passed while it was computed: two or
    # three at 50 ms, fewer when a loaded machine starts ticks late, never none.
    arrivals = [r for r in records if r.inference_ms is not None]
    assert len(arrivals) > 5
    for record, request in zip(arrivals[1:], loop.worker.submitted[1:]):  # after the first wait
        passed = min(record.tick - request.start_tick, loop.policy.config.horizon)
        assert record.dropped == passed >= 1
    sent = np.stack([a for _, a in recorder.sent])
    with_prefix = [r for r in requests if r.prefix is not None]
    assert len(with_prefix) >= 5
    # On a loaded machine a late tick can trip the watchdog, whose hold replaces the planned
    # action: such ticks ran something else by design and are left out of the comparison.
    overruled = {r.tick for r in records if r.safety}
    for request in with_prefix:
        frozen = request.prefix.frozen
        assert frozen >= 2
        ticks = range(request.start_tick, request.start_tick + frozen)
        planned = [a for t, a in zip(ticks, request.prefix.actions) if t not in overruled]
        ran = [sent[t] for t in ticks if t not in overruled]
        # the frozen prefix is exactly what the robot executed while the policy was thinking
        np.testing.assert_allclose(np.array(planned), np.array(ran), atol=1e-12)
    assert len(overruled) < len(records) / 4


def test_sync_waits_for_every_chunk_and_drops_nothing():
    loop, _, requests = make_loop("sync", delay=0.03, steps=24, execute_steps=4)
    [episode] = loop.run(1)
    loop.close()
    summary = loop.telemetry.summary()
    assert summary["dropped_actions"] == 0 and summary["held_ticks"] == 0
    assert len(requests) == 6 and summary["waited_s"] >= 6 * 0.03
    # 23 periods between 24 steps, and the robot stood still for each chunk after the first
    assert episode.wall_s >= 23 * DT + 5 * 0.03


def test_stale_observations_end_in_hold_within_two_periods():
    loop, recorder, _ = make_loop("receding", steps=40, fault="stale", fault_at=15)
    loop.run(1)
    loop.close()
    assert hold_after_onset(loop, recorder) <= 2 * DT + TICK_SLACK
    held = [r for r in loop.telemetry.records if "watchdog" in r.safety]
    assert held[-1].tick == 39 and len(held) >= 20  # and it keeps holding


def test_a_stalled_policy_ends_in_hold_within_two_periods():
    stall_tick = 12
    loop, recorder, _ = make_loop("receding", steps=40)
    loop.on_tick = lambda record, lp: record.tick == stall_tick and lp.worker.stall()
    loop.run(1)
    loop.close()
    records = loop.telemetry.records
    fresh = [r.tick for r in records if r.source == "policy"]
    first_missing = max(fresh) + 1
    # the first tick without a fresh action already sends the hold command...
    assert records[first_missing].source == "hold"
    assert all(r.source == "hold" for r in records[first_missing:])
    # ...and the watchdog's inference channel trips within two periods of the last action
    last_action = loop.start_time + records[max(fresh)].t
    tripped = next(r for r in records if "watchdog" in r.safety)
    assert loop.start_time + tripped.t - last_action <= 2 * DT + TICK_SLACK + DT


def test_a_dead_env_stops_the_loop_with_the_estop_latched():
    loop, recorder, _ = make_loop("receding", steps=40, fault="raise", fault_at=10)
    [episode] = loop.run(1)
    stopped_at = time.monotonic()
    loop.close()
    assert episode.stopped and "driver connection lost" in episode.stopped
    assert episode.steps == 10 and loop.env.safety.estopped
    assert stopped_at - recorder.onset < DT


def test_a_silent_driver_ends_in_hold_within_two_periods():
    loop, recorder, _ = make_loop("receding", steps=40, fault="held", fault_at=15)
    loop.run(1)
    loop.close()
    assert hold_after_onset(loop, recorder) <= 2 * DT + TICK_SLACK


def test_realtime_scheduling_is_used_when_allowed_and_explained_when_not():
    import os

    cpus = os.sched_getaffinity(0)
    loop, _, _ = make_loop("receding", steps=10, realtime_sched=True, cpu=min(cpus))
    [episode] = loop.run(1)
    loop.close()
    assert episode.steps == 10
    for problem in loop.rt_problems:  # e.g. not root: one line saying what to grant
        assert "CAP_SYS_NICE" in problem or "memlock" in problem or "CPU" in problem
    assert os.sched_getscheduler(0) == os.SCHED_OTHER and os.sched_getaffinity(0) == cpus
    status = Path("/proc/self/status").read_text().splitlines()
    locked = next(x for x in status if x.startswith("VmLck:"))
    assert locked.split()[1] == "0", f"memory still locked after the loop: {locked.strip()}"


def test_an_env_that_paces_itself_is_not_paced_twice():
    env = make("Reach", control_hz=HZ, max_episode_steps=30, realtime=True)  # as a ROS arm is
    loop = ControlLoop(env, StubPolicy(), LoopConfig(strategy="receding"))
    assert loop.paced_by_env
    [episode] = loop.run(1)
    loop.close()
    assert 29 * DT * 0.95 < episode.wall_s < 29 * DT * 1.5  # one period per step, not two
    summary = loop.telemetry.summary(skip_ticks=1)
    assert summary["lateness_ms"]["median"] < 1.0
    # the env's own period is not an overrun of ours (3 seen with both cores busy besides)
    assert summary["overruns"] <= 5


def test_a_loop_rate_the_env_does_not_step_at_is_refused():
    from robotrl.errors import RobotrlError

    with pytest.raises(RobotrlError, match="create the env with control_hz=100"):
        ControlLoop(make("Reach"), StubPolicy(), LoopConfig(hz=100.0))


def test_forecast_plans_chunks_for_the_tick_they_land():
    """With a forecast, a chunk requested at tick r is planned for tick r + d (d: the measured
    latency in ticks), so arrivals find their first action current instead of dropping d."""
    delay_ms = 50.0
    loop, _, requests = make_loop("receding", delay=delay_ms / 1e3, steps=80, forecast=True)
    loop.run(1)
    loop.close()
    records = loop.telemetry.records
    arrivals = [r for r in records if r.inference_ms is not None][1:]
    assert len(arrivals) >= 5
    assert_holds_only_wait_on_late_chunks(loop, delay_ms / 1e3)
    # a chunk landing later than the latency estimate said drops a little; of those within
    # twice the injected latency (a loaded machine stalls some), most drop nothing
    timely = [r for r in arrivals if r.inference_ms <= 2 * delay_ms]
    assert sum(r.dropped == 0 for r in timely) >= 0.75 * len(timely)
    assert all(r.window["observation.state"].shape[0] == 2 for r in requests)
