"""Live views and recordings with rerun (the `viz` extra: `pip install 'robotrl[viz]'`).

`robotrl dataset view --rerun`: each episode's cameras and its state/action plots on the
dataset's timeline. `robotrl deploy --rerun`: the cameras, the command sent to the arm (after
the safety layer) against the state it measured, chunk arrivals, safety interventions and
tick lateness, as the loop runs.

Without a file the recording streams to a rerun viewer (one already listening, else a new
one); with `save` it is written to that .rrd file instead, headless (`rerun F.rrd` opens it).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

from robotrl.errors import RobotrlError

VIEWER_PORT = 9876  # rerun's default gRPC port
MISSING = "--rerun needs the rerun SDK: pip install 'robotrl[viz]'"
STATE_KEYS = ("observation.state", "observation.environment_state", "action")


def _rerun():
    try:
        import rerun
        import rerun.blueprint
    except ImportError:
        raise RobotrlError(MISSING) from None
    return rerun


def open_recording(name: str, save: str | Path | None, blueprint=None):
    """A rerun recording stream for `name`, written to `save` (an .rrd file) or streamed to
    a viewer; `blueprint` lays out the viewer's panels."""
    rr = _rerun()
    if save is not None and Path(save).suffix != ".rrd":
        raise RobotrlError(f"--save {save}: a rerun recording is an .rrd file")
    rec = rr.RecordingStream(f"robotrl_{name}")
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        rec.save(save, default_blueprint=blueprint)
        return rec
    listening = _viewer_listening()
    if (
        not listening
        and sys.platform == "linux"
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        raise RobotrlError(
            "no display for a rerun viewer and none listening on port "
            f"{VIEWER_PORT}: --save F.rrd writes a recording to open elsewhere (rerun F.rrd)"
        )
    rec.spawn(port=VIEWER_PORT, default_blueprint=blueprint)  # connects to a running one
    return rec


def close_recording(rec, save: str | Path | None) -> None:
    """Everything logged reaches the file or the viewer (a viewer closed meanwhile is noted)."""
    try:
        rec.flush(timeout_sec=1e9 if save is not None else 10.0)
    except RuntimeError as e:
        print(f"robotrl: the rerun viewer did not take the recording: {e}", file=sys.stderr)
    finally:
        rec.disconnect()


def _viewer_listening() -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", VIEWER_PORT)) == 0


# ---- datasets ---------------------------------------------------------------------------
def view_dataset(dataset, episodes, save: str | Path | None = None) -> None:
    """Log `episodes` of `dataset`: under `episode_N/`, `cameras/<name>` (JPEG frames) and
    one plot per state/action feature, on the `time` (the dataset's timestamps) and `frame`
    timelines; one viewer tab per episode."""
    from robotrl.data.layout import DatasetError

    rr = _rerun()
    rrb = rr.blueprint
    for e in episodes:
        if not 0 <= e < dataset.num_episodes:
            raise DatasetError(
                f"no episode {e} in {dataset.root} ({dataset.num_episodes} episodes)"
            )
    episodes = sorted(episodes)
    cameras = [k.removeprefix("observation.images.") for k in dataset.video_keys]
    keys = [k for k in STATE_KEYS if k in dataset.features]
    tabs = [
        rrb.Horizontal(
            rrb.Vertical(*[rrb.Spatial2DView(origin=f"episode_{e}/cameras/{c}") for c in cameras]),
            rrb.Vertical(*[rrb.TimeSeriesView(origin=f"episode_{e}/{k}", name=k) for k in keys]),
            column_shares=[1, 2] if cameras else None,
            name=f"episode {e}" + (" (success)" if dataset.episodes[e].get("success") else ""),
        )
        for e in episodes
    ]
    rec = open_recording(dataset.root.name, save, rrb.Blueprint(rrb.Tabs(*tabs)))
    for e in episodes:
        data = dataset.episode(e)
        t, frames = data["timestamp"], np.arange(len(data["timestamp"]))
        times = [rr.TimeColumn("time", duration=t), rr.TimeColumn("frame", sequence=frames)]
        for key in keys:
            names = dataset.features[key].get("names") or []
            path = f"episode_{e}/{key}"
            rec.log(path, rr.SeriesLines(names=[str(n) for n in names]), static=True)
            rec.send_columns(path, times, rr.Scalars.columns(scalars=data[key]))
        for camera, key in zip(cameras, dataset.video_keys):
            for i, frame in enumerate(data[key]):
                rec.set_time("time", duration=t[i])
                rec.set_time("frame", sequence=i)
                rec.log(f"episode_{e}/cameras/{camera}", rr.Image(frame).compress(jpeg_quality=90))
    close_recording(rec, save)


# ---- deployment -------------------------------------------------------------------------
class DeployViewer:
    """Logs a deployment as it runs. `wrap(env)` goes inside the safety layer, where it sees
    the command the arm is sent and the observation that comes back; called every tick (the
    control loop's `on_tick`) it logs them with the tick's telemetry on the loop's clock
    (`time`, seconds since the loop started) and a `tick` count over all episodes.

    Entities: `cameras/<name>`; `joints/<name>/commanded` and `/measured` for every action
    entry the state also measures (joint_pos); `commanded` and `measured` for the others;
    `timing/` lateness, observation age and tick work (ms); `chunks/queue` (actions queued)
    and `chunks/inference_ms` (one point per chunk arrival); `safety/interventions` and
    `events` (episodes, waits for the policy, safety interventions, stops)."""

    def __init__(self, robot, save: str | Path | None = None):
        rr = self.rr = _rerun()
        rrb = rr.blueprint
        state, action = list(robot.state_names), list(robot.action.names)
        self.cameras = [c.name for c in robot.cameras]
        self.compared = [(n, i, state.index(n)) for i, n in enumerate(action) if n in state]
        compared = {n for n, _, _ in self.compared}
        self.commanded_only = [i for i, n in enumerate(action) if n not in compared]
        self.measured_only = [j for j, n in enumerate(state) if n not in compared]
        plots = [rrb.TimeSeriesView(origin=f"joints/{n}", name=n) for n, _, _ in self.compared]
        plots += [rrb.TimeSeriesView(origin=p, name=p) for p in ("commanded", "measured")]
        blueprint = rrb.Blueprint(
            rrb.Horizontal(
                rrb.Vertical(*[rrb.Spatial2DView(origin=f"cameras/{c}") for c in self.cameras]),
                rrb.Grid(*plots),
                rrb.Vertical(
                    rrb.TimeSeriesView(origin="timing", name="timing (ms)"),
                    rrb.TimeSeriesView(origin="chunks", name="chunks"),
                    rrb.TimeSeriesView(origin="safety", name="safety"),
                    rrb.TextLogView(origin="events", name="events"),
                ),
            )
        )
        self.save = save
        self.rec = rec = open_recording("deploy", save, blueprint)
        rec.log(
            "commanded", rr.SeriesLines(names=[action[i] for i in self.commanded_only]), static=True
        )
        rec.log(
            "measured", rr.SeriesLines(names=[state[j] for j in self.measured_only]), static=True
        )
        for path in ("chunks/inference_ms", "safety/interventions"):
            rec.log(path, rr.SeriesPoints(marker_sizes=3.0), static=True)
        self.action = self.obs = None
        self.episode, self.ticks = -1, 0

    def wrap(self, env: gym.Env) -> gym.Env:
        return _Observed(env, self)

    def __call__(self, record, loop) -> None:
        rr, rec = self.rr, self.rec
        rec.set_time("time", duration=record.t)
        rec.set_time("tick", sequence=self.ticks)
        self.ticks += 1
        if record.episode != self.episode:
            self._episode_ended(loop.episodes)
            self.episode = record.episode
            rec.log("events", rr.TextLog(f"episode {record.episode + 1} started"))
        for camera in self.cameras:
            image = self.obs.get(f"images.{camera}")
            if image is not None:
                rec.log(f"cameras/{camera}", rr.Image(image))
        state, action = np.asarray(self.obs["state"]), np.asarray(self.action)
        for name, i, j in self.compared:
            rec.log(f"joints/{name}/commanded", rr.Scalars(float(action[i])))
            rec.log(f"joints/{name}/measured", rr.Scalars(float(state[j])))
        if self.commanded_only:
            rec.log("commanded", rr.Scalars(action[self.commanded_only]))
        if self.measured_only:
            rec.log("measured", rr.Scalars(state[self.measured_only]))
        rec.log("timing/lateness_ms", rr.Scalars(record.lateness_ms))
        rec.log("timing/obs_age_ms", rr.Scalars(record.obs_age_ms))
        rec.log("timing/work_ms", rr.Scalars(record.work_ms))
        rec.log("chunks/queue", rr.Scalars(record.queue))
        if record.inference_ms is not None:
            rec.log("chunks/inference_ms", rr.Scalars(record.inference_ms))
        if record.waited_ms:
            rec.log("events", rr.TextLog(f"waited {record.waited_ms:.0f} ms for the policy"))
        if record.safety:
            rec.log("safety/interventions", rr.Scalars(sum(record.safety.values())))
            what = ", ".join(f"{kind} {n}" for kind, n in record.safety.items())
            rec.log("events", rr.TextLog(f"safety: {what}", level=rr.TextLogLevel.WARN))

    def close(self, episodes) -> None:
        """Log how the last episode ended and hand the recording over."""
        self._episode_ended(episodes)
        close_recording(self.rec, self.save)

    def _episode_ended(self, episodes) -> None:
        if self.episode < 0 or len(episodes) <= self.episode:
            return
        result, rr = episodes[self.episode], self.rr
        outcome = "success" if result.success else "no success"
        level = rr.TextLogLevel.ERROR if result.stopped else rr.TextLogLevel.INFO
        stopped = f", stopped: {result.stopped}" if result.stopped else ""
        text = f"episode {self.episode + 1} ended after {result.steps} steps: {outcome}{stopped}"
        self.rec.log("events", rr.TextLog(text, level=level))


class _Observed(gym.Wrapper):
    """Hands each step's command and observation to a `DeployViewer` (changes nothing)."""

    def __init__(self, env: gym.Env, viewer: DeployViewer):
        super().__init__(env)
        self.viewer = viewer

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.viewer.obs = obs
        return obs, info

    def step(self, action):
        result = self.env.step(action)
        self.viewer.action, self.viewer.obs = action, result[0]
        return result
