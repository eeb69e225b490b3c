"""PushT: coverage is DP's area metric, the block only moves while pushed, and the scripted
expert really pushes it home on both arms (real physics throughout)."""

import math

import mujoco
import numpy as np
import pytest

from robotrl.errors import RobotrlError
from robotrl.sim.randomize import Randomization
from robotrl.tasks import make, make_expert
from robotrl.tasks.push_t import MAX_RESET_COVERAGE, RESET_HALF, SUCCESS_COVERAGE
from robotrl.tasks.push_t_expert import distance_to_t
from robotrl.tasks.t_block import GOAL_POSE, T_AREA, coverage, from_frame

GOAL = np.array(GOAL_POSE)


def _shifted(dx: float, dy: float, dyaw: float = 0.0) -> np.ndarray:
    """The goal pose moved by (dx, dy) in the T's own frame and turned by dyaw."""
    c, s = math.cos(GOAL[2]), math.sin(GOAL[2])
    return GOAL + [c * dx - s * dy, s * dx + c * dy, dyaw]


def _set_block(env, pose) -> None:
    env.data.qpos[env._block_qadr] = pose
    env.data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)


def test_coverage_is_one_at_the_goal_and_matches_the_area_overlap():
    assert coverage(GOAL) == 1.0
    # Sliding a T by d along its bar or its stem loses a 0.16 m x d strip (bar ends and stem
    # sides, or bar top/bottom net of the stem's share): 1 - 0.16 d / area.
    for d in (0.005, 0.01, 0.02):
        exact = 1.0 - 0.16 * d / T_AREA
        for dx, dy in ((d, 0), (-d, 0), (0, d), (0, -d)):
            assert coverage(_shifted(dx, dy)) == pytest.approx(exact, abs=0.01), (dx, dy)
    # Success needs a few mm and a few degrees: 1 cm or 0.1 rad off is not enough.
    assert coverage(_shifted(0.001, 0.001, 0.01)) >= SUCCESS_COVERAGE
    assert coverage(_shifted(0.01, 0)) < SUCCESS_COVERAGE
    assert coverage(_shifted(0, 0, 0.1)) < SUCCESS_COVERAGE
    # Far away or turned round: low.
    assert coverage(GOAL + [0.25, 0.0, 0.0]) == 0.0
    assert coverage(GOAL + [0.0, 0.0, math.pi]) < 0.5
    assert coverage(GOAL + [0.0, 0.0, 2 * math.pi]) == 1.0


def test_reward_and_success_come_from_the_block_pose():
    env = make("PushT")
    obs, info = env.reset(seed=0)
    assert not info["is_success"]
    _, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape))
    assert reward < 0.5 and not terminated and not info["is_success"]

    _set_block(env, _shifted(0.0005, 0.0, 0.005))
    obs, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape))
    assert terminated and info["is_success"] and reward == 1.0
    np.testing.assert_allclose(env.unwrapped.block_pose(), _shifted(0.0005, 0.0, 0.005), atol=1e-4)
    yaw = _shifted(0.0005, 0.0, 0.005)[2]
    np.testing.assert_allclose(
        obs["environment_state"][2:], [math.cos(yaw), math.sin(yaw)], atol=1e-4
    )

    _set_block(env, _shifted(0.02, 0.0))  # 71% covered: DP's dense reward, cov / 0.95
    _, reward, terminated, _, _ = env.step(np.zeros(env.action_space.shape))
    assert not terminated and reward == pytest.approx(coverage(_shifted(0.02, 0)) / 0.95)
    sparse = make("PushT", reward_type="sparse")
    sparse.reset(seed=0)
    assert sparse.step(np.zeros(sparse.action_space.shape))[1] == 0.0


def test_a_stricter_success_coverage_keeps_the_episode_going():
    """collect --success-coverage: demos that finish past the task's own line."""
    pose = _shifted(0.0025, 0.0)  # ~96% covered
    assert 0.95 < coverage(pose) < 0.97
    for line, done in ((SUCCESS_COVERAGE, True), (0.97, False)):
        env = make("PushT", success_coverage=line)
        env.reset(seed=0)
        _set_block(env, pose)
        _, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape))
        assert terminated == info["is_success"] == done
        assert reward == pytest.approx(min(coverage(env.block_pose()) / line, 1.0))
    with pytest.raises(RobotrlError, match="success coverage"):
        make("PushT", success_coverage=1.5)


def test_reset_spreads_the_block_away_from_the_goal():
    env = make("PushT")
    poses = np.array([env.reset(seed=s) and env.unwrapped.block_pose() for s in range(60)])
    offsets = poses - GOAL
    offsets[:, 2] = (offsets[:, 2] + math.pi) % (2 * math.pi) - math.pi
    assert (np.abs(offsets) <= np.array(RESET_HALF) + 1e-5).all()
    assert all(coverage(p) <= MAX_RESET_COVERAGE for p in poses)
    assert np.ptp(poses[:, 0]) > 0.1 and np.ptp(poses[:, 1]) > 0.2  # spread, not a corner
    assert np.ptp(poses[:, 2]) > 5.0
    assert (np.abs(poses[:, 2]) <= math.pi).all()  # yaw reported wrapped
    narrow = make("PushT", randomization=Randomization(object_pose_scale=0.5))
    near = np.array([narrow.reset(seed=s)[0]["environment_state"][:2] for s in range(30)])
    assert (np.abs(near - GOAL[:2]) <= np.array(RESET_HALF[:2]) / 2 + 1e-5).all()


def test_target_is_drawn_but_touches_nothing_and_the_block_skips_the_table():
    env = make("PushT")
    m = env.model
    goal, block = m.body("goal").id, m.body("block").id
    goal_geoms = np.flatnonzero(m.geom_bodyid == goal)
    assert len(goal_geoms) == 2
    assert (m.geom_contype[goal_geoms] == 0).all() and (m.geom_conaffinity[goal_geoms] == 0).all()
    assert (m.geom_rgba[goal_geoms, 3] < 1).all()  # semi-transparent
    # The block collides with the pusher (contype 2) but not the table (contype 1): the planar
    # joints hold it up and their damping/friction is its table friction.
    block_geoms = np.flatnonzero(m.geom_bodyid == block)
    table = m.geom("table").id
    pusher = m.geom("robot/pusher").id

    def collide(a, b):
        return bool(
            m.geom_contype[a] & m.geom_conaffinity[b] or m.geom_contype[b] & m.geom_conaffinity[a]
        )

    assert all(collide(g, pusher) and not collide(g, table) for g in block_geoms)
    assert [m.jnt_type[j] for j in range(m.njnt) if m.jnt_bodyid[j] == block] == [
        mujoco.mjtJoint.mjJNT_SLIDE,
        mujoco.mjtJoint.mjJNT_SLIDE,
        mujoco.mjtJoint.mjJNT_HINGE,
    ]


def _move(env, target, steps):
    for _ in range(steps):
        a = np.zeros(env.action_space.shape)
        a[:3] = np.clip(0.5 * (target - env.ee_pose()[0]), -0.05, 0.05)
        env.step(a)


@pytest.mark.parametrize("robot", ("panda", "ur5e"))
def test_block_moves_only_while_pushed(robot):
    """Push the stem's end 6 cm with the arm, then stop: the block stops with the pusher
    (quasi-static) and stays where it was left."""
    env = make("PushT", robot=robot)
    env.reset(seed=0)
    _set_block(env, [0.0, 0.0, 0.0])  # stem along -y, its end at y = -0.106
    start = np.array([0.0, -0.106 - 0.015 - 0.01, 0.012])
    _move(env, start + [0, 0, 0.05], 25)
    _move(env, start, 15)
    assert np.abs(env.block_pose()).max() < 1e-6  # not touched on the way down
    push = np.zeros(env.action_space.shape)
    push[1] = 0.015
    for _ in range(5):  # 7.5 cm at 0.15 m/s along +y: 6.5 cm of it against the block
        env.step(push)
    trace = []
    for _ in range(12):  # 1.2 s with no command
        env.step(np.zeros(env.action_space.shape))
        trace.append((env.ee_pose()[0], env.block_pose()))
    ee_stop = trace[2][0]
    assert np.linalg.norm(trace[-1][0] - ee_stop) < 1e-3, "pusher still moving"
    moved = trace[-1][1]
    assert moved[1] == pytest.approx(0.065, abs=0.003)  # pushed as far as the pusher went
    assert abs(moved[0]) < 0.003 and abs(moved[2]) < 0.03  # a centred push goes straight
    for _, block in trace[2:]:  # after the pusher stops, the block has stopped too
        np.testing.assert_allclose(block, moved, atol=3e-4)
    # It rests against the pusher: it did not slide on after being let go.
    stem_end = moved[1] - 0.106
    assert stem_end - ee_stop[1] == pytest.approx(0.015, abs=0.002)


def test_a_flicked_block_stops_within_millimetres():
    env = make("PushT")
    env.reset(seed=0)
    _set_block(env, [0.0, 0.0, 0.0])
    dofs = env.model.joint("block_x").dofadr[0]
    env.data.qvel[dofs : dofs + 3] = [0.3, -0.2, 2.0]  # 0.36 m/s and 2 rad/s
    env.step(np.zeros(env.action_space.shape))  # 0.1 s
    pose = env.block_pose()
    assert np.linalg.norm(pose[:2]) < 0.012 and abs(pose[2]) < 0.06
    assert np.abs(env.data.qvel[dofs : dofs + 3]).max() < 1e-3
    env.step(np.zeros(env.action_space.shape))
    np.testing.assert_allclose(env.block_pose(), pose, atol=1e-5)


@pytest.mark.parametrize("robot", ("panda", "ur5e"))
def test_expert_pushes_the_t_home(robot):
    """...and comes down well clear of the block: a policy imitating it comes down about 1 cm
    nearer than it did, and landing on the block it drags it around for good."""
    env = make("PushT", robot=robot)
    expert = make_expert(env)
    for seed in (11, 22, 33):
        obs, info = env.reset(seed=seed)
        expert.reset()
        assert coverage(env.block_pose()) <= MAX_RESET_COVERAGE
        min_z, steps, clearances = np.inf, 0, []
        while True:
            action = expert.select_action(obs)
            assert env.action_space.contains(action)
            z = env.ee_pose()[0][2]
            obs, reward, terminated, truncated, info = env.step(action)
            ee = env.ee_pose()[0]
            if z > 0.04 >= ee[2]:  # coming down to pushing height
                local = from_frame(ee[None, :2], env.block_pose())
                clearances.append(float(distance_to_t(local)[0]))
            min_z, steps = min(min_z, ee[2]), steps + 1
            if terminated or truncated:
                break
        assert info["is_success"] and terminated, (robot, seed, coverage(env.block_pose()))
        assert reward == 1.0 and steps < 250
        assert min_z > 0.005  # pushed with the tool's side, never ground into the table
        assert clearances, "the expert never came down from above"
        assert min(clearances) > 0.03, clearances  # twice the pusher's radius from the T


def test_expert_is_deterministic():
    env = make("PushT", robot="ur5e")
    expert = make_expert(env)

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        actions = []
        for _ in range(60):
            actions.append(expert.select_action(obs))
            obs, _, terminated, truncated, _ = env.step(actions[-1])
            if terminated or truncated:
                break
        return np.array(actions)

    first = episode(5)
    episode(6)  # a different history in between
    np.testing.assert_array_equal(first, episode(5))
