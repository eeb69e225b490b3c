"""`VectorRobotEnv` over CPU envs (`GymVectorRobotEnv`) and back to gymnasium (`as_gymnasium`)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from robotrl.errors import InvalidActionError, RobotrlError
from robotrl.tasks import make
from robotrl.vector_env import GymVectorRobotEnv, as_gymnasium


@pytest.fixture
def reach():
    env = GymVectorRobotEnv.for_task("Reach", 3)
    yield env
    env.close()


def test_world_i_starts_where_its_own_seeded_cpu_env_does(reach):
    obs, info = reach.reset(seed=4)
    assert obs["state"].dtype == torch.float32 and obs["state"].shape == (3, 15)
    assert not info["is_success"].any()
    for i in range(3):
        cpu = make("Reach")
        cpu.np_random = np.random.default_rng([4, i])
        expected, _ = cpu.reset()
        np.testing.assert_allclose(
            obs["environment_state"][i].numpy(), expected["environment_state"]
        )


def test_same_step_auto_reset_keeps_the_final_observation():
    from robotrl.control import safe

    envs = gym.vector.SyncVectorEnv(
        [lambda: safe(make("Reach", max_episode_steps=2)) for _ in range(2)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    env = GymVectorRobotEnv(envs)
    obs, _ = env.reset(seed=0)
    targets = obs["environment_state"].clone()
    env.step(torch.full((2, 7), 0.02))
    obs, _, _, truncated, info = env.step(torch.full((2, 7), 0.02))
    assert truncated.all() and info["done"].all()
    torch.testing.assert_close(info["final_obs"]["environment_state"], targets)
    assert (obs["environment_state"] - targets).abs().max() > 1e-3


def test_round_trip_through_gymnasium(reach):
    env = as_gymnasium(reach)
    assert env.action_space.shape == (3, 7)
    obs, _ = env.reset(seed=1)
    obs, reward, terminated, truncated, _ = env.step(np.zeros((3, 7), np.float32))
    assert obs["state"].shape == (3, 15) and reward.dtype == np.float32


def test_bad_input(reach):
    reach.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"expected \(3, 7\)"):
        reach.step(torch.zeros(2, 7))
    next_step = gym.vector.SyncVectorEnv(
        [lambda: make("Reach")], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP
    )
    with pytest.raises(RobotrlError, match="same step"):
        GymVectorRobotEnv(next_step)
