"""Bring ROS 2 Jazzy up from the PyPI wheels, in-process, with nothing to source by hand.

The `ros-jazzy-*` wheels put their shared libraries in `<venv>/lib` and `ros_*.libs/`. They
ship a `.pth` hook (`ros_wheels_bootstrapper`) that re-executes every interpreter of the venv
once with `LD_LIBRARY_PATH` pointing there (the loader reads that variable only at process
start, so it cannot be set later from Python). What is left to do here:

- choose the middleware (`RMW_IMPLEMENTATION=rmw_fastrtps_cpp`, the one the extra installs);
- keep discovery on this machine (`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`) unless the user
  says otherwise: a robot cell sets it to SUBNET;
- hand child processes (launch, tests) an environment that needs no second re-exec;
- turn a missing or broken install into one line naming the extra.

Everything that touches rclpy imports it through `import_rclpy()`, never at module top of a
module `robotrl` core imports.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from robotrl.errors import RobotrlError

DEFAULT_RMW = "rmw_fastrtps_cpp"


def configure_environment(env: dict | None = None) -> dict:
    """Set the ROS defaults in `env` (default: this process's environment) and return it."""
    env = os.environ if env is None else env
    env.setdefault("RMW_IMPLEMENTATION", DEFAULT_RMW)
    # Jazzy's replacement for ROS_LOCALHOST_ONLY: discovery traffic stays on loopback.
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return env


def library_dirs() -> list[str]:
    """Where the wheels keep their shared libraries (what the bootstrapper puts on the path)."""
    site = Path(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    dirs = sorted(str(p) for p in (site / "site-packages").glob("ros_*.libs"))
    return [*dirs, str(Path(sys.prefix, "lib"))]


def child_env(extra: dict | None = None) -> dict:
    """Environment for a child Python process that will use ROS: the library path already set
    (so the bootstrapper does not re-exec it) and the middleware defaults."""
    env = configure_environment(dict(os.environ))
    have = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*[d for d in library_dirs() if d not in have], *have])
    env["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def import_rclpy():
    """`rclpy`, imported with the environment set up, or a one-line `RobotrlError`."""
    configure_environment()
    try:
        import rclpy
    except ModuleNotFoundError:
        raise RobotrlError(
            "ROS 2 is not installed: pip install 'robotrl[ros]' (ROS 2 Jazzy wheels)"
        ) from None
    except ImportError as e:
        raise RobotrlError(
            f"ROS 2 libraries failed to load ({e}); they are found through LD_LIBRARY_PATH, "
            "which the ros wheels' start-up hook sets: run the venv's own python, without -S/-I"
        ) from None
    return rclpy


def to_stamp(t: float, stamp) -> None:
    """Write wall time `t` (seconds) into a `builtin_interfaces/Time`."""
    sec = int(t)
    stamp.sec, stamp.nanosec = sec, int((t - sec) * 1e9)


def from_stamp(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class RosNode:
    """One rclpy node in its own context, spun by a background thread.

    Its own context lets several envs and nodes live in one process (tests) and shut down
    independently. Callbacks run on the spin thread; `close()` stops and joins it.
    """

    def __init__(self, name: str, args: list[str] | None = None):
        rclpy = import_rclpy()
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

        self.rclpy = rclpy
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        # No rclpy signal handlers: Ctrl-C and SIGTERM are the owner's (KeyboardInterrupt).
        rclpy.init(args=args, context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stopped = ExternalShutdownException
        self._thread: threading.Thread | None = None
        self._fast: FastSubscriptions | None = None

    def subscribe_fast(self, msg_type, topic: str, callback, qos) -> None:
        """A subscription served by a lean wait loop of its own instead of the executor.

        rclpy's executor rebuilds its wait set and runs generic task machinery on every wake
        (hundreds of microseconds in Python); a round trip at 100 Hz cannot afford that twice.
        These subscriptions live on a second node the executor does not see; one thread waits
        on just them and calls the callbacks (call before `start`)."""
        if self._fast is None:
            self._fast = FastSubscriptions(self.rclpy, self.node.get_name() + "_fast", self.context)
        self._fast.add(msg_type, topic, callback, qos)

    def start(self) -> RosNode:
        import atexit

        atexit.register(self.close)  # a spin thread alive at exit aborts the interpreter
        self._thread = threading.Thread(target=self._spin, name="ros-spin", daemon=True)
        self._thread.start()
        if self._fast is not None:
            self._fast.start()
        return self

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except self._stopped:
            pass
        except Exception as e:  # a dying spin thread must say why, not vanish silently
            if self.context.ok():
                print(f"robotrl: ROS spin thread stopped: {e}", file=sys.stderr)

    def close(self) -> None:
        if not self.context.ok():
            return
        if self._fast is not None:
            self._fast.stop()
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)
        if self._thread is not None:
            self._thread.join(timeout=2.0)


class FastSubscriptions:
    """Subscriptions on their own node, served by one thread waiting on a bare rcl wait set."""

    def __init__(self, rclpy, name: str, context):
        from rclpy.impl.implementation_singleton import rclpy_implementation

        self._rcl = rclpy_implementation
        self.context = context
        # A node-local name rule wins over a global `-r __node:=...` (which would otherwise
        # give both nodes one name); global topic remaps still apply to these subscriptions.
        self.node = rclpy.create_node(
            name, context=context, cli_args=["--ros-args", "-r", f"__node:={name}"]
        )
        self.subs: list = []
        self._wake = self.node.create_guard_condition(lambda: None)
        self._running = False
        self._thread: threading.Thread | None = None

    def add(self, msg_type, topic: str, callback, qos) -> None:
        sub = self.node.create_subscription(msg_type, topic, lambda _: None, qos)
        self.subs.append((sub, callback))

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="ros-fast", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        rcl, subs = self._rcl, self.subs
        wait_set = rcl.WaitSet(len(subs), 1, 0, 0, 0, 0, self.context.handle)
        try:
            while self._running:
                wait_set.clear_entities()
                for sub, _ in subs:
                    wait_set.add_subscription(sub.handle)
                wait_set.add_guard_condition(self._wake.handle)
                wait_set.wait(200_000_000)  # ns: wake now and then to notice a stop
                ready = wait_set.get_ready_entities("subscription")
                for sub, callback in subs:
                    if sub.handle.pointer in ready:
                        taken = sub.handle.take_message(sub.msg_type, False)
                        while taken is not None:
                            callback(taken[0])
                            taken = sub.handle.take_message(sub.msg_type, False)
        except Exception as e:  # the context went away under us: only a stop does that
            if self._running:
                print(f"robotrl: ROS fast subscriptions stopped: {e}", file=sys.stderr)

    def stop(self) -> None:
        self._running = False
        self._wake.trigger()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.node.destroy_node()


def now() -> float:
    """Wall time in seconds: stamps are compared across processes on one machine."""
    return time.time()


def node_params(node, defaults):
    """Declare each field of the dataclass instance `defaults` as a ROS parameter of `node`
    (so `--ros-args -p name:=value` and launch files set them) and return the filled copy."""
    from dataclasses import fields, replace

    from rcl_interfaces.msg import ParameterDescriptor

    # Dynamic typing: `rate:=500` must set a float parameter (ROS would reject the int).
    loose = ParameterDescriptor(dynamic_typing=True)
    values = {}
    for f in fields(defaults):
        default = getattr(defaults, f.name)
        value = node.declare_parameter(f.name, default, loose).value
        try:
            values[f.name] = type(default)(value) if value is not None else default
        except (TypeError, ValueError):
            raise RobotrlError(
                f"parameter {f.name}: '{value}' is not a {type(default).__name__}"
            ) from None
    return replace(defaults, **values)


def main_guard(run) -> int:
    """Run a node's main: a `RobotrlError` is one line and exit 2, Ctrl-C/SIGTERM exit 0."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        run()
    except RobotrlError as e:
        print(f"robotrl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def node_main(name: str, defaults, run_node, argv: list[str] | None = None) -> int:
    """`main` of a node that reads its parameters (`defaults`: a dataclass instance) and runs
    `run_node(params, ros)` until shut down."""

    def run():
        ros = RosNode(name, args=argv if argv is not None else sys.argv)
        try:
            params = node_params(ros.node, defaults)
            ros.start()
            run_node(params, ros)
        finally:
            ros.close()

    return main_guard(run)
