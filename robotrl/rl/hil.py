"""`robotrl hil train`: human-in-the-loop RL in one process (HIL-SERL's recipe).

Episodes run with the current policy and a (real or simulated) human who may take over;
after each episode the learner makes `utd` gradient updates per new transition, sampling
half from demonstrations + interventions and half from online data. Every `eval_every`
seconds the policy alone (no human) is evaluated on unseen seeds. The run stops after
`minutes` of wall time or once an evaluation reaches `stop_at`.

From cameras on a CPU: `--encoder RUN` (a camera policy) turns the frames into features once
per env step (`frozen_encoder`), and the agent learns on those and the robot's state.

The actor/learner split of the same loop is `robotrl hil learner` + `robotrl hil actor`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from robotrl.env import OBS_MODE_HELP
from robotrl.errors import RobotrlError
from robotrl.rl.frozen_encoder import resolve_encoder
from robotrl.rl.hil_episodes import (
    SUCCESS_FRAMES_HELP,
    evaluate_and_log,
    make_hil_env,
    make_reward,
    obs_shapes_of,
    plot_hil,
    policy_fn,
    run_episode,
)
from robotrl.rl.learner import LearnConfig


@dataclass
class HILConfig(LearnConfig):
    env: str = field(default="sim:Lift", metadata={"help": "sim:TASK or ros:CONFIG"})
    teleop: str = field(
        default="sim-human", metadata={"help": "sim-human, spacemouse, keyboard, gamepad, none"}
    )
    classifier: str = field(default="", metadata={"help": "reward classifier directory"})
    success_frames: int = field(default=3, metadata={"help": SUCCESS_FRAMES_HELP})
    obs_mode: str = field(default="state", metadata={"help": OBS_MODE_HELP})


def train(cfg: HILConfig, progress: bool = True) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not cfg.demos and not (Path(cfg.out) / "state").is_dir():
        raise RobotrlError("--demos is required: a dataset of demonstrations")
    encoder = resolve_encoder(cfg.encoder, cfg.out)
    env = make_hil_env(cfg.env, cfg.teleop, cfg.seed, cfg.obs_mode, encoder=encoder)
    reward = make_reward(cfg, encoder)
    shapes = obs_shapes_of(env)
    space = env.action_space
    trainer = cfg.trainer(shapes, space.low, space.high, encoder)
    run = trainer.run
    (run / "hil_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    act = policy_fn(trainer.agent, generator=generator)
    c = trainer.counters
    started = time.monotonic() - c["seconds"]
    last_eval = last_ckpt = time.monotonic()
    if c["episodes"] == 0:  # the offline starting point, for the curve
        evaluate_and_log(trainer, cfg.env, cfg.eval_episodes, progress)
    while time.monotonic() - started < cfg.minutes * 60:
        trainer.agent.eval()
        rows, stats = run_episode(env, act, cfg.seed * 1_000_000 + c["episodes"], reward, shapes)
        trainer.add(rows)
        c["episodes"] += 1
        metrics = trainer.train(trainer.updates_owed())
        c["seconds"] = time.monotonic() - started
        record = {"episode": c["episodes"], "env_steps": c["env_steps"], "updates": c["updates"]}
        record.update({**stats, "wall_s": c["seconds"], **metrics})
        trainer.log("episodes.jsonl", record)
        if progress:
            print(
                f"\repisode {c['episodes']} success {stats['success']:d} interventions "
                f"{stats['intervention_rate']:.0%} wall {c['seconds'] / 60:.1f} min",
                end="", flush=True,
            )  # fmt: skip
        if time.monotonic() - last_eval >= cfg.eval_every:
            last_eval = time.monotonic()
            if evaluate_and_log(trainer, cfg.env, cfg.eval_episodes, progress) >= cfg.stop_at:
                break
        if time.monotonic() - last_ckpt >= cfg.checkpoint_every:
            trainer.checkpoint()
            last_ckpt = time.monotonic()
    trainer.checkpoint()
    plot_hil(run)
    env.close()
    return run
