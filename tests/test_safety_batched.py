"""The batched safety filter agrees with `Safety.filter`, world by world, in every mode."""

import numpy as np
import pytest
import torch

from robotrl.control.safety import Safety
from robotrl.control.safety_batched import BatchedSafety
from robotrl.control.safety_config import SafetyConfig, SafetyError
from robotrl.errors import InvalidActionError
from robotrl.tasks import make

N = 6


@pytest.fixture(scope="module", params=["ee_delta", "ee_pos", "joint_pos", "joint_delta"])
def robot_and_state(request):
    env = make("Lift", action_mode=request.param)
    obs, _ = env.reset(seed=0)
    env.close()
    return env.robot, obs["state"]


def test_batched_filter_matches_one_filter_per_world(robot_and_state):
    robot, state0 = robot_and_state
    box = {"workspace_low": (-0.2, -0.2, 0.05), "workspace_high": (0.3, 0.3, 0.4)}
    config = SafetyConfig.for_robot(robot, **(box if robot.action.mode.startswith("ee") else {}))
    batched = BatchedSafety(robot, N, config=config)
    singles = [Safety(robot, config) for _ in range(N)]
    rng = np.random.default_rng(0)
    low, high = np.array(robot.action.low), np.array(robot.action.high)
    span = np.where(np.isfinite(high - low), high - low, 2.0)
    for step in range(40):
        state = state0 + rng.normal(0, 0.05, (N, len(state0)))
        actions = low + span * rng.uniform(-0.3, 1.3, (N, len(low)))
        actions[rng.random(N) < 0.1, 0] = np.nan  # some rows are bad numbers
        if step == 20:  # worlds 0 and 3 start a new episode
            mask = torch.tensor([i in (0, 3) for i in range(N)])
            batched.reset(mask)
            singles[0].reset(), singles[3].reset()
        out = batched.filter(torch.tensor(actions, dtype=torch.float32), torch.tensor(state))
        for i, one in enumerate(singles):
            expected = one.filter(actions[i], state[i], now=0.0)
            np.testing.assert_allclose(out[i].numpy(), expected, atol=2e-5, rtol=1e-5)
    total = sum((one.interventions for one in singles), start=type(singles[0].interventions)())
    assert dict(batched.interventions) == {k: v for k, v in total.items() if v}
    assert batched.interventions["action_limit"] > 0


def test_estop_holds_every_world(robot_and_state):
    robot, state0 = robot_and_state
    batched = BatchedSafety(robot, N)
    state = torch.tensor(np.tile(state0, (N, 1)))
    hold = batched.filter(torch.zeros(N, robot.action.dim), state)
    batched.estop("test")
    out = batched.filter(torch.full((N, robot.action.dim), 0.5), state)
    torch.testing.assert_close(out, hold)
    assert batched.last_interventions == {"estop": N}


def test_wrong_shape_is_one_clear_error(robot_and_state):
    robot, _ = robot_and_state
    with pytest.raises(InvalidActionError, match="expected"):
        BatchedSafety(robot, N).filter(torch.zeros(N + 1, robot.action.dim), torch.zeros(N, 3))


def test_absolute_mode_without_a_position_refuses_to_guess():
    env = make("Lift", action_mode="ee_pos")
    obs, _ = env.reset(seed=0)
    state = torch.tensor(np.tile(obs["state"], (2, 1)))
    state[1, :] = torch.nan
    with pytest.raises(SafetyError, match="cannot hold"):
        BatchedSafety(env.robot, 2).filter(torch.zeros(2, env.robot.action.dim), state)
