"""The learner: owns the replay buffers and the SAC agent, trains at a fixed update-to-data
ratio, and (with `serve`) answers actors over ZeroMQ: it stores their transitions and
hands out versioned weights.

`Trainer` is the part the single-process loop (`robotrl.rl.hil.train`) uses too; `serve`
adds the transport. A run directory holds `state/` (agent, optimizer and RNGs, via
`policies.runs.save_state`), `buffers/` (online and demo buffers, safetensors),
`counters.json`, `log.jsonl`, `episodes.jsonl` and the plots. Started again on the same
directory, a learner resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from robotrl.rl.buffers import ReplayBuffer, load_demos, sample_mixed, write_json
from robotrl.rl.frozen_encoder import FEATURES, resolve_encoder
from robotrl.rl.hil_episodes import evaluate_and_log, plot_hil
from robotrl.rl.sac import Agent, SACConfig, make_optimizer, update
from robotrl.rl.transport import TOKEN_ENV


class Trainer:
    def __init__(
        self,
        run: str | Path,
        config: SACConfig,
        obs_shapes: dict,
        action_low,
        action_high,
        demos: str = "",
        demo_episodes: int = 20,
        reward: str = "sparse",
        utd: int = 1,
        capacity: int = 200_000,
        seed: int = 0,
        encoder=None,
    ):
        self.run = Path(run)
        self.encoder = encoder  # a FrozenEncoder: demo frames become its features
        self.run.mkdir(parents=True, exist_ok=True)
        self.utd = utd
        torch.manual_seed(seed)
        self.agent = Agent(config, obs_shapes, action_low, action_high)
        self.optimizer = make_optimizer(self.agent)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)
        self.rng = np.random.default_rng(seed)
        self.noise = torch.Generator().manual_seed(seed)
        self.online = ReplayBuffer(capacity)
        self.demo = ReplayBuffer(capacity)
        self.counters = {"updates": 0, "env_steps": 0, "episodes": 0, "version": 0, "seconds": 0.0}
        self.seqs: dict[str, int] = {}  # last batch number applied per actor (deduplication)
        self.last_metrics: dict = {}
        if (self.run / "state").is_dir():
            self.resume()
        elif demos:
            keys = tuple(k for k in obs_shapes if k != FEATURES)
            rows = load_demos(demos, demo_episodes, keys + (encoder.cameras if encoder else ()),
                              reward)  # fmt: skip
            if encoder:
                rows = encoder.encode_rows(rows)
            self.agent.set_obs_stats(rows)
            self.demo.add(rows)

    # ---- data ----------------------------------------------------------------------------
    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Online transitions; those a human made also go to the demo buffer (HIL-SERL)."""
        self.online.add(rows)
        human = np.asarray(rows["intervention"]).astype(bool).reshape(-1)
        if human.any():
            self.demo.add({k: np.asarray(v)[human] for k, v in rows.items()})
        self.counters["env_steps"] += len(human)

    def updates_owed(self) -> int:
        return max(0, self.utd * self.counters["env_steps"] - self.counters["updates"])

    def train(self, n: int) -> dict:
        self.agent.train()
        batch_size = self.agent.config.batch_size
        for _ in range(n):
            batch = sample_mixed(self.online, self.demo, batch_size, self.rng)
            self.last_metrics = update(self.agent, self.optimizer, batch, self.noise)
            self.counters["updates"] += 1
        return self.last_metrics

    # ---- checkpoints ---------------------------------------------------------------------
    def modules(self) -> dict:
        return {"agent": self.agent}

    def checkpoint(self) -> None:
        from robotrl.policies.runs import save_state

        self.online.save(self.run / "buffers" / "online.safetensors")
        self.demo.save(self.run / "buffers" / "demo.safetensors")
        save_state(
            self.run / "state",
            self.counters["updates"],
            self.modules(),
            self.optimizer,
            self.schedule,
            self.rng,
            self.noise,
        )
        (self.run / "spec.json").write_text(json.dumps(self.agent.spec()))
        write_json(self.run / "counters.json", {**self.counters, "seqs": self.seqs})

    def resume(self) -> None:
        from robotrl.policies.runs import load_state

        load_state(
            self.run / "state", self.modules(), self.optimizer, self.schedule, self.rng, self.noise
        )
        self.online = ReplayBuffer.load(self.run / "buffers" / "online.safetensors")
        self.demo = ReplayBuffer.load(self.run / "buffers" / "demo.safetensors")
        counters = json.loads((self.run / "counters.json").read_text())
        self.seqs = counters.pop("seqs", {})
        self.counters.update(counters)
        print(f"resuming {self.run}: {len(self.online)} online and {len(self.demo)} demo "
              f"transitions, {self.counters['updates']} updates")  # fmt: skip

    def log(self, name: str, record: dict) -> None:
        with open(self.run / name, "a") as f:
            f.write(json.dumps(record) + "\n")


def transition_schema(obs_shapes: dict, action_dim: int) -> dict[str, tuple[tuple, str]]:
    """Per-row shape and dtype of every field of a transition message."""
    schema = {}
    for key, shape in obs_shapes.items():
        dtype = "uint8" if len(shape) == 3 else "float32"
        schema[f"obs.{key}"] = schema[f"next_obs.{key}"] = (tuple(shape), dtype)
    schema["action"] = ((action_dim,), "float32")
    schema["reward"] = ((), "float32")
    schema["terminated"] = ((), "bool")
    schema["intervention"] = ((), "bool")
    return schema


def check_transitions(arrays: dict, schema: dict, max_rows: int = 100_000) -> int:
    """Rows in a transitions message, or `MessageError` if it does not match the schema."""
    from robotrl.rl.transport import MessageError

    if set(arrays) != set(schema):
        raise MessageError(f"transition fields {sorted(arrays)} are not {sorted(schema)}")
    rows = {len(a) if a.ndim else -1 for a in arrays.values()}
    if len(rows) != 1 or not 0 < (n := rows.pop()) <= max_rows:
        raise MessageError(f"transition fields must share a row count in 1..{max_rows}")
    for name, (shape, dtype) in schema.items():
        a = arrays[name]
        if a.shape[1:] != shape or a.dtype.name != dtype:
            raise MessageError(
                f"{name} is {a.dtype.name}{list(a.shape[1:])}, expected {dtype}{list(shape)}"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise MessageError(f"{name} holds NaN or inf")
    return n


@dataclass
class LearnConfig:
    """What the learner needs, in the single-process loop and as a server alike."""

    demos: str = field(default="", metadata={"help": "demonstration dataset (LeRobot v3)"})
    demo_episodes: int = field(default=20, metadata={"help": "demonstrations to use"})
    out: str = field(default="runs/hil", metadata={"help": "run directory (resumes)"})
    reward: str = field(
        default="sparse",
        metadata={"help": "sparse (task success), dense, or classifier", "choices": ("sparse", "dense", "classifier")},
    )  # fmt: skip
    minutes: float = field(default=30.0, metadata={"help": "wall-time budget (0: no limit)"})
    stop_at: float = field(default=1.0, metadata={"help": "stop once eval success reaches this"})
    utd: int = field(default=1, metadata={"help": "gradient updates per env step"})
    batch_size: int = field(default=256, metadata={"help": "transitions per update"})
    critics: int = field(default=2, metadata={"help": "critic ensemble size"})
    hidden: int = field(default=256, metadata={"help": "hidden units per layer"})
    gamma: float = field(default=0.99, metadata={"help": "discount"})
    bc_weight: float = field(default=1.0, metadata={"help": "BC pull toward demos/interventions"})
    gripper_critic: bool = field(default=False, metadata={"help": "discrete gripper critic"})
    eval_every: float = field(default=60.0, metadata={"help": "seconds between evaluations"})
    eval_episodes: int = field(default=20, metadata={"help": "episodes per evaluation"})
    checkpoint_every: float = field(default=120.0, metadata={"help": "seconds between checkpoints"})
    seed: int = field(default=0, metadata={"help": "seed"})
    threads: int = field(default=1, metadata={"help": "torch threads"})
    encoder: str = field(
        default="",
        metadata={"help": "frozen image encoder: a camera policy run/checkpoint whose "
                  "image_encoder turns the frames into features once per step; the agent "
                  "learns on them and the state (needs --obs-mode pixels; '' : none)"},
    )  # fmt: skip

    def sac(self, encoder=None) -> SACConfig:
        return SACConfig(
            encoder=encoder.path if encoder else "",
            encoder_digest=encoder.digest if encoder else "",
            hidden=self.hidden,
            critics=self.critics,
            critic_subsample=min(2, self.critics),
            gamma=self.gamma,
            batch_size=self.batch_size,
            bc_weight=self.bc_weight,
            gripper_critic=self.gripper_critic,
        )

    def trainer(self, obs_shapes: dict, low, high, encoder=None) -> Trainer:
        demo_reward = "dense" if self.reward == "dense" else "sparse"
        return Trainer(
            self.out, self.sac(encoder), obs_shapes, low, high, self.demos, self.demo_episodes,
            demo_reward, self.utd, seed=self.seed, encoder=encoder,
        )  # fmt: skip


@dataclass
class LearnerConfig(LearnConfig):
    bind: str = field(default="tcp://127.0.0.1:5555", metadata={"help": "ZeroMQ endpoint"})
    token: str = field(default="", metadata={"help": f"shared secret (default: ${TOKEN_ENV})"})
    eval_env: str = field(default="", metadata={"help": "sim:TASK to evaluate on ('' : none)"})
    publish_every: int = field(default=200, metadata={"help": "updates between weight versions"})


class LearnerService:
    """The learner's answers to actors (the `handler` of a `LearnerServer`)."""

    def __init__(self, cfg: LearnerConfig):
        self.cfg = cfg
        self.trainer: Trainer | None = None
        self.boot = secrets.token_hex(4)  # tells actors a restarted learner from the old one
        self.weights: tuple[int, dict] | None = None
        self.schema: dict = {}
        self.encoder = resolve_encoder(cfg.encoder, cfg.out)
        if (Path(cfg.out) / "spec.json").exists():  # resuming: the agent is known already
            spec = json.loads((Path(cfg.out) / "spec.json").read_text())
            self._start(spec["obs_shapes"], spec["action_low"], spec["action_high"])

    def _start(self, obs_shapes: dict, low, high) -> None:
        shapes = {k: tuple(v) for k, v in obs_shapes.items()}
        self.trainer = self.cfg.trainer(shapes, low, high, self.encoder)
        self.schema = transition_schema(self.trainer.agent.obs_shapes, len(low))
        self.publish()
        self.trainer.checkpoint()

    def publish(self) -> None:
        """A new weights version (actors fetch it when their version differs)."""
        self.trainer.counters["version"] += 1
        state = self.trainer.agent.acting_state()
        arrays = {k: v.detach().numpy().copy() for k, v in state.items()}
        self.weights = (self.trainer.counters["version"], arrays)
        self.published_at = self.trainer.counters["updates"]

    def handle(self, header: dict, arrays: dict):
        from robotrl.rl.transport import MessageError

        kind, actor = header["kind"], str(header.get("actor", ""))[:64]
        if kind == "hello":
            spec = header.get("spec")
            mine = self.encoder.digest if self.encoder else ""
            if isinstance(spec, dict) and str(spec.get("encoder_digest", "")) != mine:
                raise MessageError(
                    f"the actor's image encoder ({spec.get('encoder_digest') or 'none'}) is not "
                    f"the learner's ({mine or 'none'}): give both the same --encoder"
                )
            if self.trainer is None:
                if not isinstance(spec, dict):
                    raise MessageError("the first hello must carry the env spec")
                self._start(spec["obs_shapes"], spec["action_low"], spec["action_high"])
                print(f"learner: agent built from {actor}'s env spec", flush=True)
            print(f"learner: actor {actor} connected", flush=True)
            return "welcome", self._version(), {}
        if self.trainer is None:
            raise MessageError("no agent yet: say hello first")
        if kind == "transitions":
            seq = header.get("seq")
            if type(seq) is not int:
                raise MessageError("transitions need an integer seq")
            n = check_transitions(arrays, self.schema)
            if seq > self.trainer.seqs.get(actor, -1):  # a resend is acknowledged, not stored
                self.trainer.add({k: np.array(v) for k, v in arrays.items()})
                self.trainer.seqs[actor] = seq
                self._log_episode(header.get("episode"), n)
            return "ack", {"seq": seq, **self._version()}, {}
        if kind == "weights":
            version, weights = self.weights
            return "weights", {**self._version(), "spec": self.trainer.agent.spec()}, weights
        if kind == "status":
            return "status", {"counters": self.trainer.counters, "online": len(self.trainer.online),
                              "demo": len(self.trainer.demo)}, {}  # fmt: skip
        raise MessageError(f"unknown message kind {kind!r}")

    def _version(self) -> dict:
        return {"boot": self.boot, "version": self.weights[0] if self.weights else 0}

    def _log_episode(self, stats, n: int) -> None:
        if not isinstance(stats, dict):
            return
        c = self.trainer.counters
        c["episodes"] += 1
        keep = {k: v for k, v in stats.items() if isinstance(v, (int, float, bool))}
        self.trainer.log("episodes.jsonl", {**keep, "episode": c["episodes"], "env_steps":
                         c["env_steps"], "updates": c["updates"], "wall_s": c["seconds"]})  # fmt: skip


def serve(cfg: LearnerConfig) -> Path:
    """Run the learner until `minutes` pass, an evaluation reaches `stop_at`, or SIGTERM/^C."""
    import os
    import signal

    from robotrl.rl.transport import LearnerServer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    token = cfg.token or os.environ.get(TOKEN_ENV, "")
    service = LearnerService(cfg)
    server = LearnerServer(cfg.bind, token, service.handle)
    print(f"learner: listening on {cfg.bind}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    t = service.trainer
    started = time.monotonic() - (t.counters["seconds"] if t else 0.0)
    last_ckpt = last_eval = time.monotonic()
    try:
        while not cfg.minutes or time.monotonic() - started < cfg.minutes * 60:
            t = service.trainer
            owed = t.updates_owed() if t else 0
            server.poll(0 if owed else 20)
            if not t:
                continue
            t.counters["seconds"] = time.monotonic() - started
            if owed:
                t.train(min(owed, 10))  # small slices: actors get answers quickly
            if t.counters["updates"] - service.published_at >= cfg.publish_every:
                service.publish()
            if time.monotonic() - last_ckpt >= cfg.checkpoint_every:
                t.checkpoint()
                last_ckpt = time.monotonic()
            if cfg.eval_env and time.monotonic() - last_eval >= cfg.eval_every:
                last_eval = time.monotonic()
                if evaluate_and_log(t, cfg.eval_env, cfg.eval_episodes) >= cfg.stop_at:
                    break
    except KeyboardInterrupt:
        print("learner: stopping", flush=True)
    finally:
        server.close()
        if service.trainer:
            service.trainer.checkpoint()
    if service.trainer:
        plot_hil(service.trainer.run)
    return Path(cfg.out)
