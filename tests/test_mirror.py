"""Mirror augmentation (`train --mirror`): PushT's scene really is its own mirror image (real
physics), the reflection is exact, and what cannot be mirrored is refused."""

import math
import subprocess
import sys

import mujoco
import numpy as np
import pytest
import torch

from robotrl.data.mirror import MirrorAugment, MirrorSymmetry
from robotrl.errors import RobotrlError
from robotrl.policies.checkpoint import load_policy
from robotrl.policies.train import train
from robotrl.tasks import make, make_expert
from robotrl.tasks.push_t import GOAL_POSE, PushTEnv
from tests.test_policies import _cfg

ENV_NAMES = ["block.x", "block.y", "block.cos_yaw", "block.sin_yaw"]
ACTION_NAMES = ["ee.x", "ee.y", "ee.z", "ee.drx", "ee.dry", "ee.drz"]


def augment(mirror=PushTEnv.mirror_symmetry, **looked_at):
    names = {"env": ENV_NAMES, "action": ACTION_NAMES}
    return MirrorAugment(mirror, names, looked_at, fraction=1.0)


def poses(values: torch.Tensor) -> np.ndarray:
    x, y, c, s = values.double().unbind(-1)
    return torch.stack([x, y, torch.atan2(s, c)], -1).numpy()


def test_the_goal_is_its_own_image_and_mirroring_twice_is_the_identity():
    mirror = augment()
    gx, gy, gyaw = GOAL_POSE
    goal = torch.tensor([[gx, gy, math.cos(gyaw), math.sin(gyaw)]], dtype=torch.float64)
    torch.testing.assert_close(mirror.reflect(goal, mirror.plans["env"]), goal)
    rng = np.random.default_rng(0)
    batch = {
        "env": torch.from_numpy(rng.normal(size=(5, 2, 4))),
        "action": torch.from_numpy(rng.normal(size=(5, 8, 6))),
    }
    once = mirror.reflect_batch(batch)
    assert not torch.allclose(once["env"], batch["env"])
    twice = mirror.reflect_batch(once)
    for key in batch:
        torch.testing.assert_close(twice[key], batch[key])
    # heights stay; a rotation increment is a pseudo-vector: reflected, then negated
    torch.testing.assert_close(once["action"][..., 2], batch["action"][..., 2])
    torch.testing.assert_close(once["action"][..., 5], -batch["action"][..., 5])


def _mirrored_replay_error(mirror: MirrorSymmetry, seed: int) -> tuple[float, float]:
    """Largest block position (mm) and yaw (deg) gap between an expert episode's mirror image
    and the block when the mirrored actions are replayed open loop from the mirrored start."""
    env = make("PushT", action_mode="ee_pos")
    expert = make_expert(env)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    states, actions, done = [obs["environment_state"]], [], False
    while not done:
        actions.append(expert.select_action(obs))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        states.append(obs["environment_state"])
        done = terminated or truncated
    flip = augment(mirror)
    states = flip.reflect(torch.tensor(np.array(states)), flip.plans["env"])
    actions = flip.reflect(torch.tensor(np.array(actions)), flip.plans["action"])
    env.reset(seed=seed)
    sim = env.unwrapped
    sim.data.qpos[sim._block_qadr] = poses(states[0])
    mujoco.mj_forward(sim.model, sim.data)
    gaps = []
    for action, want in zip(actions.numpy(), poses(states[1:])):
        env.step(action)
        got = sim.block_pose()
        yaw_gap = math.remainder(got[2] - want[2], 2 * math.pi)
        gaps.append((1000 * math.hypot(*(got[:2] - want[:2])), math.degrees(abs(yaw_gap))))
    env.close()
    return tuple(np.max(gaps, axis=0))


def test_push_t_replayed_in_the_mirror_follows_the_mirror_image():
    """No feedback, a whole episode: the mirrored pushes move the block along the mirrored
    path to within a centimetre. The dynamics are mirror-symmetric about any line the slide
    joints' friction allows; what must be right is the T's own axis (its bar's axis is not one:
    the mirrored pushes then meet another shape)."""
    for seed in (0, 1):
        mm, deg = _mirrored_replay_error(PushTEnv.mirror_symmetry, seed)
        assert mm < 12 and deg < 6, (seed, mm, deg)
    wrong = MirrorSymmetry(GOAL_POSE[:2], GOAL_POSE[2] + math.pi / 2, {"block": 0.0})
    mm, deg = _mirrored_replay_error(wrong, 0)
    assert mm > 30 or deg > 30, (mm, deg)


def test_entries_without_a_mirror_image_are_refused():
    names = {"state": ["joint1.pos", "ee.x", "ee.y", "ee.z"]}
    MirrorAugment(PushTEnv.mirror_symmetry, names, {"state": {1, 2, 3}})
    with pytest.raises(RobotrlError, match="'joint1.pos' has no mirror image"):
        MirrorAugment(PushTEnv.mirror_symmetry, names, {"state": {0, 1}})
    with pytest.raises(RobotrlError, match="'block.cos_yaw' has no mirror image"):
        augment(MirrorSymmetry((0, 0), 0.0, {}), env={2})


@pytest.fixture(scope="module")
def push_data(tmp_path_factory):
    from tests.test_data import record

    root = tmp_path_factory.mktemp("mirror") / "pusht"
    record(root, task="PushT", episodes=2, action_mode="ee_pos", label="PushT")
    return root


def test_mirrored_training_normalizes_both_images_into_range(push_data, tmp_path):
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset

    options = {"channels": "16,32", "state": "ee.x,ee.y,ee.z", "action_frame": "block"}
    run = train(_cfg(push_data, tmp_path / "run", 4, mirror=True, **options), progress=False)
    policy = load_policy(run / "policy")
    dataset = Dataset(push_data)
    windows = WindowDataset(dataset, 2, 8, policy.config.obs_keys, ())
    batch = windows[np.arange(len(windows))]
    names = {k: list(dataset.features[k]["names"]) for k in (*policy.config.obs_keys, "action")}
    mirrored = MirrorAugment(PushTEnv.mirror_symmetry, names, {}).reflect_batch(batch)
    for seen in (batch, mirrored):
        for part in (policy.encode_actions(seen["action"], seen), policy.condition(seen)):
            assert part.abs().max() <= 1 + 1e-4
    # both images together span the range: each alone would leave part of it unused
    both = torch.cat([policy.encode_actions(b["action"], b) for b in (batch, mirrored)])
    assert both.min() == pytest.approx(-1, abs=1e-4) and both.max() == pytest.approx(1, abs=1e-4)


def test_mirror_on_a_task_without_one_is_a_one_line_error(tmp_path):
    from tests.test_data import record

    record(tmp_path / "lift", task="Lift", episodes=1, label="Lift")
    result = subprocess.run(
        [sys.executable, "-m", "robotrl.cli.main", "train", "--data", str(tmp_path / "lift")]
        + ["--out", str(tmp_path / "run"), "--steps", "2", "--mirror"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "task Lift declares no mirror symmetry" in result.stderr
