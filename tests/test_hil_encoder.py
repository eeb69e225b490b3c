"""HIL RL from pixels on a frozen image encoder (a tiny camera policy made here): the agent
learns on `image_features` + the robot's state, no frames reach the replay buffer, the run
records its encoder, and an actor/learner pair exchanges features over loopback and survives
a killed actor. Also the classifier reward's k-frames-in-a-row rule."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from robotrl.cli.main import main
from robotrl.errors import RobotrlError

CAMERAS = ("observation.images.front", "observation.images.wrist")


def tiny_camera_policy(path, seed: int = 0):
    from robotrl.policies.checkpoint import save_policy
    from robotrl.policies.diffusion import DiffusionConfig, DiffusionPolicy

    config = DiffusionConfig(
        obs_keys=("observation.state",), obs_dims=(15,), action_dim=7, horizon=8,
        n_action_steps=4, channels=(16, 32), image_keys=CAMERAS,
        image_shapes=((96, 96, 3), (96, 96, 3)), image_feature_dim=8, image_base_width=4,
    )  # fmt: skip
    torch.manual_seed(seed)
    policy = DiffusionPolicy(config, [(np.zeros(15), np.ones(15))], (-np.ones(7), np.ones(7)))
    return save_policy(policy, path)


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory):
    return tiny_camera_policy(tmp_path_factory.mktemp("encoder") / "camera")


@pytest.fixture(scope="module")
def pixel_demos(tmp_path_factory):
    from tests.test_data import record

    root = tmp_path_factory.mktemp("demos") / "lift_px"
    record(root, task="Lift", episodes=2, obs_mode="pixels")
    return root


def test_encoded_env_gives_features_and_keeps_frames_out_of_the_agents_view(encoder_path):
    from robotrl.rl.frozen_encoder import FEATURES, FrozenEncoder
    from robotrl.rl.hil_episodes import make_hil_env, obs_shapes_of

    encoder = FrozenEncoder(encoder_path)
    assert encoder.dim == 16 and encoder.cameras == ("images.front", "images.wrist")
    env = make_hil_env("sim:Lift", "none", 0, "pixels", encoder=encoder)
    obs, _ = env.reset(seed=0)
    assert obs_shapes_of(env) == {"state": (15,), FEATURES: (16,)}  # what the agent learns on
    frames = {k: obs[k][None] for k in encoder.cameras}  # kept for a camera reward classifier
    np.testing.assert_allclose(obs[FEATURES], encoder.encode(frames)[0], rtol=1e-5, atol=1e-6)
    env.close()
    with pytest.raises(RobotrlError, match="--obs-mode pixels"):
        make_hil_env("sim:Lift", "none", 0, "state", encoder=encoder)


def test_hil_train_on_a_frozen_encoder_learns_on_features_records_it_and_evaluates(
    encoder_path, pixel_demos, tmp_path, capsys
):
    from robotrl.rl.frozen_encoder import resolve_encoder
    from robotrl.rl.hil_episodes import evaluate_agent
    from robotrl.rl.sac import Agent

    out = tmp_path / "run"

    def args(encoder):
        return ["hil", "train", "--obs-mode", "pixels", "--demos", str(pixel_demos),
                "--demo-episodes", "2", "--encoder", str(encoder), "--out", str(out),
                "--minutes", "0.15", "--hidden", "32", "--batch-size", "16",
                "--eval-episodes", "1", "--eval-every", "1000", "--threads", "1"]  # fmt: skip

    assert main(args(encoder_path)) == 0
    counters = json.loads((out / "counters.json").read_text())
    assert counters["updates"] > 0 and counters["env_steps"] > 0
    for name in ("online", "demo"):
        with safe_open(str(out / "buffers" / f"{name}.safetensors"), "numpy") as f:
            fields = set(f.keys())
            assert f.get_tensor("obs.image_features").shape[1:] == (16,)
        assert {"obs.state", "obs.image_features", "next_obs.image_features"} <= fields
        assert not [k for k in fields if "images" in k or "environment_state" in k]
    spec = json.loads((out / "spec.json").read_text())
    encoder = resolve_encoder("", out)  # rebuilt from what the run recorded
    assert spec["config"]["encoder"] == str(encoder_path)
    assert spec["config"]["encoder_digest"] == encoder.digest
    agent = Agent.from_spec(spec)
    assert evaluate_agent(agent, "sim:Lift", 1, encoder=encoder) in (0.0, 1.0)
    other = tiny_camera_policy(tmp_path / "other", seed=1)  # another encoder: refused
    assert main(args(other)) == 2
    assert "was trained with encoder" in capsys.readouterr().err


def test_learner_refuses_an_actor_with_another_encoder(encoder_path, tmp_path):
    from robotrl.rl.learner import LearnerConfig, LearnerService
    from robotrl.rl.transport import MessageError

    service = LearnerService(LearnerConfig(out=str(tmp_path / "run"), encoder=str(encoder_path)))
    spec = {"obs_shapes": {"state": [15], "image_features": [16]}, "action_low": [-1] * 7,
            "action_high": [1] * 7, "encoder_digest": ""}  # fmt: skip
    with pytest.raises(MessageError, match="image encoder"):
        service.handle({"kind": "hello", "actor": "a", "spec": spec}, {})
    spec["encoder_digest"] = service.encoder.digest
    assert service.handle({"kind": "hello", "actor": "a", "spec": spec}, {})[0] == "welcome"


def test_pixel_actor_and_learner_exchange_features_and_survive_a_killed_actor(
    encoder_path, tmp_path
):
    pytest.importorskip("zmq")
    from tests.test_hil_actor_learner import Proc, free_port, status

    address = f"tcp://127.0.0.1:{free_port()}"
    encoder = ["--encoder", str(encoder_path)]
    lrn = Proc("learner", "--bind", address, "--out", str(tmp_path / "run"), "--hidden", "32",
               "--batch-size", "16", "--checkpoint-every", "0.5", "--publish-every", "20",
               "--minutes", "2", *encoder)  # fmt: skip
    act = Proc("actor", "--env", "sim:Lift", "--teleop", "sim-human", "--connect", address,
               "--timeout", "0.3", "--actor-id", "a1", "--obs-mode", "pixels", *encoder)  # fmt: skip
    try:
        act.wait_for(r"episode 2 .*acked [1-9]", timeout=90)
        act.kill()
        sent = act.acked()
        assert status(address)["counters"]["env_steps"] >= sent > 0
        assert lrn.p.poll() is None  # the learner outlives its actor
        act = Proc(
            "actor",
            "--env",
            "sim:Lift",
            "--teleop",
            "none",
            "--connect",
            address,
            "--timeout",
            "0.3",
            "--actor-id",
            "a2",
            "--obs-mode",
            "pixels",
            "--episodes",
            "1",
            *encoder,
        )  # fmt: skip  a new actor joins the same learner
        act.wait_for(r"episode 1 .*acked [1-9]", timeout=60)
        assert status(address)["counters"]["env_steps"] > sent
    finally:
        act.kill()
        lrn.stop()
    with safe_open(str(tmp_path / "run" / "buffers" / "online.safetensors"), "numpy") as f:
        assert f.get_tensor("obs.image_features").shape[1:] == (16,)
        assert not [k for k in f.keys() if "images" in k]  # noqa: SIM118
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["obs_shapes"] == {"state": [15], "image_features": [16]}


class Says:
    """A stand-in classifier that answers from a script, one frame at a time."""

    def __init__(self, answers):
        self.answers = iter(answers)

    def success(self, obs) -> bool:
        return next(self.answers)


def test_classifier_success_takes_k_positive_frames_in_a_row():
    from robotrl.rl.hil_episodes import RewardSource

    source = RewardSource("classifier", Says([1, 0, 1, 1, 0, 1, 1, 1]), frames=3)
    said = [source({}, 0.0, {})[1] for _ in range(8)]
    assert said == [False] * 7 + [True]  # isolated positives earn nothing
    source = RewardSource("classifier", Says([1, 1, 1]), frames=3)
    source({}, 0.0, {})
    source.reset()  # a new episode starts the count again
    assert [source({}, 0.0, {})[1] for _ in range(2)] == [False, False]


def test_a_classifier_of_encoder_features_is_a_reward_only_with_that_encoder(
    encoder_path, pixel_demos, tmp_path
):
    from robotrl.rl.classifier import ClassifierConfig, load_classifier, train_classifier
    from robotrl.rl.frozen_encoder import FEATURES, FrozenEncoder
    from robotrl.rl.hil import HILConfig
    from robotrl.rl.hil_episodes import make_reward

    out = tmp_path / "clf"
    result = train_classifier(ClassifierConfig(data=str(pixel_demos), out=str(out), steps=20,
                                               holdout=0.5, encoder=str(encoder_path)))  # fmt: skip
    assert 0 <= result["accuracy"] <= 1
    encoder = FrozenEncoder(encoder_path)
    model = load_classifier(out)
    assert model.shapes == {FEATURES: (16,)} and model.encoder["digest"] == encoder.digest
    cfg = HILConfig(reward="classifier", classifier=str(out))
    assert make_reward(cfg, encoder).classifier.encoder == model.encoder
    with pytest.raises(RobotrlError, match="give the run that --encoder"):
        make_reward(cfg)
    with pytest.raises(RobotrlError, match="--success-frames"):
        make_reward(HILConfig(reward="classifier", classifier=str(out), success_frames=0))


class Scripted:
    """An env stand-in: a human drives steps 2 and 3; the task's own success (step 2) and
    end do not end an episode the classifier judges."""

    def reset(self, seed=None):
        self.t = 0
        return {"state": np.zeros(2, np.float32)}, {}

    def step(self, action):
        self.t += 1
        info = {"is_success": self.t == 2, "intervention": self.t in (2, 3)}
        return {"state": np.full(2, self.t, np.float32)}, 0.0, self.t == 2, self.t >= 9, info


def test_a_classifier_ends_the_episode_and_the_stats_count_the_human_from_the_transitions():
    from robotrl.rl.hil_episodes import RewardSource, run_episode

    source = RewardSource("classifier", Says([1, 0, 1, 1, 1, 1]), frames=3)
    rows, stats = run_episode(Scripted(), lambda obs: np.zeros(7), 0, source, ("state",))
    assert stats["steps"] == 5 and stats["success"] and stats["task_success"]
    assert stats["intervention_steps"] == 2 and stats["interventions"] == 1
    assert rows["terminated"].tolist() == [False] * 4 + [True]
    assert rows["reward"].tolist() == [0.0] * 4 + [1.0]
