"""Position actions in an object's frame (`train --action-frame block`)."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from robotrl.errors import RobotrlError
from robotrl.policies.checkpoint import load_policy
from robotrl.policies.object_frame import FrameIndices, ObjectFrame
from robotrl.policies.train import train
from tests.test_policies import _cfg

OBS_KEYS = ("observation.state", "observation.environment_state")
NAMES = {
    "observation.state": ("joint1.pos", "ee.x", "ee.y", "ee.z"),
    "observation.environment_state": ("block.x", "block.y", "block.cos_yaw", "block.sin_yaw"),
}
ACTIONS = ("ee.x", "ee.y", "ee.z")


def window(block, tool, n_obs=2):
    """One observation window: the block at (x, y, yaw), the tool at (x, y)."""
    x, y, yaw = block
    env = torch.tensor([x, y, math.cos(yaw), math.sin(yaw)]).expand(1, n_obs, 4)
    state = torch.tensor([0.0, *tool, 0.1]).expand(1, n_obs, 4)
    return {"observation.state": state, "observation.environment_state": env}


def test_indices_come_from_feature_names():
    indices = FrameIndices.from_names("block", OBS_KEYS, NAMES, ACTIONS)
    assert indices == FrameIndices(1, (0, 1, 2, 3), 0, (1, 2), (0, 1))
    assert FrameIndices.from_list(indices.to_list()) == indices


@pytest.mark.parametrize(
    "name, actions, message",
    [
        ("lid", ACTIONS, "no object pose entries lid.x"),
        ("block", ("ee.dx", "ee.dy", "ee.dz"), "no absolute position entries"),
    ],
)
def test_missing_entries_are_named(name, actions, message):
    with pytest.raises(RobotrlError, match=message):
        FrameIndices.from_names(name, OBS_KEYS, NAMES, actions)


def test_positions_are_measured_from_the_object_and_along_its_axes():
    frame = ObjectFrame(FrameIndices.from_names("block", OBS_KEYS, NAMES, ACTIONS), OBS_KEYS, 2)
    obs = window(block=(0.1, -0.2, math.pi / 2), tool=(0.1, -0.1))
    # 10 cm along world +y from a block turned 90 degrees: along the block's own +x axis
    torch.testing.assert_close(frame.tool(obs)[0, -1], torch.tensor([0.1, 0.0]))
    actions = torch.tensor([[[0.3, -0.2, 0.05], [0.1, 0.0, 0.02]]])
    in_frame = frame.actions_to_frame(actions, obs)
    torch.testing.assert_close(in_frame[0, :, :2], torch.tensor([[0.0, -0.2], [0.2, 0.0]]))
    assert torch.equal(in_frame[..., 2], actions[..., 2])  # height is not a planar entry
    torch.testing.assert_close(frame.actions_from_frame(in_frame, obs), actions)


@pytest.fixture(scope="module")
def push_data(tmp_path_factory):
    from tests.test_data import record

    root = tmp_path_factory.mktemp("frame") / "pusht"
    record(root, task="PushT", episodes=2, action_mode="ee_pos")
    return root


def _train(data, out, **kw):
    return train(_cfg(data, out, 4, channels="16,32", **kw), progress=False)


def test_a_frame_policy_learns_in_the_frame_and_acts_in_the_world(push_data, tmp_path):
    from robotrl.data.dataset import Dataset
    from robotrl.data.windows import WindowDataset

    policy = load_policy(_train(push_data, tmp_path / "run", action_frame="block") / "policy")
    assert policy.config.action_frame == "block"
    windows = WindowDataset(Dataset(push_data), 2, 8, policy.config.obs_keys, ())
    batch = windows[np.arange(0, len(windows), 7)]
    encoded = policy.encode_actions(batch["action"], batch)
    # the action normalizer was fitted in the frame: the demos' actions span [-1, 1] there
    assert encoded.min() == pytest.approx(-1, abs=1e-4)
    assert encoded.max() == pytest.approx(1, abs=1e-4)
    torch.testing.assert_close(policy.decode_actions(encoded, batch), batch["action"])
    # the chunk it plans is in the world: turn the block and the chunk turns with it
    obs = {k: batch[k][:1] for k in policy.config.obs_keys}
    turned = {k: v.clone() for k, v in obs.items()}
    env = turned["observation.environment_state"]
    yaw = math.atan2(env[0, -1, 3], env[0, -1, 2]) + 0.5
    env[..., 2], env[..., 3] = math.cos(yaw), math.sin(yaw)
    plan = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    plan_turned = policy.predict_chunk(turned, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plan[..., :2], plan_turned[..., :2], atol=1e-3)


def test_frame_of_an_unknown_object_is_a_one_line_error(push_data, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "robotrl.cli.main",
            "train",
            "--data",
            str(push_data),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "2",
            "--action-frame",
            "lid",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "no object pose entries lid.x" in result.stderr
