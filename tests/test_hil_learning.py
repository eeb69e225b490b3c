"""SAC updates, the reward classifier and the replay buffers, on small fixed data."""

import numpy as np
import pytest
import torch

from robotrl.errors import RobotrlError
from robotrl.rl.buffers import ReplayBuffer, sample_mixed
from robotrl.rl.classifier import ClassifierReward, accuracy, fit_classifier, save_classifier
from robotrl.rl.sac import Agent, SACConfig, make_optimizer, random_shift, update

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def batch(n=64, images=False, seed=0):
    rng = np.random.default_rng(seed)
    b = {
        "obs.state": rng.normal(size=(n, 5)).astype(np.float32),
        "next_obs.state": rng.normal(size=(n, 5)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        "reward": rng.uniform(0, 1, n).astype(np.float32),
        "terminated": rng.uniform(size=n) < 0.1,
        "intervention": rng.uniform(size=n) < 0.2,
        "is_demo": np.arange(n) < n // 2,
    }
    b["action"][:, -1] = (b["action"][:, -1] > 0).astype(np.float32)  # a gripper entry in {0, 1}
    if images:
        b["obs.images.front"] = rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8)
        b["next_obs.images.front"] = rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8)
    return b


@pytest.mark.parametrize("images,gripper", [(False, False), (True, True)])
def test_sac_updates_reduce_the_critic_loss_on_a_fixed_batch(images, gripper):
    torch.manual_seed(0)
    shapes = {"state": (5,), **({"images.front": (24, 24, 3)} if images else {})}
    config = SACConfig(hidden=64, critics=4, bc_weight=1.0, gripper_critic=gripper, lr=1e-3)
    agent = Agent(config, shapes, [-1, -1, 0], [1, 1, 1])
    optimizer = make_optimizer(agent)
    fixed = batch(n=32 if images else 64, images=images)
    gen = torch.Generator().manual_seed(0)
    steps = 50 if images else 150
    losses = [update(agent, optimizer, fixed, gen)["critic_loss"] for _ in range(steps)]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    action = agent.act(
        {k.removeprefix("obs."): v[0] for k, v in fixed.items() if k.startswith("obs.")}
    )
    assert action.shape == (3,) and np.all(action >= [-1, -1, 0]) and np.all(action <= 1)
    if gripper:
        assert action[-1] in (0.0, 1.0)


def test_actor_weights_rebuild_an_acting_agent():
    agent = Agent(SACConfig(hidden=32), {"state": (5,)}, [-1] * 3, [1] * 3)
    clone = Agent.from_spec(agent.spec())
    clone.load_state_dict(agent.acting_state(), strict=False)
    obs = {"state": np.ones(5, np.float32)}
    np.testing.assert_allclose(agent.act(obs, True), clone.act(obs, True))


def test_random_shift_moves_images_by_at_most_pad():
    img = torch.zeros(4, 3, 16, 16)
    img[:, :, 8, 8] = 1
    out = random_shift(img, 4, torch.Generator().manual_seed(0))
    assert out.shape == img.shape
    for i in range(4):
        y, x = np.argwhere(out[i, 0].numpy() == 1)[0]
        assert abs(y - 8) <= 4 and abs(x - 8) <= 4


def test_buffer_wraps_samples_symmetrically_and_survives_a_checkpoint(tmp_path):
    online, demo = ReplayBuffer(50), ReplayBuffer(100)
    online.add({k: v for k, v in batch(80).items() if k != "is_demo"})
    demo.add({k: v for k, v in batch(30, seed=1).items() if k != "is_demo"})
    assert len(online) == 50 and online.added == 80
    mixed = sample_mixed(online, demo, 64, np.random.default_rng(0))
    assert mixed["is_demo"].sum() == 32
    online.save(tmp_path / "b.safetensors")
    back = ReplayBuffer.load(tmp_path / "b.safetensors")
    assert len(back) == 50 and back.added == 80
    order = (online.pos - 50 + np.arange(50)) % 50
    np.testing.assert_array_equal(back.data["obs.state"][:50], online.data["obs.state"][order])
    with pytest.raises(RobotrlError):
        online.add({"obs.state": np.zeros((1, 5), np.float32)})


def test_classifier_learns_a_separable_labelling_and_serves_as_a_reward(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    labels = x[:, 0] + 0.5 * x[:, 2] > 1.0  # a minority class, linearly separable
    model = fit_classifier({"state": x[:400]}, labels[:400], steps=300)
    scores = accuracy(model, {"state": x[400:]}, labels[400:])
    assert scores["accuracy"] > 0.93 and scores["true_positive_rate"] > 0.8
    save_classifier(model, tmp_path / "clf")
    from robotrl.drivers.reward import make_reward

    source = make_reward(f"classifier:{tmp_path / 'clf'}", None)
    assert isinstance(source, ClassifierReward)
    assert source.read({"state": np.array([3, 0, 1, 0], np.float32)}) == (1.0, True, False)
    assert source.read({"state": np.array([-3, 0, -1, 0], np.float32)}) == (0.0, False, False)
    with pytest.raises(RobotrlError):
        fit_classifier({"state": x}, np.zeros(600, bool))


def test_a_classifier_save_that_dies_leaves_the_old_one_and_out_is_checked(tmp_path, monkeypatch):
    import safetensors.torch

    from robotrl.rl.classifier import ClassifierConfig, load_classifier, train_classifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    model = fit_classifier({"state": x}, x[:, 0] > 0.5, steps=20)
    save_classifier(model, tmp_path / "clf")
    before = load_classifier(tmp_path / "clf").state_dict()

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing the weights

    monkeypatch.setattr(safetensors.torch, "save_file", dies)
    model.threshold = 0.9
    with pytest.raises(KeyboardInterrupt):
        save_classifier(model, tmp_path / "clf")
    monkeypatch.undo()
    kept = load_classifier(tmp_path / "clf")
    assert kept.threshold == 0.5
    assert all(torch.equal(kept.state_dict()[k], v) for k, v in before.items())

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RobotrlError, match="holds other files"):
        train_classifier(ClassifierConfig(data=str(tmp_path / "d"), out=str(tmp_path / "mine")))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
