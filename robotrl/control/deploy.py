"""`robotrl deploy`: run a trained policy on an env (sim by default, or a ROS 2 arm) through the
real-time control loop: asynchronous inference, a chunking strategy, the safety layer; a live
status line, a telemetry summary and a plot at the end.

In sim the loop paces the env in real time itself (sleep-then-spin to each tick), so a slow
policy costs what it would on hardware: with `sync` the robot stands still while the policy
thinks, with the asynchronous strategies it keeps moving.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robotrl.control.chunking import RTC_GUIDANCE, STRATEGIES
from robotrl.control.inference import InferenceWorker, ProcessInferenceWorker, policy_inference
from robotrl.control.loop import ControlLoop, LoopConfig
from robotrl.control.telemetry import Telemetry, TickRecord, format_summary
from robotrl.control.virtual_time import VirtualClock, VirtualTimeWorker
from robotrl.errors import RobotrlError
from robotrl.policies.evaluate import EVAL_SEED  # episodes the policy never saw in its demos


@dataclass
class DeployConfig:
    policy: str = field(default="", metadata={"help": "checkpoint or training run directory"})
    env: str | None = field(
        default=None,
        metadata={"help": "sim:TASK or ros:CONFIG; None: sim and the policy's task"},
    )
    robot: str | None = field(default=None, metadata={"help": "sim arm; None: the policy's"})
    value: str | None = field(
        default=None,
        metadata={"help": "a `finetune value` run: its critic picks among --candidates chunks"},
    )
    candidates: int = field(default=8, metadata={"help": "with --value: chunks per plan"})
    hz: float | None = field(
        default=None, metadata={"help": "control rate, Hz; None: the policy's"}
    )
    strategy: str = field(
        default="rtc", metadata={"help": "chunk execution", "choices": STRATEGIES}
    )
    episodes: int = field(default=10, metadata={"help": "number of episodes"})
    seed: int = field(default=EVAL_SEED, metadata={"help": "seed of the first episode"})
    inference_delay: float = field(
        default=0.0, metadata={"help": "extra seconds added to every inference (emulates latency)"}
    )
    execute_steps: int | None = field(
        default=None, metadata={"help": "actions per chunk; None: the policy's n_action_steps"}
    )
    rtc_guidance: str = field(
        default="identity",
        metadata={
            "help": "rtc's guided sampling: 'identity' takes the network's Jacobian as I / "
            "sqrt(alpha_bar) (no backward pass, as fast as unguided sampling), 'network' "
            "backpropagates through it (the paper's guidance, ~2x the compute)",
            "choices": RTC_GUIDANCE,
        },
    )
    forecast: bool = field(
        default=True,
        metadata={
            "help": "asynchronous strategies plan from the observation forecast for when the "
            "chunk lands (queued actions for the commanded state, last velocity for the rest)"
        },
    )
    telemetry: str | None = field(default=None, metadata={"help": "stream per-tick JSONL here"})
    plot: str | None = field(
        default="out/deploy/telemetry.png", metadata={"help": "telemetry plot (PNG); '' for none"}
    )
    realtime_sched: bool = field(
        default=False, metadata={"help": "SCHED_FIFO + mlockall for the loop, when allowed"}
    )
    cpu: int | None = field(default=None, metadata={"help": "pin the loop thread to this CPU"})
    threads: int = field(default=1, metadata={"help": "torch threads for inference"})
    inference: str = field(
        default="process",
        metadata={
            "help": "run the policy in its own process (no GIL shared with the loop) or thread",
            "choices": ("process", "thread"),
        },
    )
    virtual_time: bool = field(
        default=False,
        metadata={
            "help": "sim only: run on a simulated clock (each chunk lands after its compute "
            "time + --inference-delay in sim time), as fast as the CPU allows"
        },
    )
    status: bool = field(default=True, metadata={"help": "live status line on stderr"})
    rerun: bool = field(
        default=False,
        metadata={
            "help": "show the run in the rerun viewer: cameras (sim: rendered for it), command "
            "vs measured joints, chunk arrivals, safety interventions, lateness (robotrl[viz])"
        },
    )
    save: str | None = field(
        default=None,
        metadata={
            "help": "write the rerun recording to this .rrd file instead of opening a viewer "
            "(headless; implies --rerun)"
        },
    )
    json: bool = field(default=False, metadata={"help": "print a JSON summary"})


def deploy(cfg: DeployConfig) -> dict:
    import torch

    from robotrl.envs import make_env, parse_env_spec
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.evaluate import check_compatible, env_options

    if not cfg.policy:
        raise RobotrlError("--policy is required: a checkpoint or training run directory")
    if cfg.episodes < 1:
        raise RobotrlError(f"--episodes must be at least 1, got {cfg.episodes}")
    if cfg.inference_delay < 0:
        raise RobotrlError(f"--inference-delay must be >= 0, got {cfg.inference_delay}")
    if cfg.rtc_guidance not in RTC_GUIDANCE:
        raise RobotrlError(
            f"--rtc-guidance {cfg.rtc_guidance!r}: choose {' or '.join(RTC_GUIDANCE)}"
        )
    policy = load_policy(cfg.policy).eval()
    if cfg.value:
        from robotrl.rl.value_guided import ValueGuidedPolicy

        if cfg.strategy == "rtc":
            raise RobotrlError(
                "--value picks whole chunks: use --strategy sync, receding or ensemble"
            )
        policy = ValueGuidedPolicy.build(cfg.policy, cfg.value, cfg.candidates, policy)
    meta = policy.config.meta or {}
    spec = cfg.env or f"sim:{meta.get('task', 'PushT')}"
    kind, _ = parse_env_spec(spec)
    if cfg.virtual_time and kind != "sim":
        raise RobotrlError("--virtual-time runs sim envs only: a real arm keeps real time")
    hz = cfg.hz or float(policy.config.fps)
    if abs(hz - policy.config.fps) > 1e-6 * hz:
        raise RobotrlError(
            f"the policy acts at {policy.config.fps:g} Hz (its actions are per-step); "
            f"--hz {hz:g} would replay them at the wrong speed"
        )
    options = env_options(policy)
    viewing = cfg.rerun or cfg.save is not None
    if viewing and kind == "sim":
        options["obs_mode"] = "state+pixels"  # the cameras to watch, whatever the policy sees
    if kind == "sim":
        robot = cfg.robot or meta.get("robot", "panda")
        env = make_env(spec, robot=robot, control_hz=hz, **options)
    else:
        env = make_env(
            spec, control_hz=hz, task=meta.get("task"), action_mode=options["action_mode"]
        )
    check_compatible(policy, env)
    viewer = None
    if viewing:  # before the inference worker starts: a wrong --save ends here, in one line
        from robotrl.viz import DeployViewer

        viewer = DeployViewer(env.unwrapped.robot, cfg.save)
        env = viewer.wrap(env)  # inside the safety layer: it sees what the arm is sent
    torch.set_num_threads(max(1, cfg.threads))
    loop_config = LoopConfig(
        strategy=cfg.strategy,
        hz=hz,
        execute_steps=cfg.execute_steps,
        rtc_guidance=cfg.rtc_guidance,
        forecast=cfg.forecast,
        realtime_sched=cfg.realtime_sched,
        cpu=cfg.cpu,
    )
    clock = time.monotonic
    if cfg.virtual_time:
        clock = VirtualClock()
        infer = policy_inference(policy, cfg.seed)
        worker = VirtualTimeWorker(infer, clock, delay_s=cfg.inference_delay)
    elif cfg.inference == "process":
        checkpoint = _checkpoint_for_worker(policy) if cfg.value else cfg.policy
        worker = ProcessInferenceWorker(checkpoint, cfg.inference_delay, cfg.threads, cfg.seed)
    else:
        worker = InferenceWorker(policy_inference(policy, cfg.seed), delay_s=cfg.inference_delay)
    status = StatusLine(cfg.episodes) if cfg.status else None
    watchers = [w for w in (status, viewer) if w is not None]
    loop = ControlLoop(
        env,
        policy,
        loop_config,
        worker=worker,
        telemetry=Telemetry(cfg.telemetry),
        on_tick=_every(watchers),
        clock=clock,
    )
    try:
        results = loop.run(cfg.episodes, seed=cfg.seed)
    finally:
        if status:
            status.end()
        if viewer:
            viewer.close(loop.episodes)
        loop.close()
        env.close()
    summary = {
        "env": spec,
        "policy": cfg.policy,
        "strategy": cfg.strategy,
        "forecast": cfg.forecast,
        "hz": hz,
        "inference_delay_s": cfg.inference_delay,
        "inference": "virtual time" if cfg.virtual_time else cfg.inference,
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])),
        "mean_episode_wall_s": float(np.mean([r.wall_s for r in results])),
        "mean_episode_steps": float(np.mean([r.steps for r in results])),
        "stopped": next((r.stopped for r in results if r.stopped), None),
        "rt_problems": loop.rt_problems,
        "telemetry": loop.telemetry.summary(),
        "telemetry_file": cfg.telemetry,
        "plot": None,
        "rerun": cfg.save if cfg.save is not None else ("the rerun viewer" if cfg.rerun else None),
    }
    if cfg.plot:
        summary["plot"] = str(
            plot_telemetry(loop.telemetry.records, cfg.plot, title=_title(summary))
        )
    return summary


def _every(watchers: list):
    """One `on_tick` callback that calls each of `watchers` (None when there are none)."""
    if not watchers:
        return None

    def on_tick(record: TickRecord, loop: ControlLoop) -> None:
        for watcher in watchers:
            watcher(record, loop)

    return on_tick


def _checkpoint_for_worker(policy) -> str:
    """`policy` saved where the inference process can load it (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    from robotrl.policies.checkpoint import save_policy

    tmp = tempfile.mkdtemp(prefix="robotrl-deploy-")
    atexit.register(shutil.rmtree, tmp, True)
    return str(save_policy(policy, Path(tmp) / "policy"))


def _title(summary: dict) -> str:
    return (
        f"{summary['env']} / {summary['strategy']} at {summary['hz']:g} Hz, "
        f"+{summary['inference_delay_s'] * 1e3:.0f} ms inference delay"
    )


def format_deploy(summary: dict) -> str:
    lines = [
        f"{summary['env']}, strategy {summary['strategy']} at {summary['hz']:g} Hz: "
        f"success {summary['success_rate']:.0%} over {summary['episodes']} episodes, "
        f"mean episode {summary['mean_episode_wall_s']:.2f} s wall / "
        f"{summary['mean_episode_steps']:.0f} steps",
        format_summary(summary["telemetry"]),
    ]
    if summary["stopped"]:
        lines.append(f"stopped: {summary['stopped']}")
    lines += [f"note: {p}" for p in summary["rt_problems"]]
    if summary["telemetry_file"]:
        lines.append(f"telemetry: {summary['telemetry_file']}")
    if summary["plot"]:
        lines.append(f"plot: {summary['plot']}")
    if summary["rerun"]:
        lines.append(f"rerun recording: {summary['rerun']}")
    return "\n".join(lines)


class StatusLine:
    """One line on stderr, rewritten a few times a second: tick, lateness, queue, success."""

    def __init__(self, episodes: int, every_s: float = 0.2):
        self.episodes, self.every_s = episodes, every_s
        self.last, self.successes, self.done = -1.0, 0, 0
        self.tty = sys.stderr.isatty()

    def __call__(self, record: TickRecord, loop: ControlLoop) -> None:
        self.done, self.successes = len(loop.episodes), sum(e.success for e in loop.episodes)
        if record.t - self.last < self.every_s or not self.tty:
            return
        self.last = record.t
        sys.stderr.write(
            f"\repisode {self.done + 1}/{self.episodes}  tick {record.tick:4d}  "
            f"late {record.lateness_ms:6.3f} ms  queue {record.queue:2d}  "
            f"{record.source:<6}  success {self.successes}/{self.done}   "
        )
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def plot_telemetry(records: list[TickRecord], path: str | Path, title: str = "") -> Path:
    """PNG: lateness histogram and timeline, inference latency per chunk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    paced = [r for r in records if r.source != "wait"]
    late = np.array([r.lateness_ms for r in paced]) if paced else np.zeros(1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].hist(late, bins=60, log=True, color="tab:blue")
    axes[0].set(xlabel="tick lateness (ms)", ylabel="ticks", title="lateness histogram")
    axes[1].plot([r.t for r in paced], late, ".", ms=2, color="tab:blue")
    overruns = [r for r in paced if r.overrun]
    axes[1].plot([r.t for r in overruns], [r.lateness_ms for r in overruns], "x", color="tab:red")
    axes[1].set(xlabel="time (s)", ylabel="lateness (ms)", title="lateness timeline (x: overrun)")
    chunks = [r for r in records if r.inference_ms is not None]
    axes[2].plot(
        [r.t for r in chunks], [r.inference_ms for r in chunks], ".-", ms=3, color="tab:green"
    )
    axes[2].set(xlabel="time (s)", ylabel="latency (ms)", title="inference latency per chunk")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
