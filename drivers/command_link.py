"""The command side of `RosEnv`: the arm's (and gripper's) publishers, and the handshake that
proves a driver receives what they send before any action goes out.

The publishers live on a DDS participant of their own. A driver that dies without a goodbye
(killed, unplugged, powered off) stays matched to our publishers until the DDS lease runs out
(20 s with Fast DDS): after it restarts, neither the match count nor the acknowledgements can
tell the new driver from the dead one. A fresh participant knows only the live ones, so when
a handshake fails the link is renewed (a new participant) and tried again.

Publishers are reliable with a history of 10: a command is delivered (the subscriber's
acknowledgement comes back) or it is still outstanding, never silently replaced. That
acknowledgement is the echo: a driver is known to receive once a hold command (its own
measured position) has been acknowledged by every matched subscriber.

`CommandGate` decides, once per step, whether an action may be sent; it never blocks a step
for more than a few milliseconds, and it counts what it withheld and what went out
unacknowledged so `RosEnv` can report the gap when commands resume.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from robotrl.drivers.config import RobotConfig
from robotrl.drivers.ros import import_rclpy, to_stamp

HISTORY = 10  # commands kept until acknowledged


class CommandLink:
    def __init__(self, cfg: RobotConfig, name: str):
        self.cfg, self.name = cfg, name
        self._ctx = self._node = None
        self._lock = threading.Lock()
        self._renewing: threading.Thread | None = None
        self.renewals = 0
        self._open()

    def _open(self) -> None:
        rclpy = import_rclpy()
        from rclpy.qos import QoSProfile
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        cfg = self.cfg
        self._msgs = (Float64MultiArray, JointTrajectory, JointTrajectoryPoint)
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        # Each participant its own node name: the old one is still up while the new one starts.
        node_name = f"{self.name}_{self.renewals}" if self.renewals else self.name
        node = rclpy.create_node(node_name, context=ctx)
        qos = QoSProfile(depth=HISTORY)  # reliable, volatile: what ros2_control subscribes with
        trajectory = cfg.control_mode == "trajectory"
        command = node.create_publisher(
            JointTrajectory if trajectory else Float64MultiArray, cfg.command_topic, qos
        )
        pubs = {cfg.command_topic: command}
        if trajectory and cfg.trajectory_topic != cfg.command_topic:
            pubs[cfg.trajectory_topic] = node.create_publisher(
                JointTrajectory, cfg.trajectory_topic, qos
            )
        if cfg.gripper:
            pubs[cfg.gripper.topic] = node.create_publisher(
                Float64MultiArray, cfg.gripper.topic, qos
            )
        with self._lock:
            self._ctx, self._node, self.pubs = ctx, node, pubs
            self.node_name = node_name

    # ---- state ----------------------------------------------------------------------------
    @property
    def renewing(self) -> bool:
        return self._renewing is not None and self._renewing.is_alive()

    def unmatched(self) -> tuple[str, ...]:
        """The command topics nobody subscribes to (yet)."""
        if self.renewing:
            return tuple(self.topics())
        return tuple(t for t, p in self.pubs.items() if p.get_subscription_count() == 0)

    def topics(self) -> list[str]:
        return list(self.pubs)

    def counts(self) -> dict[str, int]:
        """How many subscribers each command topic has matched (dead ones included)."""
        if self.renewing:
            return dict.fromkeys(self.pubs, 0)
        return {t: p.get_subscription_count() for t, p in self.pubs.items()}

    def acked(self, timeout: float = 0.0) -> bool:
        """Whether every command sent so far has been acknowledged by every matched subscriber
        (waiting at most `timeout` s); False while nobody is matched."""
        from rclpy.duration import Duration

        if self.renewing:
            return False
        deadline = time.monotonic() + timeout
        for pub in self.pubs.values():
            if pub.get_subscription_count() == 0:
                return False
            left = max(deadline - time.monotonic(), 0.0)
            if not pub.wait_for_all_acked(Duration(seconds=left)):
                return False
        return True

    def renew(self) -> None:
        """Replace the participant in the background (the old one may be matched to a dead
        driver); `unmatched()` names every topic until the new one is up."""
        if self.renewing:
            return
        self.renewals += 1

        def swap():
            old_ctx, old_node = self._ctx, self._node
            self._open()
            _shutdown(old_ctx, old_node)

        self._renewing = threading.Thread(target=swap, name="command-link", daemon=True)
        self._renewing.start()

    # ---- sending --------------------------------------------------------------------------
    def send_positions(self, q: np.ndarray, time_from_start: float) -> None:
        Float64MultiArray = self._msgs[0]
        pub = self.pubs[self.cfg.command_topic]
        if self.cfg.control_mode == "trajectory":
            pub.publish(self._trajectory([time_from_start], np.asarray(q)[None]))
        else:
            pub.publish(Float64MultiArray(data=[float(x) for x in q]))

    def send_trajectory(self, times, points) -> None:
        topic = self.cfg.trajectory_topic
        pub = self.pubs.get(topic) or self.pubs[self.cfg.command_topic]
        pub.publish(self._trajectory(times, points))

    def send_gripper(self, position: float) -> None:
        if self.cfg.gripper:
            self.pubs[self.cfg.gripper.topic].publish(self._msgs[0](data=[float(position)]))

    def _trajectory(self, times, points):
        _, JointTrajectory, JointTrajectoryPoint = self._msgs
        msg = JointTrajectory()  # stamp 0: start now
        msg.joint_names = list(self.cfg.joint_names)
        for t, q in zip(times, points):
            point = JointTrajectoryPoint()
            point.positions = [float(x) for x in q]
            to_stamp(float(t), point.time_from_start)
            msg.points.append(point)
        return msg

    def close(self) -> None:
        if self._renewing is not None:
            self._renewing.join(timeout=5.0)
        _shutdown(self._ctx, self._node)
        self._ctx = self._node = None


def _shutdown(ctx, node) -> None:
    if ctx is None or not ctx.ok():
        return
    import rclpy

    node.destroy_node()
    rclpy.shutdown(context=ctx)


UP, DOWN, PROBING = "up", "down", "probing"


class CommandGate:
    """Whether this step's action may be sent, as a small state machine over a `CommandLink`.

    up: actions flow; each step first checks a subscriber is still matched and books the
    acknowledgements of earlier actions. down: a driver stream went stale or a subscriber
    left; once every stream is fresh and every topic matched, a hold command (`probe`: the
    driver's own measured position) goes out. probing: the hold command is out; the first
    step that sees it acknowledged is up again. The link is renewed once per fault (a dead
    driver may be holding it) as soon as a topic matches more subscribers than it had while
    up (a restarted driver beside the dead one), or when the hold command is still
    unacknowledged after `probe_timeout`. Withheld steps and actions
    sent but never acknowledged make up the gap reported on the step actions resume.
    """

    def __init__(self, link: CommandLink, probe, driver_streams, probe_timeout: float = 0.1):
        self.link, self.probe, self.driver_streams = link, probe, set(driver_streams)
        self.probe_timeout = probe_timeout
        self.state = DOWN  # nothing is known to receive until a handshake says so
        self.sent = self.confirmed = 0  # actions sent on this link, and known acknowledged
        self._probe_at = 0.0
        self._renewed = False  # renewed since the last fault (once is enough)
        self._counts: dict[str, int] = {}  # subscribers matched while actions flowed
        self._gap: dict | None = None
        self._last_confirmed = time.monotonic()

    def update(self, stale: tuple[str, ...]) -> tuple[str, ...]:
        """What the action must wait for (empty: send it now)."""
        link = self.link
        if self.sent > self.confirmed and link.acked():
            self.confirmed, self._last_confirmed = self.sent, time.monotonic()
        if self.state != UP and not self._renewed and self._counts:
            counts = link.counts()
            if any(counts[t] > n for t, n in self._counts.items()):
                self._renew()  # a new subscriber beside the old: a driver restarted, the old
                # one is dead but still matched and would never acknowledge anything
        if stale:
            if self.state != DOWN and self.driver_streams & set(stale):
                self.state = DOWN  # the driver may be gone: a handshake before sending again
            return self._held(stale)
        missing = link.unmatched()
        if missing:
            self.state = DOWN
            return self._held(tuple(f"subscriber on {t}" for t in missing))
        if self.state == DOWN:
            self.probe()
            self.state, self._probe_at = PROBING, time.monotonic()
            if not link.acked(timeout=0.003):  # on one machine it is back within a millisecond
                return self._held(self._awaiting())
        elif self.state == PROBING and not link.acked():
            if time.monotonic() - self._probe_at > self.probe_timeout and not self._renewed:
                self._renew()
            return self._held(self._awaiting())
        if self.sent > self.confirmed:  # the hold command's acknowledgement covers them too
            self.confirmed, self._last_confirmed = self.sent, time.monotonic()
        self.state, self._renewed = UP, False
        self._counts = link.counts()
        return ()

    def _renew(self) -> None:
        self._book_unconfirmed()
        self.link.renew()
        self._renewed, self.state, self._counts = True, DOWN, {}

    @property
    def resuming(self) -> bool:
        """Whether the action about to be sent ends a gap."""
        return self._gap is not None

    def sent_action(self) -> dict | None:
        """Book an action as sent; the gap it ends, if any (withheld steps, actions sent but
        never acknowledged, seconds since the last acknowledged action)."""
        self.sent += 1
        gap, self._gap = self._gap, None
        if gap is not None:
            gap["seconds"] = round(time.monotonic() - self._last_confirmed, 4)
        return gap

    def _awaiting(self) -> tuple[str, ...]:
        return tuple(f"acknowledgement on {t}" for t in self.link.topics())

    def _held(self, waiting: tuple[str, ...]) -> tuple[str, ...]:
        if self._gap is None:
            self._gap = {"withheld": 0, "unconfirmed": 0}
        self._gap["withheld"] += 1
        return waiting

    def _book_unconfirmed(self) -> None:
        """The link is about to be dropped: what it sent and never saw acknowledged is lost."""
        if self._gap is None:
            self._gap = {"withheld": 0, "unconfirmed": 0}
        self._gap["unconfirmed"] += self.sent - self.confirmed
        self.sent = self.confirmed = 0

    def connect(self, stale_fn, timeout: float) -> tuple[str, ...]:
        """Run the handshake until actions may flow (what is still missing if not in time)."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = self.update(stale_fn())
            if not waiting:
                self._gap = None  # no action was withheld: this is not a gap
                return ()
            if time.monotonic() > deadline:
                return waiting
            time.sleep(0.01)
