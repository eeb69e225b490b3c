"""The env contract (ARCHITECTURE.md): gymnasium API, spaces, determinism, robot spec."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robotrl
from robotrl.tasks import TASKS, make

ALL = [(t, r) for t in TASKS for r in ("panda", "ur5e")]


@pytest.mark.parametrize("task,robot", ALL)
def test_check_env(task, robot):
    env = make(task, robot=robot)
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task,robot", ALL)
def test_same_seed_same_actions_same_observations(task, robot):
    def run(seed):
        env = make(task, robot=robot)
        rng = np.random.default_rng(123)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for _ in range(25):
            trace.append(env.step(rng.uniform(env.action_space.low, env.action_space.high))[0])
        return trace

    a, b, c = run(7), run(7), run(8)
    for oa, ob in zip(a, b):
        for key in oa:
            np.testing.assert_array_equal(oa[key], ob[key])
    assert not np.array_equal(a[0]["environment_state"], c[0]["environment_state"])


@pytest.mark.parametrize("task", TASKS)
def test_robot_spec_describes_env(task):
    env = make(task, robot="ur5e")
    spec = env.robot
    obs, info = env.reset(seed=0)
    assert spec.robot_type == "ur5e" and len(spec.joint_names) == 6
    assert obs["state"].shape == (len(spec.state_names),)
    assert obs["environment_state"].shape == (len(spec.environment_state_names),)
    assert env.action_space.shape == (spec.action.dim,)
    assert len(spec.action.units) == spec.action.dim
    assert spec.ctrl_dt == pytest.approx(1 / spec.control_hz)
    assert info["is_success"] is False


def test_gymnasium_make_and_vector_env():
    env = gym.make("robotrl/Lift-v0", robot="panda")
    assert env.unwrapped.robot.control_hz == 20
    env.close()
    venv = gym.vector.SyncVectorEnv([lambda: robotrl.make("Reach") for _ in range(2)])
    obs, _ = venv.reset(seed=0)
    assert obs["state"].shape[0] == 2
    obs, reward, term, trunc, info = venv.step(venv.action_space.sample())
    assert reward.shape == (2,)
    venv.close()


@pytest.mark.parametrize("hz,substeps", [(10, 50), (20, 25), (100, 5), (500, 1)])
def test_control_rate_sets_substeps(hz, substeps):
    env = make("Reach", control_hz=hz)
    env.reset(seed=0)
    t0 = env.data.time
    env.step(np.zeros(env.action_space.shape))
    assert env.n_substeps == substeps
    assert env.data.time - t0 == pytest.approx(1 / hz)


def test_pixels_observation():
    env = make("Lift", obs_mode="state+pixels", image_size=(64, 80))
    obs, _ = env.reset(seed=0)
    for cam in ("front", "wrist"):
        img = obs[f"images.{cam}"]
        assert img.shape == (64, 80, 3) and img.dtype == np.uint8
        assert img.std() > 5, f"{cam} image is flat"
    assert env.observation_space.contains(obs)
    env.close()


def test_realtime_paces_to_wall_clock():
    import time

    env = make("Reach", control_hz=20, realtime=True)
    env.reset(seed=0)
    t = time.monotonic()
    for _ in range(10):
        env.step(np.zeros(env.action_space.shape))
    assert 0.45 <= time.monotonic() - t < 0.8


def test_sparse_and_dense_rewards():
    dense, sparse = make("Reach"), make("Reach", reward_type="sparse")
    dense.reset(seed=0)
    sparse.reset(seed=0)
    a = np.zeros(dense.action_space.shape)
    r_dense, r_sparse = dense.step(a)[1], sparse.step(a)[1]
    assert 0 < r_dense < 1 and r_sparse == 0.0
