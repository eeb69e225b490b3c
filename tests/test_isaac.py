"""The Isaac Lab adapter's translation, against our stand-in (tests/isaac_standin.py): Isaac Lab
itself cannot be installed here, so none of this has run against Isaac Lab."""

import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from robotrl.errors import RobotrlError
from robotrl.sim.isaac import IsaacVectorEnv, to_torch
from tests.isaac_standin import DEFAULT_Q, SUCCESS_Q, StandinManagerBasedRLEnv

N = 4


def make(**kwargs) -> IsaacVectorEnv:
    wrapper_kwargs = {k: kwargs.pop(k) for k in ("robot", "safety", "cameras") if k in kwargs}
    return IsaacVectorEnv(StandinManagerBasedRLEnv(num_envs=N, **kwargs), **wrapper_kwargs)


def test_robot_spec_from_joint_position_terms():
    env = make()
    robot, spec = env.robot, env.robot.action
    assert spec.mode == "joint_pos" and spec.has_gripper and spec.dim == 8
    assert (
        spec.names[:2] == ("panda_joint1.pos", "panda_joint2.pos") and spec.names[-1] == "gripper"
    )
    assert spec.units[0] == "rad" and spec.units[-1] == "closed_fraction"
    # soft joint limits, narrowed by the term's clip on joint 1; the gripper is [0, 1]
    assert (spec.low[0], spec.high[0]) == (-1.0, 1.0)
    assert (spec.low[3], spec.high[3]) == pytest.approx((-3.07, -0.07))
    assert (spec.low[-1], spec.high[-1]) == (0.0, 1.0)
    assert robot.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert robot.control_hz == pytest.approx(50.0)  # 1 / (sim.dt 0.01 * decimation 2)
    assert robot.state_names[0] == "joint_pos.0" and robot.state_names[-1] == "episode_time"
    assert len(robot.state_names) == 10 and robot.robot_type.startswith("isaac:")


@pytest.mark.parametrize(
    "arm, mode, names",
    [
        ("joint_delta", "joint_delta", ("panda_joint1.delta",)),
        ("ik_rel", "ee_delta", ("ee.dx", "ee.dy", "ee.dz", "ee.drx", "ee.dry", "ee.drz")),
        ("ik_abs_pos", "ee_pos", ("ee.x", "ee.y", "ee.z")),
    ],
)
def test_robot_spec_modes(arm, mode, names):
    spec = make(arm=arm, gripper=False).robot.action
    assert spec.mode == mode and not spec.has_gripper
    assert spec.names[: len(names)] == names


@pytest.mark.parametrize("arm", ["ik_abs_pose", "to_limits"])
def test_unreadable_action_terms_are_one_clear_error(arm):
    with pytest.raises(RobotrlError) as e:
        make(arm=arm)
    assert "\n" not in str(e.value)


def test_direct_env_needs_a_robot_spec_and_then_passes_raw_actions():
    with pytest.raises(RobotrlError, match="robot=RobotSpec"):
        make(direct=True)
    described = make().robot
    names = tuple(f"obs.{k}" for k in range(10))
    with pytest.raises(RobotrlError, match="measured joints"):  # joint_pos must hold somewhere
        make(direct=True, robot=replace(described, state_names=names))
    described = make(arm="joint_delta").robot
    env = make(arm="joint_delta", direct=True, robot=replace(described, state_names=names))
    env.reset(seed=0)
    a = torch.zeros(N, 8)
    env.step(a)
    assert torch.equal(env.env.last_action, a)  # no affine map: the spec describes raw actions


def hold(env, joint1=None):
    """Joint targets at the measured joints (the gripper open); joint 1 set if given."""
    a = torch.zeros(N, 8)
    a[:, :7] = env._guard_state[:, 10:17]
    if joint1 is not None:
        a[:, 0] = joint1
    return a


def test_reset_and_step_shapes_and_dtypes():
    env = make()
    obs, info = env.reset(seed=0)
    assert obs["state"].shape == (N, 10) and obs["state"].dtype == torch.float32
    assert info["is_success"].shape == (N,) and info["is_success"].dtype == torch.bool
    obs, reward, terminated, truncated, info = env.step(hold(env))
    assert obs["state"].shape == (N, 10)
    assert reward.shape == (N,) and reward.dtype == torch.float32
    assert terminated.dtype == truncated.dtype == info["done"].dtype == torch.bool
    assert info["final_obs"]["state"].shape == (N, 10)
    assert set(obs) == set(env.single_observation_space.spaces)


def test_returned_tensors_are_not_overwritten_by_the_next_step():
    env = make(episode_length=1)  # every step times out
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(hold(env))
    kept = [t.clone() for t in (obs["state"], reward, terminated, truncated, info["done"])]
    env.env.scene["robot"].data.joint_pos[:, 0] = SUCCESS_Q + 0.1  # the next step differs
    env._guard_state[:, 10] = SUCCESS_Q + 0.1
    env.step(hold(env))
    now = (obs["state"], reward, terminated, truncated, info["done"])
    assert all(torch.equal(a, b) for a, b in zip(kept, now))


@pytest.mark.parametrize("arm", ["joint_delta", "ik_rel", "ik_abs_pos"])
def test_every_readable_arm_steps_behind_the_safety_layer(arm):
    env = make(arm=arm)
    env.reset(seed=0)
    far = torch.full((N, env.robot.action.dim), 5.0)  # beyond any step the layer allows
    obs, *_ = env.step(far)
    assert obs["state"].shape == (N, 10) and torch.isfinite(env.env.last_action).all()
    assert env.safety.last_interventions  # clipped somewhere


def test_same_seed_same_start():
    env = make()
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    assert torch.equal(first["state"], again["state"])


def test_terminated_and_truncated():
    env = make(episode_length=3)
    env.reset(seed=0)
    for _ in range(2):
        _, _, terminated, truncated, _ = env.step(hold(env))
        assert not terminated.any() and not truncated.any()
    _, _, terminated, truncated, info = env.step(hold(env))
    assert truncated.all() and not terminated.any() and info["done"].all()  # time-out
    # success ends an episode as terminated, with is_success; reaching it takes steps under
    # the safety layer's joint speed limit
    env = make(episode_length=40)
    env.reset(seed=0)
    for _ in range(30):
        _, _, terminated, truncated, info = env.step(hold(env, joint1=0.9))
        if terminated.any():
            break
    assert terminated.any() and not truncated.any()
    assert torch.equal(info["is_success"], terminated)


def test_time_out_and_success_together_is_terminated_and_finite_horizon_is_terminal():
    env = make(episode_length=1)
    env.reset(seed=0)
    # worlds 0, 1 start past the success line (the safety layer's measured joint 1 too)
    env.env.scene["robot"].data.joint_pos[:2, 0] = SUCCESS_Q + 0.1
    env._guard_state[:2, 10] = SUCCESS_Q + 0.1
    _, _, terminated, truncated, _ = env.step(hold(env, joint1=SUCCESS_Q + 0.1))
    assert terminated.tolist() == [True, True, False, False]
    assert truncated.tolist() == [False, False, True, True]
    env.finite_horizon = True
    _, _, terminated, truncated, _ = env.step(hold(env))
    assert terminated.all() and not truncated.any()


def test_final_observation_is_kept_on_auto_reset():
    env = make(episode_length=2)
    assert env.env.cfg.compute_final_obs  # the adapter turned Isaac's flag on
    env.reset(seed=0)
    env.step(hold(env))
    obs, _, _, truncated, info = env.step(hold(env))
    assert truncated.all() and env.final_obs_exact
    final = info["final_obs"]["state"]
    assert torch.allclose(final[:, -1], torch.full((N,), 2 * 0.02))  # the last episode's time
    assert torch.equal(obs["state"][:, -1], torch.zeros(N))  # the new episode's first obs
    assert not torch.equal(final, obs["state"])


def test_without_isaacs_final_obs_flag_final_obs_is_the_new_episode_and_says_so():
    with pytest.warns(UserWarning, match="final_obs"):
        env = make(episode_length=1, final_obs_flag=False)
    assert not env.final_obs_exact
    env.reset(seed=0)
    obs, _, _, _, info = env.step(hold(env))
    assert torch.equal(info["final_obs"]["state"], obs["state"])


def test_actions_reach_isaac_in_its_raw_units():
    env = make()
    env.reset(seed=0)
    a = hold(env)
    a[:, 1] += 0.01  # a small move: within every limit
    a[:2, 7] = 1.0  # worlds 0, 1 close the gripper
    env.step(a)
    arm, grip = env.env.action_manager.get_term("arm_action"), env.env.last_action[:, 7]
    # Isaac's term maps raw * 0.5 + default back to the joint targets we sent
    assert torch.allclose(arm.processed_actions, a[:, :7], atol=1e-5)
    assert not torch.allclose(env.env.last_action[:, :7], a[:, :7])  # raw differs from ours
    assert grip.tolist() == [-1.0, -1.0, 1.0, 1.0]  # Isaac's binary term: negative closes


def test_ik_actions_are_scaled_to_isaacs_raw_units():
    env = make(arm="ik_rel")
    env.reset(seed=0)
    a = torch.zeros(N, 7)
    a[:, 0] = 0.001
    env.step(a)
    assert torch.allclose(env.env.last_action[:, 0], torch.full((N,), 0.002))  # scale 0.5


def test_safety_layer_clips_a_batch_before_isaac_sees_it():
    env = make()
    env.reset(seed=0)
    a = hold(env)
    a[0, 0] = 2.5  # past the term's clip (and joint limit) on joint 1
    a[1, 3] = 0.5  # past joint 4's upper soft limit (-0.07)
    a[2, 1] = float("nan")  # a bad number: the whole row holds
    env.step(a)
    arm = env.env.action_manager.get_term("arm_action")
    sent = arm.processed_actions  # joint targets after Isaac's affine map
    assert sent[0, 0] <= 1.0 + 1e-5 and sent[1, 3] <= -0.07 + 1e-5
    assert torch.isfinite(env.env.last_action).all()
    q0 = torch.tensor(DEFAULT_Q[:7])
    assert torch.allclose(sent[2], q0, atol=0.05)  # held near where it was
    counts = env.safety.last_interventions
    assert counts.get("nan") == 1 and counts.get("action_limit", 0) >= 2


def test_camera_terms_become_images():
    env = make(camera=True, cameras=("wrist_rgb",))
    assert env.robot.cameras[0].name == "wrist_rgb" and env.robot.cameras[0].height == 4
    obs, _ = env.reset(seed=0)
    assert obs["images.wrist_rgb"].shape == (N, 4, 4, 3)
    assert obs["images.wrist_rgb"].dtype == torch.uint8
    assert obs["state"].shape == (N, 10)
    with pytest.raises(RobotrlError, match="no image term"):
        make(camera=True, cameras=("nope",))


def test_proxy_arrays_are_read_as_tensors():
    class Proxy:  # Isaac Lab 3's ProxyArray has a zero-copy `.torch` view
        torch = torch.ones(2)

    assert torch.equal(to_torch(Proxy()), torch.ones(2))


def test_missing_isaac_lab_is_one_line_naming_the_extra_and_python(monkeypatch):
    monkeypatch.setitem(sys.modules, "isaaclab_tasks", None)
    with pytest.raises(RobotrlError) as e:
        IsaacVectorEnv.make("Isaac-Lift-Cube-Franka-v0", 16)
    message = str(e.value)
    assert "\n" not in message and "robotrl[isaac]" in message and "Python 3.12" in message


def test_importing_the_adapter_does_not_import_isaac_lab():
    code = (
        "import sys, robotrl.sim.isaac; assert not any(m.startswith('isaac') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
