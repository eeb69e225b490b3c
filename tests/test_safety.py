"""The safety layer (`robotrl.control`): nothing outside the configured limits reaches an env.

How each property is checked:

- `Limits` below restates every limit independently of `Safety` (as intervals around the hold
  command: "stopping is always allowed") and checks one sent command against the previous one
  and the observation the filter saw: finite; action limits; gripper range; joint limits
  (`joint_pos` targets, `joint_delta` measured joint + delta); change per step; joint velocity
  and acceleration (with dt = 1 / control_hz); predicted end-effector position `ee + delta`
  (`ee_delta`) or the commanded one (`ee_pos`) inside the workspace box (or, from outside it,
  no further out); and NaN/inf or an unusable observation -> exactly the hold command.
- Pure filter fuzz: hypothesis draws the plan (a kind of action for each run of 10 steps:
  valid, on the edge, outside, ±1e30, NaN/±inf, sign flip of the last action, repeat, zero,
  small moves; plus its own float values injected anywhere, default or tight config) and a
  seed; numpy expands it into 400 actions and a random-walk observation that leaves the
  limits and the workspace box. Every output goes through `Limits`; the NaN count is exact.
- Real env fuzz: the same plans drive `SafeEnv(Recorder(make("Reach", action_mode=...)))`; the
  recorder keeps what the MuJoCo env actually received, and that is what `Limits` checks
  (the env's own `check_action` also raises on any NaN that got through).
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robotrl.control import (
    DRIVER_DEAD,
    INFERENCE_STALL,
    KINDS,
    STALE_OBSERVATION,
    SafeEnv,
    Safety,
    SafetyConfig,
    SafetyError,
    Watchdog,
    safe,
)
from robotrl.errors import InvalidActionError
from robotrl.tasks import make, make_expert

MODES = ("ee_delta", "ee_pos", "joint_delta", "joint_pos")
ACTION_KINDS = (
    "valid",
    "edge",
    "outside",
    "huge",
    "nonfinite",
    "flip",
    "repeat",
    "zero",
    "small",
)
RUN = 10  # steps per planned kind of action
PURE_RUNS, PURE_EXAMPLES = 40, 63  # 400 actions x 63 examples x 4 modes = 100,800
ENV_RUNS, ENV_EXAMPLES = 10, 12  # 100 real env steps x 12 examples x 4 modes = 4,800
TOL = 1e-9
JOINT_LOW = np.array([-2.9, -1.8, -2.9, -3.1, -2.9, -0.02, -2.9])  # Panda, rounded out
JOINT_HIGH = np.array([2.9, 1.8, 2.9, -0.07, 2.9, 3.8, 2.9])
NO_DB = {"database": None, "deadline": None}  # no example database in the checkout


@functools.cache
def robot_spec(mode: str, robot: str = "panda"):
    env = make("Reach", robot=robot, action_mode=mode)
    env.close()
    return env.robot


def tight_config(robot) -> SafetyConfig:
    """Limits that bind often, so every clip is exercised (the defaults are generous)."""
    spec, n = robot.action, len(robot.joint_names)
    span = np.subtract(spec.high, spec.low)
    home = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, math.pi / 4])[:n]
    extra = {}
    if spec.mode == "joint_delta":
        extra = {"joint_low": home - 0.4, "joint_high": home + 0.4}
    if spec.mode == "joint_pos":
        extra = {"joint_low": np.maximum(home - 0.6, spec.low[:n]), "joint_high": home + 0.6}
    return SafetyConfig.for_robot(
        robot,
        max_step=span * 0.2,
        max_joint_velocity=1.0,
        max_joint_acceleration=8.0,
        gripper_low=0.1,
        gripper_high=0.8,
        workspace_low=(-0.12, -0.12, 0.15),
        workspace_high=(0.12, 0.12, 0.42),
        **extra,
    )


class Limits:
    """An independent statement of what may be sent, checked one command at a time."""

    def __init__(self, robot, cfg: SafetyConfig):
        self.robot, self.cfg = robot, cfg
        spec = robot.action
        self.mode, self.dim = spec.mode, spec.dim
        self.n = self.dim - (spec.names[-1] == "gripper")
        self.dt = 1.0 / cfg.control_hz
        names = robot.state_names
        self.q_idx = [names.index(f"{j}.pos") for j in robot.joint_names]
        self.ee_idx = [names.index(f"ee.{a}") for a in "xyz"]
        self.g_idx = names.index("gripper.opening") if "gripper.opening" in names else None
        self.reset()

    def reset(self):
        self.prev = None  # last command sent
        self.vel = np.zeros(self.n)

    def hold(self, state) -> np.ndarray:
        n, hold = self.n, np.zeros(self.dim)
        if self.prev is not None:
            hold[n:] = self.prev[n:]
            if self.mode == "joint_pos":
                hold[:n] = self.prev[:n]
            if self.mode == "ee_pos":
                hold[:3] = self.prev[:3]
            return hold
        if self.mode == "ee_pos":
            hold[:3] = np.clip(state[self.ee_idx], self.cfg.low[:3], self.cfg.high[:3])
        if self.mode == "joint_pos":
            lo = np.maximum(self.cfg.low[:n], self.cfg.joint_low)
            hi = np.minimum(self.cfg.high[:n], self.cfg.joint_high)
            hold[:n] = np.clip(state[self.q_idx], lo, hi)
        if self.n < self.dim:
            closed = 1.0 - state[self.g_idx]
            closed = closed if np.isfinite(closed) else 0.0
            hold[n] = np.clip(closed, self.cfg.gripper_low, self.cfg.gripper_high)
        return hold

    def check(self, raw, out, state) -> bool:
        """Assert `out` is legal; return whether it is the hold command for a bad input."""
        cfg, n, dt = self.cfg, self.n, self.dt
        out, raw = np.asarray(out, np.float64), np.asarray(raw, np.float64)
        hold = self.hold(state)
        prev = self.prev if self.prev is not None else hold
        assert out.shape == (self.dim,) and np.isfinite(out).all(), out

        def within(x, lo, hi, what):
            ok = (x >= np.asarray(lo) - TOL) & (x <= np.asarray(hi) + TOL)
            assert ok.all(), f"{what}: {x} not in [{lo}, {hi}] (raw {raw}, prev {self.prev})"

        ee_checked = self.mode in ("ee_delta", "ee_pos") and cfg.workspace_low is not None
        needs = list(self.ee_idx) if ee_checked else []
        if self.mode == "joint_delta" and cfg.joint_low is not None:
            needs += self.q_idx
        held = not np.isfinite(raw).all() or not np.isfinite(state[needs]).all()
        if held:
            np.testing.assert_array_equal(out, hold)

        within(out[:n], cfg.low[:n], cfg.high[:n], "action limits")
        if n < self.dim:
            within(
                out[n],
                max(cfg.gripper_low, cfg.low[n]),
                min(cfg.gripper_high, cfg.high[n]),
                "gripper",
            )
        step = np.asarray(cfg.max_step)
        within(
            out, np.minimum(prev - step, hold), np.maximum(prev + step, hold), "max change per step"
        )
        if self.mode == "joint_pos":
            within(out[:n], cfg.joint_low, cfg.joint_high, "joint limits")
        if self.mode == "joint_delta" and cfg.joint_low is not None and not held:
            q = state[self.q_idx]
            within(
                q + out[:n], np.minimum(cfg.joint_low, q), np.maximum(cfg.joint_high, q), "joints"
            )
        if self.mode in ("joint_pos", "joint_delta"):
            v = (out[:n] - hold[:n]) / dt  # hold is 0 for deltas, the last target for positions
            within(np.abs(v), 0.0, np.asarray(cfg.max_joint_velocity) + TOL / dt, "joint velocity")
            dv = np.asarray(cfg.max_joint_acceleration) * dt
            lo, hi = (
                np.minimum(self.vel - dv, 0.0) - TOL / dt,
                np.maximum(self.vel + dv, 0.0) + TOL / dt,
            )
            within(v, lo, hi, "joint acceleration")
            self.vel = v
        elif cfg.workspace_low is not None and not held:
            lo, hi = np.asarray(cfg.workspace_low), np.asarray(cfg.workspace_high)
            if self.mode == "ee_pos":  # the target itself, from outside no further out
                within(out[:3], np.minimum(lo, hold[:3]), np.maximum(hi, hold[:3]), "workspace")
            else:
                ee = state[self.ee_idx]
                within(ee + out[:3], np.minimum(lo, ee), np.maximum(hi, ee), "workspace after")
        self.prev = out.copy()
        return held


def make_action(kind, rng, spec, prev_raw, prev_out) -> np.ndarray:
    low, high = np.array(spec.low), np.array(spec.high)
    span, dim = high - low, spec.dim
    if kind == "valid":
        return rng.uniform(low, high)
    if kind == "edge":
        return np.where(rng.random(dim) < 0.5, low, high)
    if kind == "outside":
        return rng.uniform(low - 3 * span, high + 3 * span)
    if kind == "huge":
        a = rng.uniform(low, high)
        mask = rng.random(dim) < 0.5
        mask[rng.integers(dim)] = True
        a[mask] = rng.choice([-1e30, 1e30], mask.sum())
        return a
    if kind == "nonfinite":
        a = rng.uniform(low, high)
        idx = rng.choice(dim, rng.integers(1, 4), replace=False)
        a[idx] = rng.choice([np.nan, np.inf, -np.inf], len(idx))
        return a
    if kind == "flip":
        return -prev_raw
    if kind == "repeat":
        return prev_raw.copy()
    if kind == "zero":
        return np.zeros(dim)
    # small: near the last command sent (mostly legal, so long unclipped stretches happen too)
    return prev_out + rng.normal(0.0, 0.05, dim) * span


def plan_strategy(runs: int):
    nasty = st.floats(allow_nan=True, allow_infinity=True, width=64)
    return st.fixed_dictionaries(
        {
            "kinds": st.lists(st.sampled_from(ACTION_KINDS), min_size=runs, max_size=runs),
            "seed": st.integers(0, 2**32 - 1),
            "tight": st.booleans(),
            # hypothesis' own floats (subnormals, -0.0, 1e308, NaN ...) written anywhere
            "inject": st.lists(
                st.tuples(st.integers(0, runs * RUN - 1), st.integers(0, 7), nasty), max_size=12
            ),
        }
    )


def actions_of(plan, spec, rng):
    """Yield (step, raw action) for a plan; needs the last output sent back via `.send`."""
    prev_raw = prev_out = np.zeros(spec.dim)
    inject = {}
    for step, entry, value in plan["inject"]:
        inject.setdefault(step, []).append((entry % spec.dim, value))
    for step in range(len(plan["kinds"]) * RUN):
        raw = make_action(plan["kinds"][step // RUN], rng, spec, prev_raw, prev_out)
        for entry, value in inject.get(step, ()):
            raw[entry] = value
        prev_out = yield step, raw
        prev_raw = raw


@pytest.mark.parametrize("mode", MODES)
def test_filter_fuzz_never_sends_outside_limits(mode):
    robot = robot_spec(mode)
    configs = {False: SafetyConfig.for_robot(robot), True: tight_config(robot)}
    names = robot.state_names
    q_idx = [names.index(f"{j}.pos") for j in robot.joint_names]
    ee_idx = [names.index(f"ee.{a}") for a in "xyz"]
    totals = Counter()

    @settings(max_examples=PURE_EXAMPLES, suppress_health_check=list(HealthCheck), **NO_DB)
    @given(plan=plan_strategy(PURE_RUNS))
    def run(plan):
        rng = np.random.default_rng(plan["seed"])
        cfg = configs[plan["tight"]]
        safety, limits = Safety(robot, cfg), Limits(robot, cfg)
        state = np.zeros(len(names))
        state[q_idx] = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, math.pi / 4]
        state[ee_idx] = [0.0, 0.0, 0.3]
        state[names.index("gripper.opening")] = 1.0
        bad_inputs, gen = 0, actions_of(plan, robot.action, rng)
        step, raw = next(gen)
        while True:
            # The observation wanders past the joint limits and the workspace box; after the
            # first step it is sometimes NaN (a broken sensor).
            q = state[q_idx] + rng.normal(0, 0.05, len(q_idx))
            state[q_idx] = np.clip(q, JOINT_LOW - 0.2, JOINT_HIGH + 0.2)
            state[ee_idx] = np.clip(state[ee_idx] + rng.normal(0, 0.03, 3), -0.3, 0.5)
            seen = state.copy()
            if step and rng.random() < 0.02:
                seen[rng.choice(len(seen), 2)] = np.nan
            out = safety.filter(raw, {"state": seen}, now=0.0)
            bad_inputs += limits.check(raw, out, seen)
            try:
                step, raw = gen.send(out)
            except StopIteration:
                break
        assert safety.interventions["nan"] == bad_inputs
        totals["actions"] += step + 1
        totals.update(safety.interventions)

    run()
    print(f"\n{mode}: {totals['actions']} actions fuzzed through the pure filter; {dict(totals)}")
    assert totals["actions"] >= PURE_EXAMPLES * PURE_RUNS * RUN


@pytest.mark.parametrize("mode", MODES)
def test_env_fuzz_only_safe_commands_reach_mujoco(mode):
    class Recorder(gym.Wrapper):
        def step(self, action):
            self.sent = np.array(action, copy=True)
            return self.env.step(action)

    inner = Recorder(make("Reach", action_mode=mode, max_episode_steps=10_000))
    robot = inner.unwrapped.robot
    configs = {False: SafetyConfig.for_robot(robot), True: tight_config(robot)}
    ee_idx = [robot.state_names.index(f"ee.{a}") for a in "xyz"]
    totals, overshoot = Counter(), [0.0]

    @settings(max_examples=ENV_EXAMPLES, suppress_health_check=list(HealthCheck), **NO_DB)
    @given(plan=plan_strategy(ENV_RUNS))
    def run(plan):
        cfg = configs[plan["tight"]]
        env = SafeEnv(inner, cfg)
        limits = Limits(robot, cfg)
        obs, _ = env.reset(seed=plan["seed"] % 1000)
        bad_inputs, gen = 0, actions_of(plan, robot.action, np.random.default_rng(plan["seed"]))
        step, raw = next(gen)
        while True:
            seen = obs["state"].astype(np.float64)
            obs, *_ = env.step(raw)
            bad_inputs += limits.check(raw, inner.sent, seen)
            if mode == "ee_delta":  # where the arm really went, not just the prediction
                ee = obs["state"][ee_idx]
                out_by = np.maximum(cfg.workspace_low - ee, ee - cfg.workspace_high).max()
                overshoot[0] = max(overshoot[0], out_by)
            try:
                step, raw = gen.send(inner.sent)
            except StopIteration:
                break
        assert env.safety.interventions["nan"] == bad_inputs
        totals["actions"] += step + 1
        totals.update(env.safety.interventions)

    run()
    print(
        f"\n{mode}: {totals['actions']} actions fuzzed through SafeEnv into MuJoCo; {dict(totals)}"
        + (
            f"; measured ee overshoot past the box {overshoot[0] * 1000:.1f} mm"
            if mode == "ee_delta"
            else ""
        )
    )
    assert totals["actions"] >= ENV_EXAMPLES * ENV_RUNS * RUN
    if mode == "ee_delta":
        # Not asserted, measured: the box bounds the *command* (measured ee + delta). The sim's
        # ee_delta controller adds deltas to its own target, which leads the measured pose by
        # up to MAX_LEAD_POS, and its IK step drifts near joint limits, so the arm itself can
        # end up past the box (2-5 cm typical, ~14 cm worst seen under this fuzz).
        assert overshoot[0] < 1.0


# ---- watchdog --------------------------------------------------------------------------
def ee_state(robot, ee=(0.0, 0.0, 0.3), opening=1.0) -> dict:
    state = np.zeros(len(robot.state_names))
    names = robot.state_names
    state[[names.index("ee.x"), names.index("ee.y"), names.index("ee.z")]] = ee
    state[names.index("gripper.opening")] = opening
    q = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, math.pi / 4]
    state[[names.index(f"{j}.pos") for j in robot.joint_names]] = q
    return {"state": state}


def good_action(mode: str, robot) -> np.ndarray:
    if mode == "joint_pos":
        return np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, math.pi / 4, 0.7])
    if mode == "ee_pos":
        return np.array([0.01, 0.0, 0.3, 0.01, 0.01, 0.01, 0.7])
    return np.append(np.full(robot.action.dim - 1, 0.01), 0.7)


def feed(watchdog: Watchdog, t: float, skip: str | None = None) -> None:
    if skip != STALE_OBSERVATION:
        watchdog.observation_received(t)
    if skip != INFERENCE_STALL:
        watchdog.inference_done(t)
    if skip != DRIVER_DEAD:
        watchdog.driver_heartbeat(t)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("condition", [STALE_OBSERVATION, INFERENCE_STALL, DRIVER_DEAD])
def test_watchdog_holds_within_two_control_periods_and_resumes(condition, mode):
    robot = robot_spec(mode)
    safety = Safety(robot)  # default timeouts: two control periods
    obs, action, period = ee_state(robot), good_action(mode, robot), safety.dt
    t = 0.0
    for k in range(20):  # healthy loop: every channel reports each period, commands pass
        t = 1000.0 + k * period
        feed(safety.watchdog, t)
        np.testing.assert_allclose(safety.filter(action, obs, now=t), action)
    last_good = t
    # The channel under test goes silent; the clock ticks in 1/50 periods, the others report.
    hold = np.append(np.zeros(robot.action.dim - 1), 0.7)
    if mode == "joint_pos":
        hold = action
    if mode == "ee_pos":
        hold[:3] = action[:3]
    trip, held = None, 0
    for i in range(1, 500):
        now = last_good + i * period / 50
        feed(safety.watchdog, now, skip=condition)
        out = safety.filter(action, obs, now=now)
        if safety.tripped:
            assert safety.tripped == (condition,)
            np.testing.assert_array_equal(out, hold)
            trip = trip if trip is not None else (now - last_good) / period
            held += 1
            if held == 20:
                break
        else:
            assert trip is None
            np.testing.assert_allclose(out, action)
    print(f"\n{condition} ({mode}): held {trip:.2f} control periods after the last good event")
    assert trip is not None and trip <= 2.0 + 1e-9
    assert safety.interventions == Counter(watchdog=20)
    # The condition clears: the next command goes through again.
    feed(safety.watchdog, now + period / 50)
    np.testing.assert_allclose(safety.filter(action, obs, now=now + period / 50), action)
    assert safety.tripped == ()


def test_watchdog_stale_by_age_and_unwatched_channels():
    wd = Watchdog(0.1, 0.1, 0.1)
    assert wd.check(1e9) == ()  # no channel reported yet: nothing is watched
    wd.observation_received(10.0, age=0.1)  # arrives on time but was captured 0.1 s ago
    assert wd.check(10.0) == (STALE_OBSERVATION,)
    wd.observation_received(10.05)
    assert wd.check(10.1) == ()
    wd.observation_received(9.0)  # a late, out-of-order delivery does not age the freshest
    assert wd.check(10.1) == ()
    wd.driver_heartbeat(10.0)
    assert wd.check(math.nan) == (STALE_OBSERVATION, DRIVER_DEAD)  # a broken clock trips


def test_latched_watchdog_needs_an_operator_reset():
    robot = robot_spec("ee_delta")
    safety = Safety(robot, SafetyConfig.for_robot(robot, latch_watchdog=True))
    obs, action = ee_state(robot), good_action("ee_delta", robot)
    feed(safety.watchdog, 0.0)
    safety.filter(action, obs, now=0.0)
    safety.filter(action, obs, now=1.0)  # everything silent for 20 periods
    assert safety.estopped and "watchdog" in safety.estop_reason
    feed(safety.watchdog, 1.0)
    assert not safety.filter(action, obs, now=1.0)[:6].any()  # still held: latched
    safety.reset_estop()
    np.testing.assert_allclose(safety.filter(action, obs, now=1.0), action)


# ---- e-stop ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_estop_latches_until_reset(mode):
    robot = robot_spec(mode)
    safety = Safety(robot)
    obs, action = ee_state(robot), good_action(mode, robot)
    first = safety.filter(action, obs, now=0.0)
    safety.estop("operator pressed the e-stop")
    hold = first if mode == "joint_pos" else np.append(np.zeros(robot.action.dim - 1), 0.7)
    if mode == "ee_pos":  # the last target, no rotation
        hold[:3] = first[:3]
    rng = np.random.default_rng(0)
    for i in range(1000):
        wild = rng.normal(0, 10, robot.action.dim) if i % 2 else action
        np.testing.assert_array_equal(safety.filter(wild, obs, now=i * safety.dt), hold)
    assert safety.interventions == Counter(estop=1000)
    safety.reset()  # a new episode does not release the e-stop (it holds where obs says)
    after_reset = np.append(action[:-1] if mode == "joint_pos" else np.zeros(len(action) - 1), 0)
    if mode == "ee_pos":  # the measured end-effector position
        after_reset[:3] = obs["state"][[robot.state_names.index(f"ee.{a}") for a in "xyz"]]
    np.testing.assert_array_equal(safety.filter(action, obs, now=1e3), after_reset)
    assert safety.interventions == Counter(estop=1001)
    assert safety.estop_reason == "operator pressed the e-stop"
    safety.reset_estop()
    np.testing.assert_allclose(safety.filter(action, obs, now=1e3), action)


# ---- exact counts ----------------------------------------------------------------------
def test_intervention_counts_are_exact_for_a_script():
    robot = robot_spec("ee_delta")
    safety = Safety(robot)  # defaults: max change 0.025 m per step (half the range)
    inside, floor = ee_state(robot), ee_state(robot, ee=(0.0, 0.0, 0.001))
    nan, inf = math.nan, math.inf
    script = [  # (action, obs, what the filter must count)
        ([0.01, 0, 0, 0, 0, 0, 0], inside, {}),
        ([nan, 0, 0, 0, 0, 0, 0], inside, {"nan": 1}),
        ([0.01, 0, 0, 0, 0, 0, 0], inside, {}),
        ([0, 0, 0, inf, 0, 0, 0], inside, {"nan": 1}),
        ([1e30, 0, 0, 0, 0, 0, 0], inside, {"action_limit": 1}),
        ([0.02, 0, 0, 0, 0, 0, 1.5], inside, {"gripper": 1}),
        ([-0.025, 0, 0, 0, 0, 0, 1.0], inside, {"rate_limit": 1}),  # sign flip
        ([0, 0, 0, 0, 0, 0, nan], inside, {"nan": 1}),
        ([0, 0, -0.02, 0, 0, 0, 1.0], floor, {"workspace": 1}),  # 1 mm above the table
        ([0, 0, 0, 0, 0, 0, 1.0], floor, {}),
    ]
    for action, obs, expected in script:
        out = safety.filter(action, obs, now=0.0)
        assert safety.last_interventions == expected, (action, out)
    np.testing.assert_allclose(out, [0, 0, 0, 0, 0, 0, 1.0])
    assert safety.interventions == Counter(
        nan=3, action_limit=1, gripper=1, rate_limit=1, workspace=1
    )
    report = safety.report().splitlines()
    assert len(report) == len(KINDS) and report[0].split() == ["nan", "3"]


def test_joint_counts_are_exact_for_a_script():
    robot = robot_spec("joint_delta")
    safety = Safety(robot, SafetyConfig.for_robot(robot, max_joint_velocity=1.0))  # 0.05 rad/step
    obs = ee_state(robot)
    script = [
        ([0.1] * 7 + [0], {"velocity": 1}),  # 2 rad/s asked, 1 allowed
        ([-0.05] * 7 + [0], {"acceleration": 1}),  # +1 -> -1 rad/s in one period: braked to 0
        ([-0.05] * 7 + [0], {}),  # from standstill to full speed: allowed
    ]
    for action, expected in script:
        out = safety.filter(action, obs, now=0.0)
        assert safety.last_interventions == expected, (action, out)
    assert safety.interventions == Counter(velocity=1, acceleration=1)


# ---- the wrapper on a real episode -----------------------------------------------------
def test_lift_expert_succeeds_through_safe_env_untouched():
    env = safe(make("Lift", robot="panda"))
    expert = make_expert(env)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        expert.reset()
        assert info["safety"] == {}
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.select_action(obs))
            assert info["safety"] == {}
            done = terminated or truncated
        assert info["is_success"], f"seed {seed}"
    assert sum(env.safety.interventions.values()) == 0, env.safety.report()


def test_safe_env_holds_nan_and_keeps_estop_across_reset():
    env = safe(make("Reach"), workspace_low=(-0.2, -0.2, 0.05))
    assert env.safety.config.workspace_low == (-0.2, -0.2, 0.05)
    with pytest.raises(SafetyError):
        env.step(np.zeros(7))  # no observation yet
    env.reset(seed=0)
    _, _, _, _, info = env.step([math.nan] * 7)  # the env's check_action would raise on NaN
    assert info["safety"] == {"nan": 1}
    env.safety.estop("test")
    env.reset(seed=1)
    assert env.step(np.full(7, 0.01))[4]["safety"] == {"estop": 1}
    with pytest.raises(InvalidActionError):
        env.step(np.zeros(3))


def test_config_errors_are_one_line():
    robot = robot_spec("ee_delta")
    for bad in (
        {"max_step_size": 1},
        {"workspace_low": (1, 1, 1), "workspace_high": (0, 0, 0)},
        {"gripper_high": 2.0},
        {"observation_timeout": 0},
        {"max_step": [1, 2]},
    ):
        with pytest.raises(SafetyError) as err:
            SafetyConfig.for_robot(robot, **bad)
        assert "\n" not in str(err.value)
