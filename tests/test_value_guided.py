"""Value-guided sampling: an IQL critic trained offline on demos and base rollouts, N = 1
reproducing plain sampling exactly (in worker processes too), and the critic's pick."""

import json

import pytest
import torch

from robotrl.errors import RobotrlError


@pytest.fixture(scope="module")
def base_and_critic(reach_data, tmp_path_factory):
    from robotrl.policies.train import TrainConfig, train
    from robotrl.rl.value import ValueConfig, train_value

    root = tmp_path_factory.mktemp("value")
    cfg = TrainConfig(data=str(reach_data), out=str(root / "base"), steps=4, eval_every=0)
    cfg.batch_size, cfg.horizon, cfg.n_action_steps, cfg.channels = 16, 8, 4, "16,32"
    base = train(cfg, progress=False)
    value = ValueConfig(
        base=str(base), data=str(reach_data), task="Reach", rollouts=2, envs=2, steps=100,
        out=str(root / "value"),
    )  # fmt: skip
    return base, train_value(value)


def test_the_critic_is_a_checkpoint_trained_on_demos_and_rollouts(base_and_critic):
    from robotrl.rl.value import load_critic

    base, run = base_and_critic
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["episodes"] == 4 + 2 and log[0]["decisions"] > 100
    assert log[-1]["step"] == 100
    critic, meta = load_critic(run)
    assert meta["base"] == str(base / "policy")
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl"))  # no pickle anywhere


def test_one_candidate_is_plain_sampling_draw_for_draw(base_and_critic):
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.evaluate import evaluate
    from robotrl.rl.value_guided import ValueGuidedPolicy

    base, run = base_and_critic
    plain = load_policy(base)
    plain.set_sampler("ddpm", 5)  # stochastic at every step: any extra draw would show
    guided = ValueGuidedPolicy.build(str(base), str(run), candidates=1)
    guided.set_sampler("ddpm", 5)
    a = evaluate(plain, "Reach", episodes=3, seed=5, progress=False)
    b = evaluate(guided, "Reach", episodes=3, seed=5, progress=False, workers=2)
    assert a["scores"] == b["scores"] and a["lengths"] == b["lengths"]


def test_the_executed_chunk_is_the_candidate_the_critic_ranks_highest(base_and_critic):
    from robotrl.rl.value_guided import ValueGuidedPolicy

    base, run = base_and_critic
    guided = ValueGuidedPolicy.build(str(base), str(run), candidates=6)
    config = guided.config
    torch.manual_seed(0)
    window = {k: torch.randn(2, config.n_obs, d) for k, d in zip(config.obs_keys, config.obs_dims)}
    chosen = guided.predict_chunk(window, generator=torch.Generator().manual_seed(3))
    windows = {k: v.repeat_interleave(6, 0) for k, v in window.items()}
    candidates = guided.base.predict_chunk(windows, generator=torch.Generator().manual_seed(3))
    n_exec = guided.config.n_action_steps
    with torch.no_grad():
        q = guided.critic.q_values(
            guided.base.condition(windows),
            guided.base.encode_actions(candidates[:, :n_exec], windows).flatten(1),
        ).reshape(2, 6)
    expected = candidates.reshape(2, 6, *candidates.shape[1:])[torch.arange(2), q.argmax(1)]
    torch.testing.assert_close(chosen, expected)
    assert not torch.equal(chosen[0], candidates[0])  # it is not simply the first draw


def test_a_critic_for_another_policy_is_refused(base_and_critic, reach_data, tmp_path):
    from robotrl.policies.train import TrainConfig, train
    from robotrl.rl.value_guided import ValueGuidedPolicy

    _, run = base_and_critic
    cfg = TrainConfig(data=str(reach_data), out=str(tmp_path / "other"), steps=2, eval_every=0)
    cfg.batch_size, cfg.horizon, cfg.n_action_steps, cfg.channels = 16, 8, 4, "16,32"
    other = train(cfg, progress=False)
    with pytest.raises(RobotrlError, match="was trained for the policy"):
        ValueGuidedPolicy.build(str(other), str(run), candidates=4)


def test_deploy_runs_the_value_guided_policy_in_its_inference_process(base_and_critic, capsys):
    from robotrl.cli.main import main

    base, run = base_and_critic
    argv = ["deploy", "--policy", str(base), "--value", str(run), "--env", "sim:Reach"]
    assert main(argv) == 2  # rtc inpaints a chunk, which one critic pick cannot
    assert "--value picks whole chunks" in capsys.readouterr().err
    code = main([*argv, "--strategy", "receding", "--episodes", "1", "--plot", "", "--no-status"])
    out = capsys.readouterr().out
    assert code == 0 and "sim:Reach, strategy receding" in out and "chunks 0," not in out
