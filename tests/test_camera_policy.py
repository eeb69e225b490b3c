"""Camera policies: a tiny run on two cameras + the robot's own state trains with the object
probe, keeps the privileged state out of its checkpoint, runs in `eval` and `deploy`, and
distills into a consistency student that shares the teacher's encoder."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from robotrl.errors import RobotrlError
from robotrl.policies.checkpoint import load_policy
from robotrl.policies.train import TrainConfig, train

SMALL = dict(
    batch_size=8, warmup=2, save_every=4, eval_every=0, horizon=8, n_action_steps=4, threads=1
)


@pytest.fixture(scope="module")
def lift_pixels(tmp_path_factory):
    from tests.test_data import record

    root = tmp_path_factory.mktemp("camera") / "lift"
    record(root, task="Lift", episodes=2, obs_mode="state+pixels", label="Lift")
    return root


PROBE_AT_START = {}  # the object probe's head weights as training created them


@pytest.fixture(scope="module")
def camera_run(lift_pixels, tmp_path_factory):
    from robotrl.policies.object_probe import ObjectStateProbe

    out = tmp_path_factory.mktemp("camera") / "run"
    cfg = TrainConfig(
        data=str(lift_pixels), out=str(out), steps=8, cameras="front,wrist", object_aux=1.0, **SMALL
    )
    create = ObjectStateProbe.__init__

    def create_and_record(self, *args, **kwargs):
        create(self, *args, **kwargs)
        PROBE_AT_START["head"] = self.head.weight.detach().clone()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ObjectStateProbe, "__init__", create_and_record)
        return train(cfg, progress=False)


def test_checkpoint_holds_no_privileged_state_and_the_probe_trained(camera_run):
    config = (camera_run / "policy/config.json").read_text()
    assert "environment_state" not in config and "object_probe" not in config
    weights = load_file(camera_run / "policy/model.safetensors")
    assert not [k for k in weights if "probe" in k]
    policy = load_policy(camera_run)
    assert policy.config.obs_keys == ("observation.state",)
    assert policy.config.image_keys == ("observation.images.front", "observation.images.wrist")
    # the probe lives in the run's resumable state only, and it was optimized
    head = load_file(camera_run / "state/state.safetensors")["object_probe.head.weight"]
    assert head.shape == PROBE_AT_START["head"].shape
    assert not torch.allclose(head, PROBE_AT_START["head"])  # it moved from its initialization


def test_the_probe_loss_adds_to_the_action_loss_and_inference_needs_no_object_state(camera_run):
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset
    from robotrl.policies.object_probe import KEY, ObjectStateProbe, with_object_probe

    policy = load_policy(camera_run).train()
    data = Dataset(json.loads((camera_run / "train_config.json").read_text())["data"])
    keys = policy.config.image_keys
    windows = WindowDataset(data, 2, 8, ("observation.state", KEY), keys)
    batch = windows[np.arange(6)]
    probe = ObjectStateProbe(
        policy.image_encoder.out_dim, data.stats[KEY]["min"], data.stats[KEY]["max"]
    )
    policy.eval()  # center crops: both sides see the same features
    with torch.no_grad():
        total = with_object_probe(policy, probe, 0.5)(batch, torch.Generator().manual_seed(3))
        action = policy.loss(batch, torch.Generator().manual_seed(3))
        object_term = probe.loss(policy.image_encoder(batch), batch)
    torch.testing.assert_close(total, action + 0.5 * object_term)
    assert object_term > 0
    window = {k: v[:1] for k, v in batch.items() if k != KEY and k.startswith("observation.")}
    assert policy.predict_chunk(window).shape == (1, 8, 7)


def test_camera_policy_runs_in_eval_and_deploy(camera_run, capsys):
    from robotrl.control.deploy import DeployConfig, deploy
    from robotrl.policies.evaluate import evaluate

    result = evaluate(load_policy(camera_run), "Lift", episodes=1, progress=False)
    assert result["episodes"] == 1 and result["mean_episode_length"] > 0
    summary = deploy(
        DeployConfig(
            policy=str(camera_run),
            episodes=1,
            strategy="sync",
            inference="thread",
            plot="",
            status=False,
        )
    )
    assert summary["episodes"] == 1


def test_distilled_camera_student_keeps_the_teachers_encoder(camera_run, tmp_path):
    from robotrl.policies.distill import DistillConfig, distill

    small = {k: v for k, v in SMALL.items() if k not in ("horizon", "n_action_steps")}
    run = distill(
        DistillConfig(teacher=str(camera_run), out=str(tmp_path / "cm"), steps=3, **small),
        progress=False,
    )
    teacher, student = load_policy(camera_run), load_policy(run)
    assert student.kind == "consistency"
    for (name, a), b in zip(
        teacher.image_encoder.state_dict().items(), student.image_encoder.state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(teacher.net.state_dict().values(), student.net.state_dict().values())
    ]
    assert any(moved)  # the U-Net was distilled


def test_camera_options_are_checked_before_anything_is_written(lift_pixels, tmp_path):
    bad = [
        (dict(object_aux=1.0), "--object-aux trains camera policies"),
        (dict(object_aux=-1.0, cameras="front"), "--object-aux must be >= 0"),
        (dict(steps=0), "--steps must be >= 1"),
        (dict(batch_size=0), "--batch-size must be >= 1"),
    ]
    for i, (options, message) in enumerate(bad):
        cfg = TrainConfig(
            data=str(lift_pixels), out=str(tmp_path / f"r{i}"), **{**SMALL, **options}
        )
        with pytest.raises(RobotrlError, match=message):
            train(cfg, progress=False)
        assert not (tmp_path / f"r{i}").exists()


def test_a_task_unknown_here_keeps_the_trained_run(tmp_path, capsys):
    """A dataset from another tool names its task in words: training keeps its checkpoint and
    says the evaluation was skipped."""
    from tests.test_data import record

    record(tmp_path / "data", task="Reach", episodes=2, label="move the arm to the dot")
    cfg = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), steps=4, **SMALL)
    cfg.eval_every = 2
    run = train(cfg, progress=False)
    assert load_policy(run).config.meta["task"] == "move the arm to the dot"
    assert json.loads((run / "state/state.json").read_text())["step"] == 4
    assert "not evaluated (the checkpoint is saved): unknown task" in capsys.readouterr().err


def test_residual_on_a_camera_base_trains_sees_no_privileged_state_and_loads(
    camera_run, tmp_path, capsys
):
    from robotrl.cli.main import main
    from robotrl.policies.evaluate import evaluate
    from robotrl.rl.residual import ResidualPolicy

    run = tmp_path / "residual"
    args = ["finetune", "residual", "--base", str(camera_run), "--out", str(run), "--envs", "2"]
    args += ["--steps", "32", "--rollout", "16", "--minibatch", "16", "--epochs", "2"]
    args += ["--eval-every", "0", "--eval-episodes", "1", "--no-progress"]
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 32 and records[-1]["loss"] > 0  # PPO updated on camera envs
    policy = load_policy(run)
    assert isinstance(policy, ResidualPolicy) and policy.config.image_keys  # the base's cameras
    assert policy.obs_keys == ("observation.state",)  # the residual: robot state + base action
    weights = load_file(str(run / "policy" / "model.safetensors"))
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "mean" in k)  # it learned
    result = evaluate(policy, "Lift", episodes=1, progress=False)
    assert result["episodes"] == 1 and result["mean_episode_length"] > 0
