"""The safety layer's holds and counts: the watchdog (stale observations, stalled inference,
a silent driver), the e-stop, exact intervention counts, and `SafeEnv` around a real task.
The fuzzing of every limit is in `test_safety.py`."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from robotrl.control import (
    DRIVER_DEAD,
    INFERENCE_STALL,
    KINDS,
    STALE_OBSERVATION,
    Safety,
    SafetyConfig,
    SafetyError,
    Watchdog,
    safe,
)
from robotrl.errors import InvalidActionError
from robotrl.tasks import make, make_expert
from tests.test_safety import MODES, robot_spec


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
