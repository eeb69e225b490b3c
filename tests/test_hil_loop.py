"""The simulated human, the intervention wrapper, demos into buffers, and the HIL loops
(SAC and ConRFT), on real MuJoCo physics."""

import json

import numpy as np
import pytest
import torch

from robotrl.cli.main import main
from robotrl.control import safe
from robotrl.rl.interventions import InterventionWrapper
from robotrl.rl.sim_human import SimHuman

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    from robotrl.collect import CollectConfig, collect

    out = tmp_path_factory.mktemp("demos") / "lift"
    collect(CollectConfig(task="Lift", teleop="expert", episodes=3, out=str(out)))
    return out


def run(env, policy, seed):
    obs, _ = env.reset(seed=seed)
    flags = []
    while True:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        flags.append(info["intervention"])
        if terminated or truncated:
            return np.array(flags), info


def test_sim_human_takes_over_a_policy_that_goes_off_course():
    import robotrl

    env = robotrl.make("Lift")
    wrapped = InterventionWrapper(safe(env), SimHuman(env, seed=0))
    away = np.array([-1, 0, 1, 0, 0, 0, 0], np.float32) * 0.025  # drifts off, up and back
    flags, info = run(wrapped, lambda obs: away, seed=1)
    first = int(np.argmax(flags))
    assert flags.any() and first < 40, "the human should step in within two seconds"
    assert info["hil"]["intervention_steps"] == flags.sum()
    assert info["hil"]["interventions"] >= 1
    assert 0 < info["hil"]["intervention_rate"] < 1


def test_sim_human_leaves_a_good_policy_alone():
    import robotrl
    from robotrl.tasks import make_expert

    env = robotrl.make("Lift")
    wrapped = InterventionWrapper(safe(env), SimHuman(env, seed=0))
    expert = make_expert(env)
    for seed in range(3):
        expert.reset()
        flags, info = run(wrapped, expert.select_action, seed)
        assert info["is_success"] and not flags.any()


def test_interventions_reach_both_buffers(demos, tmp_path):
    from robotrl.rl.learner import LearnConfig

    cfg = LearnConfig(demos=str(demos), demo_episodes=2, out=str(tmp_path / "run"), hidden=32)
    shapes = {"state": (15,), "environment_state": (7,)}
    trainer = cfg.trainer(shapes, [-1] * 7, [1] * 7)
    n_demo = len(trainer.demo)
    assert n_demo > 20 and trainer.demo.data["reward"][:n_demo].sum() == 2  # one success each
    rows = {k: v[:10].copy() for k, v in trainer.demo.data.items()}
    rows["intervention"][:4] = True
    trainer.add(rows)
    assert len(trainer.online) == 10 and len(trainer.demo) == n_demo + 4
    assert trainer.demo.data["intervention"][n_demo : n_demo + 4].all()


def test_hil_train_runs_end_to_end_and_resumes(demos, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["hil", "train", "--demos", str(demos), "--demo-episodes", "2", "--out", str(out),
            "--minutes", "0.2", "--hidden", "32", "--batch-size", "32", "--eval-episodes", "1",
            "--eval-every", "1000"]  # fmt: skip
    assert main(args) == 0
    episodes = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert episodes and all(0 <= e["intervention_rate"] <= 1 for e in episodes)
    assert (out / "hil.png").exists() and (out / "buffers" / "online.safetensors").exists()
    assert main(args) == 0  # the same directory again: resumes
    assert "resuming" in capsys.readouterr().out


def test_hil_train_without_demos_is_one_line(tmp_path, capsys):
    assert main(["hil", "train", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--demos is required" in err and "Traceback" not in err


def test_conrft_update_moves_the_policy_toward_the_demonstrations(demos):
    from robotrl.policies.consistency import ConsistencyConfig, ConsistencyPolicy
    from robotrl.rl.conrft import ConRFT, ConRFTConfig, bc_loss, demo_transitions

    config = ConsistencyConfig(obs_dims=(15, 7), action_dim=7, channels=(16, 32), horizon=8,
                               n_action_steps=4, grid_points=6)  # fmt: skip
    policy = ConsistencyPolicy(config)
    agent = ConRFT(policy, ConRFTConfig(batch_size=16, actor_lr=1e-3, q_weight=0.1))
    agent.demo.add(demo_transitions(policy, str(demos), 2, agent.k, 0.99))
    assert agent.demo.data["terminated"][: len(agent.demo)].sum() > 0
    probe = agent.demo.sample(32, np.random.default_rng(1))
    cond = agent.cond(probe, "obs")
    pad = torch.as_tensor(probe["chunk_is_pad"])

    def loss():
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            return bc_loss(policy, cond, torch.as_tensor(probe["chunk"]), pad, g).item()

    before = loss()
    for _ in range(30):
        metrics = agent.update()
    assert np.isfinite(metrics["critic_loss"]) and loss() < before
