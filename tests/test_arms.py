"""The built-in arms match the manufacturers' kinematics; user MJCF arms load by path."""

import math

import mujoco
import numpy as np
import pytest

from robotrl.errors import ModelFileError, UnknownNameError
from robotrl.sim.arms import PANDA_DH, PANDA_FLANGE_D, PANDA_HOME, UR5E_DH, builtin_arm
from robotrl.tasks import make


def _rz(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def _rx(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]])


def _tr(x, y, z):
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


def _dh_standard(q):
    t = np.eye(4)
    for j, qi in zip(UR5E_DH, q):
        t = t @ _rz(qi) @ _tr(0, 0, j.d) @ _tr(j.a, 0, 0) @ _rx(j.alpha)
    return t


def _dh_modified(q):
    t = np.eye(4)
    for j, qi in zip(PANDA_DH, q):
        t = t @ _rx(j.alpha) @ _tr(j.a, 0, 0) @ _rz(qi) @ _tr(0, 0, j.d)
    return t @ _tr(0, 0, PANDA_FLANGE_D)


@pytest.mark.parametrize("name,fk", [("ur5e", _dh_standard), ("panda", _dh_modified)])
def test_flange_matches_published_dh(name, fk):
    arm = builtin_arm(name)
    model = mujoco.MjModel.from_xml_string(arm.mjcf)
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    for _ in range(25):
        q = rng.uniform(-2, 2, len(arm.joint_names))
        for name_, qi in zip(arm.joint_names, q):
            data.joint(name_).qpos = qi
        mujoco.mj_kinematics(model, data)
        expected = fk(q)
        np.testing.assert_allclose(data.body("flange").xpos, expected[:3, 3], atol=1e-9)
        np.testing.assert_allclose(
            data.body("flange").xmat.reshape(3, 3), expected[:3, :3], atol=1e-9
        )


@pytest.mark.parametrize("name,lower4", [("panda", -3.0718), ("ur5e", -2 * math.pi)])
def test_joint_limits_are_the_published_ones(name, lower4):
    model = mujoco.MjModel.from_xml_string(builtin_arm(name).mjcf)
    assert model.joint("joint4").range[0] == pytest.approx(lower4)


def test_user_mjcf_arm_loads_by_path(tmp_path):
    # Like a mujoco_menagerie arm: its own file, a "home" keyframe, names found by convention.
    home = " ".join(map(str, PANDA_HOME))
    key = f'<keyframe><key name="home" qpos="{home} 0.04 0.04"/></keyframe></mujoco>'
    path = tmp_path / "my_arm.xml"
    path.write_text(builtin_arm("panda").mjcf.replace("</mujoco>", key))
    env = make("Reach", robot=str(path))
    assert env.robot.robot_type == "my_arm"
    assert len(env.robot.joint_names) == 7 and env.robot.action.names[-1] == "gripper"
    env.reset(seed=0)
    start = env.ee_pose()[0]
    action = np.zeros(env.action_space.shape)
    action[2] = 0.01
    for _ in range(8):
        env.step(action)
    assert env.ee_pose()[0][2] - start[2] > 0.05


def test_bad_robot_names_and_paths(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown robot 'kuka'"):
        make("Reach", robot="kuka")
    with pytest.raises(ModelFileError, match="not found"):
        make("Reach", robot=str(tmp_path / "missing.xml"))
    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body></mujoco>")
    with pytest.raises(ModelFileError, match="cannot load"):
        make("Reach", robot=str(broken))
