"""PushT: push a T-shaped block to a fixed target pose on the table with a round pusher.

Diffusion Policy's PushT benchmark brought to a 3-D arm. The block moves in the table plane
only (planar joints: slide x, slide y, hinge z), with joint damping and friction standing in
for table friction, so it stops as soon as it is no longer pushed. Success is DP's: the block
covers at least 95% of the target T's area. The scripted expert plans each push by simulating
candidate pushes in a small private MuJoCo model of the block and pusher.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
from mujoco import rollout

from robotrl.sim.mujoco_env import MujocoEnv
from robotrl.sim.scene import ARM_PREFIX, aim_camera
from robotrl.tasks.expert import Expert

# ---- the T (m). Bar across the top, stem below it along -y, in the T's own frame whose
# origin is the T's area centroid (so the hinge turns it about its centre of mass).
BAR_HALF = (0.08, 0.02)
STEM_HALF = (0.02, 0.06)
HEIGHT_HALF = 0.015
_BAR_Y, _STEM_Y = BAR_HALF[1], -STEM_HALF[1]  # centres with the bar's lower edge at y = 0
_AREAS = (4 * BAR_HALF[0] * BAR_HALF[1], 4 * STEM_HALF[0] * STEM_HALF[1])
_CENTROID_Y = (_AREAS[0] * _BAR_Y + _AREAS[1] * _STEM_Y) / sum(_AREAS)
# (centre x, centre y, half x, half y) of the two rectangles in the block frame
RECTS = np.array(
    [
        [0.0, _BAR_Y - _CENTROID_Y, *BAR_HALF],
        [0.0, _STEM_Y - _CENTROID_Y, *STEM_HALF],
    ]
)
T_AREA = sum(_AREAS)

# The block floats a hair above the table (no table contact: the joints carry it), so its
# "table friction" is the joint friction and damping below.
BLOCK_Z = HEIGHT_HALF + 0.0005
BLOCK_MASS = 0.2  # kg
SLIDE_DAMPING = 8.0  # N s/m: let go at 0.1 m/s (the expert's push speed) it slides 1 mm
SLIDE_FRICTION = 0.6  # N: Coulomb friction, so it comes to a full stop rather than creeping
CONTACT_FRICTION = 0.3  # block-pusher sliding friction

GOAL_POSE = (0.0, 0.0, math.pi / 4)  # x, y, yaw: fixed, like DP's (256, 256, pi/4)
RESET_HALF = (0.08, 0.16, math.pi)  # half-ranges of the block's reset pose about the goal
MAX_RESET_COVERAGE = 0.1  # reject reset poses that already cover more of the goal than this
SUCCESS_COVERAGE = 0.95
COVERAGE_GRID = 0.0025  # m between coverage sample points


def _rotational_inertia() -> float:
    """Moment of inertia of the T about its centroid (vertical axis) per unit mass."""
    total = 0.0
    for (cx, cy, hx, hy), area in zip(RECTS, _AREAS):
        total += area * ((4 * hx * hx + 4 * hy * hy) / 12 + cx * cx + cy * cy)
    return total / T_AREA


# The hinge gets the slide values times the squared radius of gyration, so a push decays
# translation and rotation on the same time scale (what area-distributed table friction does).
GYRATION_SQ = _rotational_inertia()
HINGE_DAMPING = SLIDE_DAMPING * GYRATION_SQ
HINGE_FRICTION = SLIDE_FRICTION * math.sqrt(GYRATION_SQ)


def add_t_block(parent, name: str, rgba, pos, yaw: float = 0.0, collide: bool = True):
    """Add a T body (two boxes) to `parent` (an MjSpec body)."""
    body = parent.add_body(name=name, pos=pos, quat=[math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
    for part, (cx, cy, hx, hy) in zip(("bar", "stem"), RECTS):
        hz = HEIGHT_HALF if collide else 0.0005
        geom = body.add_geom(
            name=f"{name}_{part}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[hx, hy, hz],
            pos=[cx, cy, 0.0],
            rgba=rgba,
        )
        if collide:
            # Collides with the pusher and arm (contype 2) but not the table (contype 1).
            geom.contype, geom.conaffinity = 0, 2
            geom.friction = [CONTACT_FRICTION, 0.005, 0.0001]
            geom.mass = BLOCK_MASS * (4 * hx * hy) / T_AREA
        else:
            geom.contype, geom.conaffinity = 0, 0
    return body


def add_planar_joints(body, name: str) -> None:
    for axis, suffix in (([1, 0, 0], "x"), ([0, 1, 0], "y")):
        body.add_joint(
            name=f"{name}_{suffix}",
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=axis,
            damping=SLIDE_DAMPING,
            frictionloss=SLIDE_FRICTION,
        )
    body.add_joint(
        name=f"{name}_yaw",
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=[0, 0, 1],
        damping=HINGE_DAMPING,
        frictionloss=HINGE_FRICTION,
    )


def wrap_angle(a):
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi


def _grid_in_t(spacing: float) -> np.ndarray:
    """Cell centres of a square grid covering the T, in the T's frame (N x 2)."""
    points = []
    for i, (cx, cy, hx, hy) in enumerate(RECTS):
        nx, ny = round(2 * hx / spacing), round(2 * hy / spacing)
        xs = cx - hx + (np.arange(nx) + 0.5) * 2 * hx / nx
        ys = cy - hy + (np.arange(ny) + 0.5) * 2 * hy / ny
        grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        if i == 1:  # the rectangles only touch along an edge; keep cells of one of them
            grid = grid[~_inside(grid, RECTS[:1])]
        points.append(grid)
    return np.concatenate(points)


def _inside(points: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Whether each point (N x 2, T frame) lies in any of `rects`."""
    d = np.abs(points[:, None, :] - rects[None, :, :2])
    return ((d[..., 0] <= rects[None, :, 2]) & (d[..., 1] <= rects[None, :, 3])).any(axis=1)


_GOAL_POINTS = _grid_in_t(COVERAGE_GRID)  # sampled once, T frame


def to_frame(points: np.ndarray, pose) -> np.ndarray:
    """Points (N x 2, T frame at `pose`) in world coordinates."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return points @ np.array([[c, s], [-s, c]]) + np.asarray(pose[:2])


def from_frame(points: np.ndarray, pose) -> np.ndarray:
    """World points (N x 2) expressed in the frame of a T at `pose`."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return (points - np.asarray(pose[:2])) @ np.array([[c, -s], [s, c]])


def coverage(block_pose, goal_pose=GOAL_POSE) -> float:
    """Fraction of the goal T's area that the block's T covers.

    The goal grid goes straight into the block frame by one composed 2-D transform, and both
    rectangles are centred on the T's x = 0 axis: this runs every env step, so it stays lean.
    """
    dyaw = goal_pose[2] - block_pose[2]
    c, s = math.cos(dyaw), math.sin(dyaw)
    cb, sb = math.cos(block_pose[2]), math.sin(block_pose[2])
    dx, dy = goal_pose[0] - block_pose[0], goal_pose[1] - block_pose[1]
    offset = np.array([dx * cb + dy * sb, -dx * sb + dy * cb])
    local = _GOAL_POINTS @ np.array([[c, s], [-s, c]]) + offset
    ax, y = np.abs(local[:, 0]), local[:, 1]
    (_, bar_y, bar_hx, bar_hy), (_, stem_y, stem_hx, stem_hy) = RECTS
    inside = (ax <= bar_hx) & (np.abs(y - bar_y) <= bar_hy)
    inside |= (ax <= stem_hx) & (np.abs(y - stem_y) <= stem_hy)
    return np.count_nonzero(inside) / len(local)


class PushTEnv(MujocoEnv):
    default_control_hz = 10.0
    max_episode_steps = 300
    tool = "pusher"
    environment_state_names = ("block.x", "block.y", "block.yaw")
    object_body_names = ("block",)

    def task_build(self, spec):
        # The T is small: look down on the pushing region from above the far side, where
        # the arm (coming from -x) hides the least of it.
        aim_camera(spec.camera("front"), (0.3, 0.0, 0.55), (-0.02, 0.0, 0.0), 50.0)
        gx, gy, gyaw = GOAL_POSE
        # Target drawn just above the table, under the block; it collides with nothing.
        add_t_block(spec.worldbody, "goal", [0.2, 0.8, 0.3, 0.5], [gx, gy, 0.001], gyaw, False)
        block = add_t_block(spec.worldbody, "block", [0.85, 0.4, 0.15, 1], [0, 0, BLOCK_Z])
        add_planar_joints(block, "block")

    def task_reset(self, rng):
        scale = self.randomization.object_pose_scale
        half = np.array(RESET_HALF) * scale
        half[2] = min(half[2], math.pi)
        for _ in range(100):
            pose = np.array(GOAL_POSE) + rng.uniform(-half, half)
            pose[2] = wrap_angle(pose[2])
            if coverage(pose) <= MAX_RESET_COVERAGE:
                break
        self.data.qpos[self._block_qadr] = pose

    def task_compiled(self):
        first = int(self.model.joint("block_x").qposadr[0])  # x, y, yaw are consecutive
        self._block_qadr = slice(first, first + 3)

    def block_pose(self) -> np.ndarray:
        """Block x, y (m) and yaw (rad, wrapped to [-pi, pi))."""
        pose = self.data.qpos[self._block_qadr].copy()
        pose[2] = wrap_angle(pose[2])
        return pose

    def task_environment_state(self):
        return self.block_pose()

    def task_evaluate(self):
        cov = coverage(self.block_pose())
        return min(cov / SUCCESS_COVERAGE, 1.0), cov >= SUCCESS_COVERAGE

    def make_expert(self):
        return PushTExpert(self)


# ---- the expert ---------------------------------------------------------------------------
def t_outline() -> np.ndarray:
    """The T's 8 corners, counter-clockwise, in the block frame."""
    bx, bh = BAR_HALF[0], 2 * BAR_HALF[1]
    sx, sh = STEM_HALF[0], 2 * STEM_HALF[1]
    corners = [(-bx, 0), (-sx, 0), (-sx, -sh), (sx, -sh), (sx, 0), (bx, 0), (bx, bh), (-bx, bh)]
    return np.array(corners, dtype=float) - (0.0, _CENTROID_Y)


def distance_to_t(points: np.ndarray) -> np.ndarray:
    """Distance from points (..., 2, block frame) to the T (0 inside)."""
    d = np.abs(points[..., None, :] - RECTS[:, :2]) - RECTS[:, 2:]
    return np.linalg.norm(np.maximum(d, 0.0), axis=-1).min(axis=-1)


def pose_error(poses: np.ndarray, goal=GOAL_POSE) -> np.ndarray:
    """Mean squared displacement (m^2) over the T's area between block poses (..., 3) and the
    goal: the centroid offset squared plus the rotation's share, 2 (1 - cos dyaw) r_g^2."""
    dxy = poses[..., :2] - np.asarray(goal[:2])
    return (dxy**2).sum(-1) + 2.0 * (1.0 - np.cos(poses[..., 2] - goal[2])) * GYRATION_SQ


class PushTExpert(Expert):
    """Plans one straight push at a time by simulating candidates, then executes it.

    Candidates: pusher start points 1 cm off each edge of the T (every 1.5 cm along it),
    pushing along the inward normal or 0.4 rad to either side. All are simulated in one batched
    `mujoco.rollout` call in a private model of the block (same parameters as the env) and a
    servoed round pusher; along each rollout the stopping point with the lowest pose error is
    kept. The push with the best log pose-error reduction per second (counting the time to get
    to its start) is executed: lift over the block if the way is blocked, descend next to the
    edge, push at constant speed, back off a few mm, plan again. A plan is a few tens of ms and
    an episode needs a handful.
    """

    gain = 0.5
    push_speed = 0.1  # m/s along the push
    push_z = 0.012  # m, pusher tip height while pushing (the block is 0.03 m tall)
    hover_z = 0.06  # m, tip height to pass over the block
    start_gap = 0.01  # m between the pusher and the edge at a push's start
    backoff = 0.006  # m to back away along the push after it ends
    max_push = 0.12  # m, longest push simulated
    plan_dt = 0.01  # s, planning model time step (rollouts match the env's 2 ms closely)
    edge_spacing = 0.015  # m between candidate contact points along an edge
    push_angles = (-0.4, 0.0, 0.4)  # rad, push direction relative to the inward normal
    workspace = ((-0.21, 0.19), (-0.3, 0.3))  # x, y range (m) both arms reach tool-down
    stage_timeout = 30  # ticks; a stage that takes longer is abandoned and the push replanned

    def __init__(self, env):
        super().__init__(env)
        env = self.env
        self.pusher_radius, friction = 0.015, (1.0, 0.005, 0.0001)  # a user arm's unknown tool
        if mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, ARM_PREFIX + "pusher") >= 0:
            pusher = env.model.geom(ARM_PREFIX + "pusher")
            self.pusher_radius, friction = float(pusher.size[0]), pusher.friction
        self._plan_model = _planning_model(self.pusher_radius, friction, self.plan_dt)
        self._plan_data = [mujoco.MjData(self._plan_model) for _ in range(2)]
        self._starts, self._dirs = self._candidates()
        n = int(round((self.start_gap + self.max_push) / (self.push_speed * self.plan_dt)))
        self._travel = (np.arange(n) + 1) * self.push_speed * self.plan_dt  # pusher path, m
        state_size = mujoco.mj_stateSize(self._plan_model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        self._state0 = np.zeros(state_size)

    def reset(self) -> None:
        super().reset()
        self.push = None  # (start xy, direction xy, length, slide there) being executed
        self.stage, self.stage_ticks = "plan", 0

    # ---- candidate pushes ---------------------------------------------------------------
    def _candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """Start points and push directions (block frame) of all candidate pushes."""
        corners = t_outline()
        starts, dirs = [], []
        clearance = self.pusher_radius + self.start_gap
        for a, b in zip(corners, np.roll(corners, -1, axis=0)):
            edge = b - a
            length = float(np.linalg.norm(edge))
            normal = np.array([edge[1], -edge[0]]) / length  # outward (CCW outline)
            k = max(1, round(length / self.edge_spacing))
            for f in (np.arange(k) + 0.5) / k:
                start = a + f * edge + clearance * normal
                if distance_to_t(start) < clearance - 1e-4:
                    continue  # in a concave corner: the pusher does not fit
                for angle in self.push_angles:
                    c, s = math.cos(angle), math.sin(angle)
                    dirs.append([-c * normal[0] + s * normal[1], -s * normal[0] - c * normal[1]])
                    starts.append(start)
        return np.array(starts), np.array(dirs)

    def _plan_push(self, block: np.ndarray, ee: np.ndarray):
        """Pick the next push: (start xy, unit direction xy, length incl. the start gap, and
        whether the way to its start is clear at pushing height)."""
        c, s = math.cos(block[2]), math.sin(block[2])
        starts = to_frame(self._starts, block)
        dirs = self._dirs @ np.array([[c, s], [-s, c]])
        path = starts[:, None, :] + dirs[:, None, :] * self._travel[:, None]
        (x0, x1), (y0, y1) = self.workspace
        inside = (path[..., 0] >= x0) & (path[..., 0] <= x1)
        inside &= (path[..., 1] >= y0) & (path[..., 1] <= y1)
        inside = np.logical_and.accumulate(inside, axis=1)  # stop where the path leaves
        keep = np.flatnonzero(inside[:, 0])
        if len(keep) == 0:  # pushed out of reach (only with widened resets): try anyway
            keep, inside[:] = np.arange(len(starts)), True
        path, inside, starts, dirs = path[keep], inside[keep], starts[keep], dirs[keep]

        ctrl = np.empty((*path.shape[:2], 4))  # pusher position and velocity references
        ctrl[..., :2], ctrl[..., 2:] = path, (dirs * self.push_speed)[:, None, :]
        state0 = np.tile(self._state0, (len(starts), 1))
        state0[:, 1:4] = block  # time, qpos (block x, y, yaw, pusher x, y), qvel = 0
        state0[:, 4:6] = starts
        states, _ = rollout.rollout(
            self._plan_model,
            self._plan_data,
            state0,
            ctrl,
            control_spec=mujoco.mjtState.mjSTATE_CTRL,
        )
        err = np.where(inside, pose_error(states[..., 1:4]), np.inf)
        stop = err.argmin(axis=1)
        best_err = err[np.arange(len(stop)), stop]

        # Time to get to each start point: slide there at pushing height if the way is clear,
        # else lift over the block.
        low = ee[2] < self.push_z + 0.01
        clear = self._clear_paths(ee[:2], starts, block) if low else np.zeros(len(starts), bool)
        dist = np.linalg.norm(starts - ee[:2], axis=1)
        reach_time = np.where(clear, 0.2 + dist / 0.2, 1.0 + dist / 0.3)
        push_time = (stop + 1) * self.plan_dt + 0.3
        # Score: how many e-folds of pose error a push removes per second it takes.
        now = pose_error(block)
        floor = 1e-7  # m^2: (0.3 mm)^2, below what matters for coverage
        rate = np.log(max(now, floor) / np.maximum(best_err, floor)) / (reach_time + push_time)
        i = int(rate.argmax())
        self.predicted_pose = states[i, stop[i], 1:4]  # where the plan leaves the block
        return starts[i], dirs[i], float(self._travel[stop[i]]), bool(clear[i])

    def _clear_paths(self, origin: np.ndarray, targets: np.ndarray, block) -> np.ndarray:
        """Whether the pusher can slide from `origin` to each target without touching the T."""
        f = np.linspace(0.0, 1.0, 12)[:, None]
        points = origin + f[None] * (targets[:, None, :] - origin)  # K x 12 x 2
        local = from_frame(points.reshape(-1, 2), block).reshape(points.shape)
        return (distance_to_t(local) > self.pusher_radius + 0.003).all(axis=1)

    # ---- execution ----------------------------------------------------------------------
    def plan(self):
        env = self.env
        ee = env.ee_pose()[0]
        tick = 1.0 / env.robot.control_hz
        self.stage_ticks += 1
        if self.stage_ticks > self.stage_timeout and self.stage != "push":
            self.stage = "plan"  # a stage that cannot finish (blocked): start over
        for _ in range(8):  # stages hand over within one tick
            if self.stage == "plan":
                self.push = self._plan_push(env.block_pose(), ee)
                if self.push[3]:
                    self._enter("slide")
                else:
                    self._enter("lift" if ee[2] < self.hover_z - 0.01 else "above")
                self.lift_xy = ee[:2].copy()
            target, done = self._stage_target(ee, tick)
            if not done:
                return target, self.home_rot, 0.0
        raise RuntimeError("PushTExpert: stages did not settle")

    def _enter(self, stage: str) -> None:
        self.stage, self.stage_ticks = stage, 0

    def _stage_target(self, ee: np.ndarray, tick: float) -> tuple[np.ndarray, bool]:
        """The current stage's end-effector target, and whether the stage just finished (then
        the next stage is entered)."""
        start, direction, length, _ = self.push
        stage = self.stage
        if stage == "lift":  # straight up, clear of the block
            target = np.array([*self.lift_xy, self.hover_z])
            if ee[2] > self.hover_z - 0.012:
                self._enter("above")
                return target, True
        elif stage == "above":  # over the start point
            target = np.array([*start, self.hover_z])
            if np.linalg.norm(ee[:2] - start) < 0.01:
                self._enter("descend")
                return target, True
        elif stage in ("descend", "slide"):  # to the start point at pushing height
            target = np.array([*start, self.push_z])
            if np.linalg.norm(ee - target) < 0.003:
                self._enter("push")
                return target, True
        elif stage == "push":  # a point moving along the push at constant speed, then stop
            travel = (self.stage_ticks + 1) * self.push_speed * tick
            along = min(travel, length)
            target = np.array([*(start + direction * along), self.push_z])
            settled = np.linalg.norm(ee - target) < 0.0015
            overdue = travel > length + 0.03
            if along >= length and (settled or overdue):
                self._enter("backoff")
                return target, True
        else:  # backoff: a few mm back along the push, so the next move does not drag it
            end = start + direction * length
            target = np.array([*(end - direction * self.backoff), self.push_z])
            if np.linalg.norm(ee - target) < 0.002:
                self._enter("plan")
                return target, True
        return target, False


def _planning_model(pusher_radius: float, pusher_friction, timestep: float) -> mujoco.MjModel:
    """The block (as in the env) and a round pusher on x/y slides that tracks a reference
    path (position servo plus velocity feedforward), nothing else. The pusher is a dynamic
    body rather than a mocap one so that contacts see its true velocity, as with the arm."""
    spec = mujoco.MjSpec()
    spec.option.timestep = timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 5
    spec.option.gravity = [0, 0, 0]
    block = add_t_block(spec.worldbody, "block", [1, 0, 0, 1], [0, 0, BLOCK_Z])
    add_planar_joints(block, "block")
    pusher = spec.worldbody.add_body(name="pusher", pos=[0, 0, BLOCK_Z])
    for axis, name in (([1, 0, 0], "pusher_x"), ([0, 1, 0], "pusher_y")):
        pusher.add_joint(name=name, type=mujoco.mjtJoint.mjJNT_SLIDE, axis=axis)
    geom = pusher.add_geom(
        type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[pusher_radius, 2 * HEIGHT_HALF, 0], mass=1.0
    )
    geom.friction = list(pusher_friction)
    geom.contype, geom.conaffinity = 2, 1
    for name in ("pusher_x", "pusher_y"):
        act = spec.add_actuator(name=name + "_pos", target=name)
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.set_to_position(kp=PLAN_KP)
    for name in ("pusher_x", "pusher_y"):
        act = spec.add_actuator(name=name + "_vel", target=name)
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.set_to_velocity(kv=PLAN_KV)
    return spec.compile()


PLAN_KP, PLAN_KV = 1e4, 200.0  # planning pusher servo (1 kg): 100 rad/s, critically damped
