"""`MujocoEnv`: a `RobotEnv` backed by MuJoCo. Tasks subclass it and add objects, a reset
distribution, reward and success.

One `step` runs the controller once and `sim_dt`-sized physics steps for one control period
(`ctrl_dt = 1 / control_hz`), in a single `mj_step(nstep=...)` call.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robotrl.env import CameraSpec, RobotEnv, RobotSpec
from robotrl.errors import RobotrlError, UnknownNameError
from robotrl.sim.arms import ArmModel, resolve_arm
from robotrl.sim.controllers import ArmHandles, make_controller
from robotrl.sim.randomize import Randomization, Randomizer
from robotrl.sim.scene import ARM_PREFIX, build_scene

OBS_MODES = ("state", "pixels", "state+pixels")
REWARD_TYPES = ("dense", "sparse")


class MujocoEnv(RobotEnv):
    """Subclasses set the class attributes below and implement the `task_*` hooks."""

    default_control_hz: float = 20.0
    default_action_mode: str = "ee_delta"
    max_episode_steps: int = 200
    tool: str = "gripper"  # or "pusher"
    environment_state_names: tuple[str, ...] = ()
    object_body_names: tuple[str, ...] = ()  # bodies the randomizer recolours and reweighs

    def __init__(
        self,
        robot: str | ArmModel = "panda",
        obs_mode: str = "state",
        action_mode: str | None = None,
        control_hz: float | None = None,
        sim_dt: float = 0.002,
        cameras: tuple[str, ...] = ("front", "wrist"),
        image_size: tuple[int, int] = (96, 96),
        reward_type: str = "dense",
        randomization: Randomization | None = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
        realtime: bool = False,
    ):
        super().__init__(realtime=realtime)
        _check_choice("obs_mode", obs_mode, OBS_MODES)
        _check_choice("reward_type", reward_type, REWARD_TYPES)
        if render_mode not in (None, "rgb_array"):
            raise UnknownNameError(f"unknown render_mode '{render_mode}': only rgb_array")
        control_hz = float(self.default_control_hz if control_hz is None else control_hz)
        if not 1.0 <= control_hz <= 1.0 / sim_dt:
            raise RobotrlError(f"control_hz {control_hz} must be in [1, {1 / sim_dt:.0f}] Hz")
        for name, size in (("image_size", image_size), ("render_size", render_size)):
            if len(size) != 2 or not all(
                isinstance(n, int | np.integer) and 1 <= n <= 4096 for n in size
            ):
                raise RobotrlError(f"{name} must be (height, width) in 1..4096 pixels, got {size}")
        self.n_substeps = max(1, round(1.0 / (control_hz * sim_dt)))
        self.obs_mode, self.reward_type, self.render_mode = obs_mode, reward_type, render_mode
        if max_episode_steps is not None:
            if max_episode_steps < 1:
                raise RobotrlError(f"max_episode_steps must be at least 1, got {max_episode_steps}")
            self.max_episode_steps = max_episode_steps

        self.arm_model = resolve_arm(robot, self.tool)
        spec = build_scene(self.arm_model, sim_dt)
        self.task_build(spec)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.arm = self._arm_handles()
        self.task_compiled()
        self.controller = make_controller(
            action_mode or self.default_action_mode, self.model, self.arm, control_hz
        )
        self.camera_names = (
            tuple(self._camera_name(c) for c in cameras) if "pixels" in obs_mode else ()
        )
        self.robot = RobotSpec(
            robot_type=self.arm_model.name,
            control_hz=1.0 / (self.n_substeps * sim_dt),
            action=self.controller.spec,
            joint_names=self.arm_model.joint_names,
            state_names=self._state_names(),
            # `pixels`: what a real arm observes (its own state and cameras), no object pose
            environment_state_names=() if obs_mode == "pixels" else self.environment_state_names,
            cameras=tuple(CameraSpec(c, *image_size) for c in cameras) if self.camera_names else (),
        )
        self._init_spaces()
        objects = [self.model.body(b).id for b in self.object_body_names]
        self.randomizer = Randomizer(self.model, randomization, objects) if randomization else None
        self.randomization = randomization or Randomization()
        self._renderer = _renderer(self.model, image_size) if self.camera_names else None
        self._view_renderer = None
        self._render_size = render_size
        self._steps = 0
        self._quat = np.empty(4)

    # ---- task hooks ---------------------------------------------------------------------
    def task_build(self, spec: mujoco.MjSpec) -> None:
        """Add the task's objects to the scene."""

    def task_compiled(self) -> None:
        """Look up ids and views into the compiled model/data once (the step loop is hot)."""

    def task_reset(self, rng: np.random.Generator) -> None:
        """Place objects (write `self.data.qpos`) for a new episode."""

    def task_environment_state(self) -> np.ndarray:
        return np.zeros(0)

    def task_evaluate(self) -> tuple[float, bool]:
        """Dense reward and success for the current state."""
        raise NotImplementedError

    def make_expert(self):
        raise NotImplementedError(f"{type(self).__name__} has no scripted expert")

    # ---- RobotEnv -----------------------------------------------------------------------
    def _reset(self, seed, options):
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        if self.randomizer:
            self.randomizer.apply(self.np_random)
        d.qpos[self.arm.qpos_adr] = self.arm.home
        d.ctrl[self.arm.actuator_ids] = self.arm.home
        if self.arm.gripper_actuator is not None:
            d.ctrl[self.arm.gripper_actuator] = self.arm.gripper_range[1]
            d.qpos[self._finger_qadr] = self.arm_model.gripper_open
        mujoco.mj_forward(m, d)
        self.task_reset(self.np_random)
        mujoco.mj_forward(m, d)
        self.controller.reset(d)
        self._steps = 0
        return self._observation(), {"is_success": False}

    def _step(self, action):
        self.controller.apply(action, self.data)
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self._steps += 1
        reward, success = self.task_evaluate()
        if self.reward_type == "sparse":
            reward = float(success)
        truncated = self._steps >= self.max_episode_steps
        return self._observation(), reward, success, truncated, {"is_success": success}

    def render(self):
        if self._view_renderer is None:
            self._view_renderer = _renderer(self.model, self._render_size)
        self._view_renderer.update_scene(self.data, "overview")
        return self._view_renderer.render()

    def close(self):
        for r in (self._renderer, self._view_renderer):
            if r is not None:
                r.close()
        self._renderer = self._view_renderer = None

    # ---- internals ----------------------------------------------------------------------
    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector site position (m) and rotation matrix, world frame."""
        site = self.data.site(self.arm.ee_site)
        return site.xpos.copy(), site.xmat.reshape(3, 3).copy()

    def gripper_opening(self) -> float:
        """0 closed, 1 fully open (from the finger joint, or the commanded servo target)."""
        if self.arm.gripper_actuator is None:
            return 0.0
        if self._finger_qadr:
            opening = self.data.qpos[self._finger_qadr[0]]
            return float(opening) / max(self.arm_model.gripper_open, 1e-9)
        lo, hi = self.arm.gripper_range
        return float((self.data.ctrl[self.arm.gripper_actuator] - lo) / (hi - lo))

    def contact_partners(self, body: int) -> np.ndarray:
        """Ids of the bodies in contact with `body` (one vectorized pass over contacts)."""
        n = self.data.ncon
        bodies = self.model.geom_bodyid
        b1 = bodies[self.data.contact.geom1[:n]]
        b2 = bodies[self.data.contact.geom2[:n]]
        return np.concatenate([b2[b1 == body], b1[b2 == body]])

    def grasped(self, body: int) -> bool:
        """Whether every finger of the gripper touches `body`."""
        if not self._finger_bodies or self.data.ncon == 0:
            return False
        partners = self.contact_partners(body)
        return all(finger in partners for finger in self._finger_bodies)

    def _observation(self) -> dict[str, np.ndarray]:
        d = self.data
        obs = {}
        # Proprioception is always observed (a real arm always reports its joints); obs_mode
        # chooses the cameras. The safety layer needs the end-effector pose in every mode.
        state = np.zeros(len(self.robot.state_names), np.float32)
        n, site = len(self.arm.qpos_adr), self.arm.ee_site
        state[:n] = d.qpos[self.arm.qpos_adr]
        if self.arm.gripper_actuator is not None:
            state[n] = self.gripper_opening()
            n += 1
        state[n : n + 3] = d.site_xpos[site]
        mujoco.mju_mat2Quat(self._quat, d.site_xmat[site])
        state[n + 3 :] = self._quat
        obs["state"] = state
        if self.robot.environment_state_names:
            obs["environment_state"] = self.task_environment_state().astype(np.float32)
        for cam_id, cam in zip(self.camera_names, self.robot.cameras):
            self._renderer.update_scene(d, cam_id)
            obs[f"images.{cam.name}"] = self._renderer.render()
        return obs

    def _state_names(self) -> tuple[str, ...]:
        names = [f"{j}.pos" for j in self.arm_model.joint_names]
        if self.arm.gripper_actuator is not None:
            names.append("gripper.opening")
        names += ["ee.x", "ee.y", "ee.z", "ee.qw", "ee.qx", "ee.qy", "ee.qz"]
        return tuple(names)

    def _camera_name(self, name: str) -> str:
        for candidate in (name, ARM_PREFIX + name):
            if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, candidate) >= 0:
                return candidate
        known = [self.model.camera(i).name.removeprefix(ARM_PREFIX) for i in range(self.model.ncam)]
        raise UnknownNameError(f"unknown camera '{name}': this scene has {', '.join(known)}")

    def _arm_handles(self) -> ArmHandles:
        m, arm = self.model, self.arm_model
        joints = [m.joint(ARM_PREFIX + j) for j in arm.joint_names]
        acts = [m.actuator(ARM_PREFIX + a).id for a in arm.actuator_names]
        gripper = m.actuator(ARM_PREFIX + arm.gripper_actuator).id if arm.gripper_actuator else None
        self._finger_qadr = [int(m.joint(ARM_PREFIX + j).qposadr[0]) for j in arm.gripper_joints]
        self._finger_bodies = [int(m.joint(ARM_PREFIX + j).bodyid[0]) for j in arm.gripper_joints]
        return ArmHandles(
            qpos_adr=np.array([j.qposadr[0] for j in joints]),
            dof_adr=np.array([j.dofadr[0] for j in joints]),
            actuator_ids=np.array(acts),
            lower=np.array([j.range[0] for j in joints]),
            upper=np.array([j.range[1] for j in joints]),
            home=np.array(arm.home_qpos, dtype=float),
            ee_site=m.site(ARM_PREFIX + arm.ee_site).id,
            gripper_actuator=gripper,
            gripper_range=tuple(m.actuator_ctrlrange[gripper]) if gripper is not None else (0, 0),
        )


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UnknownNameError(f"unknown {what} '{value}': choose {', '.join(choices)}")


def _renderer(model, size: tuple[int, int]):
    """An offscreen renderer, or one line when the model's framebuffer is too small."""
    try:
        return mujoco.Renderer(model, *size)
    except ValueError as e:  # larger than the model's offscreen buffer
        raise RobotrlError(f"image size {size}: {str(e).splitlines()[0]}") from None
