"""CLI of human-in-the-loop RL: `robotrl hil train|learner|actor|classifier|conrft`.
`register` adds the `hil` command to the top-level subparsers of `robotrl.cli.main`."""

from __future__ import annotations

import json

from robotrl.cli.config import add_config_args, config_from_args
from robotrl.rl.actor import ActorConfig
from robotrl.rl.hil import HILConfig
from robotrl.rl.learner import LearnerConfig


def cmd_train(args) -> int:
    from robotrl.rl.hil import train

    run = train(config_from_args(HILConfig, args))
    print(f"trained {run}: curves {run / 'hil.png'}, log {run / 'log.jsonl'}")
    return 0


def cmd_learner(args) -> int:
    from robotrl.rl.learner import serve

    run = serve(config_from_args(LearnerConfig, args))
    print(f"learner stopped: {run}")
    return 0


def cmd_actor(args) -> int:
    from robotrl.rl.actor import run_actor

    counts = run_actor(config_from_args(ActorConfig, args), log=lambda m: print(m, flush=True))
    print(json.dumps(counts))
    return 0


def cmd_classifier(args) -> int:
    from robotrl.rl.classifier import ClassifierConfig, train_classifier

    result = train_classifier(config_from_args(ClassifierConfig, args))
    print(json.dumps(result))
    return 0


def cmd_conrft(args) -> int:
    from robotrl.rl.conrft import ConRFTConfig, conrft

    result = conrft(config_from_args(ConRFTConfig, args))
    print(json.dumps(result))
    return 0


def register(sub) -> None:
    from robotrl.rl.classifier import ClassifierConfig
    from robotrl.rl.conrft import ConRFTConfig

    hil = sub.add_parser("hil", help="human-in-the-loop RL (HIL-SERL, ConRFT)")
    hil_sub = hil.add_subparsers(dest="what", required=True)
    for name, config, func, text in [
        ("train", HILConfig, cmd_train, "actor and learner in one process"),
        ("learner", LearnerConfig, cmd_learner, "train and serve weights to actors (ZeroMQ)"),
        ("actor", ActorConfig, cmd_actor, "run an env with a policy and a human"),
        ("classifier", ClassifierConfig, cmd_classifier, "train a success classifier"),
        ("conrft", ConRFTConfig, cmd_conrft, "fine-tune a consistency policy (ConRFT)"),
    ]:
        p = hil_sub.add_parser(name, help=text)
        add_config_args(p, config)
        p.set_defaults(func=func)
