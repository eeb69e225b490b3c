"""The MuJoCo Warp backend (on Warp's CPU device): parity with the MuJoCo C env, the scripted
experts on many worlds at once, auto-reset and per-world seeding. The first run on a machine
compiles MuJoCo Warp's kernels (cached by Warp afterwards)."""

import numpy as np
import pytest
import torch

from robotrl.control import safe
from robotrl.errors import InvalidActionError, RobotrlError
from robotrl.tasks import make

pytest.importorskip("mujoco_warp")
from robotrl.tasks.warp_tasks import WorldExperts, make_warp_env  # noqa: E402
from robotrl.vector_env import as_gymnasium  # noqa: E402

pytestmark = pytest.mark.xdist_group("warp")  # one worker compiles and caches the kernels

TASKS = ("Reach", "Lift", "PushT", "PegInsert")
# free-space motions, before any contact: (ee_delta arm action, steps)
MOTION = {"Reach": 8, "Lift": 6, "PushT": 3, "PegInsert": 6}


@pytest.fixture(scope="module")
def envs():
    built = {}

    def get(task, n=4, **kwargs):
        key = (task, n, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = make_warp_env(task, n, **kwargs)
        return built[key]

    yield get
    for env in built.values():
        env.close()


@pytest.mark.parametrize("task", TASKS)
def test_world_zero_matches_the_cpu_env(envs, task):
    env = envs(task)
    obs, _ = env.reset(seed=11)
    cpu = safe(make(task))
    cpu.unwrapped.np_random = np.random.default_rng([11, 0])
    cpu_obs, _ = cpu.reset()
    np.testing.assert_allclose(
        obs["environment_state"][0].numpy(), cpu_obs["environment_state"], atol=1e-6
    )
    rng = np.random.default_rng(0)
    n_joints = len(env.template.arm.qpos_adr)
    for _ in range(MOTION[task]):
        action = (
            rng.uniform(-0.5, 0.5, env.robot.action.dim) * np.array(env.robot.action.high)
        ).astype(np.float32)
        action[:3] = np.abs(action[:3]) * [0.3, 0.3, 1.0]  # up and away from the objects
        if env.robot.action.has_gripper:
            action[-1] = 0.0
        cpu_obs, reward, _, _, _ = cpu.step(action)
        obs, rewards, _, _, _ = env.step(torch.as_tensor(np.tile(action, (env.num_envs, 1))))
        joints = obs["state"][0, :n_joints].numpy()
        assert np.abs(joints - cpu_obs["state"][:n_joints]).max() < 1e-5
        assert abs(float(rewards[0]) - reward) < 1e-4
    np.testing.assert_allclose(obs["state"][0].numpy(), cpu_obs["state"], atol=1e-4)


@pytest.mark.parametrize(
    ("task", "worlds"), [("Reach", 64), ("Lift", 64), ("PegInsert", 64), ("PushT", 8)]
)
def test_the_scripted_expert_succeeds_on_many_worlds_at_once(envs, task, worlds):
    env = envs(task, worlds)
    experts = WorldExperts(env)
    env.reset(seed=3)
    finished = torch.zeros(worlds, dtype=torch.bool)
    success = torch.zeros(worlds, dtype=torch.bool)
    while not finished.all():
        _, _, _, _, info = env.step(experts.actions())
        success |= info["is_success"] & info["done"] & ~finished
        finished |= info["done"]
        experts.reset(info["done"])
    assert success.float().mean() >= 0.95


def test_auto_reset_keeps_the_final_observation(envs):
    env = envs("Reach", 3, max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    first_targets = obs["environment_state"].clone()
    home = obs["state"].clone()
    env.step(torch.zeros(3, 7))
    obs, _, terminated, truncated, info = env.step(torch.full((3, 7), 0.02))
    assert truncated.all() and info["done"].all() and not terminated.any()
    torch.testing.assert_close(info["final_obs"]["environment_state"], first_targets)
    assert (info["final_obs"]["state"] - home).abs().max() > 1e-3  # the arm had moved
    torch.testing.assert_close(obs["state"], home, atol=1e-5, rtol=0)  # a new episode at home
    assert (obs["environment_state"] - first_targets).abs().max() > 1e-3  # new targets drawn
    assert (env.steps == 0).all()


def test_each_world_is_seeded_on_its_own(envs):
    three, five = envs("Lift", 3), envs("Lift", 5)
    a, _ = three.reset(seed=7)
    b, _ = five.reset(seed=7)
    torch.testing.assert_close(a["environment_state"], b["environment_state"][:3])
    again, _ = three.reset(seed=7)
    torch.testing.assert_close(again["environment_state"], a["environment_state"])
    other, _ = three.reset(seed=8)
    assert (other["environment_state"] - a["environment_state"]).abs().max() > 1e-3


def test_as_a_gymnasium_vector_env(envs):
    env = as_gymnasium(envs("Reach", 3, max_episode_steps=2))
    obs, _ = env.reset(seed=0)
    assert obs["state"].shape == (3, 15) and obs["state"].dtype == np.float32
    env.step(np.zeros((3, 7), np.float32))
    obs, reward, terminated, truncated, info = env.step(np.zeros((3, 7), np.float32))
    assert reward.shape == (3,) and truncated.all() and info["_final_obs"].all()
    assert info["final_obs"][0]["state"].shape == (15,)


def test_commands_pass_the_batched_safety_layer(envs):
    env = envs("Lift")
    env.reset(seed=0)
    env.safety.interventions.clear()
    env.step(torch.full((4, 7), 10.0))  # far past every limit
    assert env.safety.last_interventions["action_limit"] == 4


def test_bad_input_is_one_clear_error(envs):
    env = envs("Lift")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"expected \(4, 7\)"):
        env.step(torch.zeros(4, 6))
    with pytest.raises(RobotrlError, match="state observations only"):
        from robotrl.sim.warp_env import WarpVectorEnv
        from robotrl.tasks.warp_tasks import LiftWarp

        WarpVectorEnv(make("Lift", obs_mode="pixels"), LiftWarp, 2)


def test_residual_ppo_trains_on_warp_worlds_and_loads(tmp_path):
    import json

    from robotrl.cli.main import main
    from robotrl.policies.checkpoint import load_policy
    from tests.test_residual import tiny_base

    base = tiny_base(tmp_path / "base")
    run = tmp_path / "res"
    args = ["finetune", "residual", "--base", str(base), "--out", str(run), "--backend", "warp"]
    args += ["--envs", "4", "--steps", "64", "--rollout", "8", "--minibatch", "16"]
    args += ["--eval-every", "0", "--eval-episodes", "1", "--no-progress"]
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 64 and records[-1]["loss"] > 0
    assert load_policy(run).kind == "residual"


def test_warp_refuses_a_camera_base_and_unknown_backends():
    from types import SimpleNamespace

    from robotrl.rl.vector import vector_env_for

    camera_base = SimpleNamespace(config=SimpleNamespace(meta={}, image_keys=("images.front",)))
    cfg = SimpleNamespace(backend="warp", task="Lift", envs=2, robot="panda")
    with pytest.raises(RobotrlError, match="state observations only"):
        vector_env_for(camera_base, cfg)
    state_base = SimpleNamespace(config=SimpleNamespace(meta={}, image_keys=()))
    with pytest.raises(RobotrlError, match="unknown --backend 'bullet'"):
        vector_env_for(state_base, SimpleNamespace(**{**vars(cfg), "backend": "bullet"}))


def test_eval_runs_each_worlds_share_of_episodes(tmp_path, capsys):
    import json

    from robotrl.cli.main import main
    from tests.test_residual import tiny_base

    base = tiny_base(tmp_path / "base")
    args = ["eval", "--policy", str(base), "--backend", "warp", "--envs", "3", "--episodes", "4"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["episodes"] == 4 and result["policy"] == "diffusion"
    assert all(1 <= n <= 120 for n in result["lengths"])
    assert main([*args, "--video", str(tmp_path / "v.mp4")]) == 2  # one line, no traceback
    assert "records no video" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["joint_pos", "joint_delta", "ee_pos", "ee_delta"])
def test_every_action_mode_matches_the_cpu_controller(envs, mode):
    env = envs("Reach", 2, action_mode=mode)
    obs, _ = env.reset(seed=3)
    cpu = safe(make("Reach", action_mode=mode))
    cpu.unwrapped.np_random = np.random.default_rng([3, 0])
    cpu_obs, _ = cpu.reset()
    rng, n = np.random.default_rng(1), len(env.template.arm.qpos_adr)
    high = np.array(env.robot.action.high[:-1])
    for _ in range(10):
        if mode == "joint_pos":
            arm = cpu_obs["state"][:n] + rng.uniform(-0.05, 0.05, n)
        elif mode == "ee_pos":
            ee = cpu_obs["state"][n + 1 : n + 4]
            arm = np.concatenate([ee + rng.uniform(-0.01, 0.01, 3), rng.uniform(-0.05, 0.05, 3)])
        else:
            arm = rng.uniform(-0.5, 0.5, len(high)) * high
        action = np.append(arm, 0.0).astype(np.float32)
        cpu_obs, *_ = cpu.step(action)
        obs, *_ = env.step(torch.as_tensor(np.tile(action, (2, 1))))
        assert np.abs(obs["state"][0, :n].numpy() - cpu_obs["state"][:n]).max() < 1e-5
