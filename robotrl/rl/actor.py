"""The actor side of human-in-the-loop RL: build the env (sim or ROS 2, always behind the
safety layer and the intervention wrapper), run episodes with the current policy and turn
them into transitions.

`run_actor` is the remote actor: it streams transitions to a learner over ZeroMQ and keeps
acting on its last weights while the learner is away (see `transport.ActorClient`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robotrl.env import OBS_MODE_HELP
from robotrl.errors import RobotrlError
from robotrl.rl.hil_episodes import (
    SUCCESS_FRAMES_HELP,
    RewardSource,
    make_hil_env,
    make_reward,
    obs_shapes_of,
    policy_fn,
    run_episode,
)

MAX_QUEUED_EPISODES = 5000  # unsent episodes kept while the learner is away


@dataclass
class ActorConfig:
    env: str = field(default="sim:Lift", metadata={"help": "sim:TASK or ros:CONFIG"})
    teleop: str = field(
        default="sim-human", metadata={"help": "sim-human, spacemouse, keyboard, gamepad, none"}
    )
    obs_mode: str = field(default="state", metadata={"help": OBS_MODE_HELP})
    connect: str = field(default="tcp://127.0.0.1:5555", metadata={"help": "learner endpoint"})
    token: str = field(default="", metadata={"help": "shared secret (default: $ROBOTRL_HIL_TOKEN)"})
    reward: str = field(
        default="sparse",
        metadata={"help": "sparse, dense or classifier", "choices": ("sparse", "dense", "classifier")},
    )  # fmt: skip
    classifier: str = field(default="", metadata={"help": "reward classifier directory"})
    success_frames: int = field(default=3, metadata={"help": SUCCESS_FRAMES_HELP})
    encoder: str = field(
        default="", metadata={"help": "frozen image encoder: the learner's --encoder"}
    )
    episodes: int = field(default=0, metadata={"help": "episodes to run (0: until stopped)"})
    timeout: float = field(default=1.0, metadata={"help": "seconds to wait for the learner"})
    actor_id: str = field(default="", metadata={"help": "name (default: host-pid)"})
    seed: int = field(default=0, metadata={"help": "seed of the first episode"})
    threads: int = field(default=1, metadata={"help": "torch threads"})


def run_actor(cfg: ActorConfig, log=print) -> dict:
    """Act, stream transitions, refresh weights; keep acting on the last weights while the
    learner is away and deliver everything once it is back. Returns the counts."""
    import os
    import secrets
    import socket

    from robotrl.rl.frozen_encoder import FrozenEncoder
    from robotrl.rl.sac import Agent
    from robotrl.rl.transport import TOKEN_ENV, ActorClient

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # The session part makes sequence numbers unique per run of an actor: a restarted actor
    # with the same name starts again from 0, and must not be taken for a resend.
    name = f"{cfg.actor_id or socket.gethostname() + '-' + str(os.getpid())}#{secrets.token_hex(3)}"
    encoder = FrozenEncoder(cfg.encoder) if cfg.encoder else None
    ros = cfg.env.startswith("ros:")
    if ros and cfg.reward == "classifier":  # the RosEnv runs the classifier: success in info
        env = make_hil_env(cfg.env, cfg.teleop, cfg.seed, ros_reward=f"classifier:{cfg.classifier}",
                           encoder=encoder)  # fmt: skip
        reward = RewardSource("sparse")
    else:
        env = make_hil_env(cfg.env, cfg.teleop, cfg.seed, cfg.obs_mode, encoder=encoder)
        reward = make_reward(cfg, encoder)
    shapes = obs_shapes_of(env)
    spec = {
        "obs_shapes": {k: list(v) for k, v in shapes.items()},
        "action_low": env.action_space.low.tolist(),
        "action_high": env.action_space.high.tolist(),
        "encoder_digest": encoder.digest if encoder else "",  # the learner checks it
    }
    client = ActorClient(cfg.connect, cfg.token or os.environ.get(TOKEN_ENV, ""), cfg.timeout)
    log(f"actor {name}: waiting for the learner at {cfg.connect}")
    while client.request("hello", {"actor": name, "spec": spec}) is None:
        pass
    agent, have = None, None
    outbox: list[tuple[int, dict, dict]] = []  # batches not yet acknowledged
    counts = {"episodes": 0, "acked_rows": 0, "acked_batches": 0, "weights": 0, "offline": 0}
    generator = torch.Generator().manual_seed(cfg.seed)
    seq, latest = 0, None
    while not cfg.episodes or counts["episodes"] < cfg.episodes:
        if agent is None or (latest is not None and latest != have):
            reply = client.request("weights", {"actor": name})
            if reply is not None:
                header, weights = reply
                if agent is None:
                    agent = Agent.from_spec(header["spec"])
                agent.load_state_dict(
                    {k: torch.from_numpy(v.copy()) for k, v in weights.items()}, strict=False
                )
                agent.eval()
                have = latest = (header["boot"], header["version"])
                counts["weights"] += 1
                log(f"actor {name}: weights version {header['version']}")
            elif agent is None:
                continue  # nothing to act with yet: keep asking
        rows, stats = run_episode(
            env, policy_fn(agent, generator=generator), cfg.seed + seq, reward, shapes
        )
        counts["episodes"] += 1
        outbox.append((seq, rows, stats))
        seq += 1
        if len(outbox) > MAX_QUEUED_EPISODES:  # learner away for long: bound the memory
            outbox.pop(0)
            log(f"actor {name}: queue full, oldest unsent episode dropped")
        while outbox:  # oldest first; stop at the first unanswered batch and act on
            batch_seq, rows, stats = outbox[0]
            header = {"actor": name, "seq": batch_seq, "episode": stats}
            try:
                reply = client.request("transitions", header, rows)
            except RobotrlError as e:
                if "token" in str(e):
                    raise
                if "hello" in str(e):  # a learner started afresh: introduce ourselves again
                    client.request("hello", {"actor": name, "spec": spec})
                    break
                log(f"actor {name}: batch {batch_seq} dropped: {e}")
                outbox.pop(0)
                continue
            if reply is None:
                counts["offline"] += 1
                if counts["offline"] % 10 == 1:
                    log(f"actor {name}: learner away, {len(outbox)} episodes queued, acting on")
                break
            outbox.pop(0)
            counts["acked_rows"] += len(rows["reward"])
            counts["acked_batches"] += 1
            latest = (reply[0]["boot"], reply[0]["version"])
        log(f"actor {name}: episode {counts['episodes']} success {int(stats['success'])} "
            f"interventions {stats['intervention_rate']:.0%} acked {counts['acked_rows']} rows")  # fmt: skip
    client.close()
    env.close()
    return counts
