"""Episodes on a Ray cluster: `collect --teleop expert --ray` here, and the connection that
`eval --ray` (`policies/evaluate.py`) shares (extra `[dist]`).

`--ray` takes a cluster address (`ray://host:10001` or `host:6379`), `auto` (the cluster this
machine belongs to, e.g. after `ray start --head`), or `local` (a Ray instance started here
for this command). Every node needs robotrl installed.
- eval: the policy travels as its checkpoint's files (safetensors + JSON, never a pickle);
  episode i runs on seed S + i exactly as in one process or `--workers`, so the figures are
  the same; Ray re-runs a batch whose worker died.
- collect: one actor per worker CPU, each recording into a dataset of its own under
  `OUT.ray/` (on several nodes, OUT must be on storage every node sees); the driver hands out seeds one episode at a time and, at the end, merges the
  saved episodes in seed order into `--out` (appending to one already there) with the
  crash-safe merge. A worker that dies loses its in-flight episode only: Ray restarts the
  actor (its dataset recovers as after any crash) and the seed is recorded again.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from robotrl.errors import RobotrlError


def connect(address: str):
    """The `ray` module, connected to the cluster `address` names."""
    try:
        import ray
    except ImportError:
        raise RobotrlError("--ray needs Ray: pip install 'robotrl[dist]'") from None
    if not ray.is_initialized():
        env_vars = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        try:
            ray.init(
                address=None if address == "local" else address,
                runtime_env={"env_vars": env_vars},
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
        except (ConnectionError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "AuthToken" in repr(e.__cause__) and os.environ.get("RAY_AUTH_MODE") != "token":
                first += "; the cluster wants its token: export RAY_AUTH_MODE=token"
            raise RobotrlError(f"--ray {address}: cannot reach a Ray cluster ({first})") from None
    return ray


def worker_count(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# ---- collect -------------------------------------------------------------------------------
class EpisodeRecorder:
    """A Ray actor: a `CollectSession` on a dataset of its own, one episode per call."""

    def __init__(self, cfg_fields: dict, part: str):
        from robotrl.collect import CollectConfig, CollectSession

        cfg = CollectConfig(**{**cfg_fields, "out": part})
        self.session = CollectSession(cfg)

    def record(self, seed: int) -> tuple[str, int | None]:
        """(outcome, index of the saved episode in this worker's dataset or None)."""
        from robotrl.collect import CollectSummary

        summary = CollectSummary()
        outcome = self.session.record(seed, summary, _Silent())
        saved = self.session.recorder.writer.num_episodes - 1 if summary.saved else None
        return outcome, saved

    def close(self) -> None:
        self.session.close()


class _Silent:
    """A status line that says nothing: workers have no terminal."""

    def resetting(self, summary) -> None:
        pass

    def update(self, summary, steps, achieved) -> None:
        pass


def collect_on_ray(cfg):
    """`collect` with the scripted expert on a Ray cluster's CPUs; see the module docstring."""
    from dataclasses import asdict

    from robotrl.collect import CollectSummary, check_collect_config
    from robotrl.data.edit import merge_episodes, swap_in

    check_collect_config(cfg)
    if cfg.teleop != "expert" or cfg.env:
        raise RobotrlError("--ray records with the scripted expert in simulation (--teleop expert)")
    ray = connect(cfg.ray)
    out = Path(cfg.out)
    parts_root = out.with_name(out.name + ".ray")
    fields = {**asdict(cfg), "ray": None}
    actor_class = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(EpisodeRecorder)
    workers = [
        actor_class.remote(fields, str(parts_root / f"worker-{k}"))
        for k in range(worker_count(ray))
    ]
    summary, start = CollectSummary(), time.monotonic()
    saved: dict[int, tuple[str, int]] = {}  # seed -> (worker dataset, episode index)
    next_seed, rerun = cfg.seed, []
    in_flight: dict = {}  # ObjectRef -> (worker, seed)
    bar = tqdm(total=cfg.episodes, desc=f"{cfg.task} (ray)", unit="ep")
    try:
        idle = list(range(len(workers)))
        while len(saved) < cfg.episodes:
            while idle and len(saved) + len(in_flight) < cfg.episodes:
                if rerun:
                    seed = rerun.pop()
                else:
                    seed, next_seed = next_seed, next_seed + 1
                k = idle.pop()
                in_flight[workers[k].record.remote(seed)] = (k, seed)
            (done,), _ = ray.wait(list(in_flight), num_returns=1)
            k, seed = in_flight.pop(done)
            idle.append(k)
            try:
                outcome, index = ray.get(done)
            except ray.exceptions.RayActorError:
                print(f"robotrl: worker {k} died; seed {seed} is recorded again", flush=True)
                rerun.append(seed)
                continue
            if index is None:
                summary.discarded += 1
                continue
            saved[seed] = (str(parts_root / f"worker-{k}"), index)
            summary.successes += outcome == "success"
            bar.update(1)
        ray.get([w.close.remote() for w in workers])
    finally:
        bar.close()
    picks = [saved[seed] for seed in sorted(saved)]
    if (out / "meta/info.json").is_file():  # append to the dataset already there
        from robotrl.data.dataset import Dataset

        existing = [(out, i) for i in range(Dataset(out).num_episodes)]
        swap_in(merge_episodes(existing + picks, out.with_name(out.name + ".merged")), out)
    else:
        merge_episodes(picks, out)
    shutil.rmtree(parts_root)
    summary.saved = len(picks)
    summary.wall_time_s = time.monotonic() - start
    return summary
