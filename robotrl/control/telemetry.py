"""Per-tick telemetry of the control loop: one `TickRecord` per tick, streamed to a JSONL file
when asked, summarised at the end (lateness, observation age, inference latency, overruns)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class TickRecord:
    episode: int
    tick: int
    t: float  # s since the loop started
    lateness_ms: float  # how long after its deadline the tick started
    overrun: bool  # the previous tick's work ran past this tick's deadline
    work_ms: float  # from the tick's start to the env step's return
    obs_age_ms: float  # age of the observation the action was chosen on
    queue: int  # actions queued for this tick and later
    source: str  # "policy", "hold" (no fresh action) or "wait" (the loop waited for a chunk)
    inference_ms: float | None = None  # latency of a chunk that arrived this tick
    waited_ms: float = 0.0  # time the loop stood still waiting for a chunk (sync, first chunk)
    dropped: int = 0  # actions of an arriving chunk whose tick had passed
    safety: dict = field(default_factory=dict)  # interventions of this tick's command
    success: bool = False


def _stats(values, scale: float = 1.0) -> dict:
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if not len(values):
        return {"n": 0, "median": None, "p99": None, "max": None}
    values = values * scale
    return {
        "n": int(len(values)),
        "median": round(float(np.median(values)), 4),
        "p99": round(float(np.quantile(values, 0.99)), 4),
        "max": round(float(values.max()), 4),
    }


class Telemetry:
    def __init__(self, path: str | Path | None = None):
        self.records: list[TickRecord] = []
        self.path = Path(path) if path else None
        self._file = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # open for the loop's whole life (closed by `close`), flushed per episode
            self._file = open(self.path, "w", buffering=1 << 16)  # noqa: SIM115

    def add(self, record: TickRecord) -> None:
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(asdict(record)) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def summary(self, skip_ticks: int = 0) -> dict:
        """Figures over all ticks but each episode's first `skip_ticks` (warm-up)."""
        r = [x for x in self.records if x.tick >= skip_ticks]
        paced = [x for x in r if x.source != "wait"]  # a tick after a wait was re-anchored
        return {
            "ticks": len(r),
            "lateness_ms": _stats([x.lateness_ms for x in paced]),
            "overruns": sum(x.overrun for x in r),
            "work_ms": _stats([x.work_ms for x in r]),
            "obs_age_ms": _stats([x.obs_age_ms for x in r]),
            "inference_ms": _stats([x.inference_ms for x in r]),
            "chunks": sum(x.inference_ms is not None for x in r),
            "held_ticks": sum(x.source == "hold" for x in r),
            "waited_s": round(sum(x.waited_ms for x in r) / 1e3, 4),
            "dropped_actions": sum(x.dropped for x in r),
            "safety": _count_safety(r),
        }


def _count_safety(records) -> dict:
    counts: dict[str, int] = {}
    for record in records:
        for kind, n in record.safety.items():
            counts[kind] = counts.get(kind, 0) + n
    return counts


def format_summary(summary: dict) -> str:
    def row(name: str, s: dict) -> str:
        if not s["n"]:
            return f"{name:<22} -"
        return f"{name:<22} median {s['median']:8.3f}  p99 {s['p99']:8.3f}  max {s['max']:8.3f}"

    lines = [
        f"ticks {summary['ticks']}, overruns {summary['overruns']}, held {summary['held_ticks']}, "
        f"chunks {summary['chunks']}, dropped actions {summary['dropped_actions']}, "
        f"waited for the policy {summary['waited_s']:.2f} s",
        row("lateness (ms)", summary["lateness_ms"]),
        row("tick work (ms)", summary["work_ms"]),
        row("observation age (ms)", summary["obs_age_ms"]),
        row("inference (ms)", summary["inference_ms"]),
    ]
    if summary["safety"]:
        lines.append(
            "safety interventions: " + ", ".join(f"{k} {v}" for k, v in summary["safety"].items())
        )
    return "\n".join(lines)
