"""RealSense camera node (extra `[realsense]`): pyrealsense2 frames as ROS 2 images.

    python -m robotrl.drivers.realsense_node --ros-args -p serial:=123456789012
    python -m robotrl.drivers.realsense_node --ros-args -p recording:=cam.db3

Publishes, with realsense-ros's topic names under `/<camera>`: `color/image_raw` (rgb8),
`color/camera_info`, and depth as 16UC1 in millimetres, aligned to color
(`aligned_depth_to_color/image_raw` + `camera_info` with the color intrinsics) or not
(`depth/image_rect_raw` + its own intrinsics). CameraInfo comes from the device's intrinsics
(Brown-Conrady coefficients as plumb_bob). Stamps are the camera's global-time clock (device
time converted to host time by librealsense); a recording keeps its recorded stamps.

A `.db3` recording plays with `set_real_time(False)`, which hands over every frame (none is
dropped for being late); the node waits for a subscriber before playing, and exits at its end.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from robotrl.drivers.ros import RosNode, node_main, now, to_stamp
from robotrl.errors import RobotrlError


@dataclass
class RealSenseParams:
    serial: str = ""  # empty: the first device found
    recording: str = ""  # a .db3 file to play instead of a device
    width: int = 640
    height: int = 480
    fps: int = 30
    align_depth: bool = True
    depth: bool = True
    camera: str = "camera"  # topic prefix
    wait_subscribers: float = 10.0  # s a recording waits for a color subscriber before playing


@dataclass
class Frames:
    stamp: float  # s, host time
    color: np.ndarray  # HxWx3 uint8 RGB
    depth_mm: np.ndarray | None  # HxW uint16 millimetres
    color_intrinsics: object
    depth_intrinsics: object | None


def import_realsense():
    try:
        import pyrealsense2 as rs
    except ImportError:
        raise RobotrlError(
            "pyrealsense2 is not installed: pip install 'robotrl[realsense]'"
        ) from None
    return rs


def depth_to_mm(raw: np.ndarray, units: float) -> np.ndarray:
    """Depth in the sensor's units (metres per count) as uint16 millimetres; 0 stays 0 (no
    data). At the usual 1 mm units this is the raw image, bit for bit."""
    if abs(units - 0.001) < 1e-9:
        return raw
    return np.clip(np.rint(raw.astype(np.float64) * units * 1000.0), 0, 65535).astype(np.uint16)


class RealSenseSource:
    def __init__(self, p: RealSenseParams):
        rs = self.rs = import_realsense()
        ctx = rs.context()
        self.playback = None
        if p.recording:
            try:
                dev = ctx.load_device(p.recording)
            except RuntimeError as e:
                raise RobotrlError(f"cannot open recording {p.recording}: {e}") from None
            self.playback = dev.as_playback()
            self.playback.set_real_time(False)  # every frame, however slow the consumer
            self.playback.pause()  # until `start`
        else:
            devices = list(ctx.query_devices())
            if p.serial:
                devices = [
                    d for d in devices if d.get_info(rs.camera_info.serial_number) == p.serial
                ]
            if not devices:
                which = f"with serial {p.serial}" if p.serial else "at all"
                raise RobotrlError(f"no RealSense device {which}: is it plugged in (USB 3)?")
            dev = devices[0]
        self.sync = rs.syncer(64)
        self.sensors, self.depth_units = [], 0.001
        wanted = [(rs.stream.color, rs.format.rgb8)]
        if p.depth:
            wanted.append((rs.stream.depth, rs.format.z16))
        for sensor in dev.query_sensors():
            profiles = [
                sp
                for sp in sensor.get_stream_profiles()
                if (sp.stream_type(), sp.format()) in wanted and self._fits(sp, p)
            ]
            if not profiles:
                continue
            if sensor.is_depth_sensor():
                self.depth_units = sensor.as_depth_sensor().get_depth_scale()
            if not self.playback and sensor.supports(rs.option.global_time_enabled):
                sensor.set_option(rs.option.global_time_enabled, 1)
            sensor.open(profiles[0])
            self.sensors.append(sensor)
        if not self.sensors:
            raise RobotrlError(f"no color stream at {p.width}x{p.height} {p.fps} fps")
        self.align = rs.align(rs.stream.color) if p.depth and p.align_depth else None

    def _fits(self, sp, p: RealSenseParams) -> bool:
        if self.playback is not None:
            return True  # a recording has the profiles it was made with
        v = sp.as_video_stream_profile()
        return (v.width(), v.height(), sp.fps()) == (p.width, p.height, p.fps)

    def start(self) -> None:
        for sensor in self.sensors:
            sensor.start(self.sync)
        if self.playback is not None:
            self.playback.resume()

    @property
    def finished(self) -> bool:
        return self.playback is not None and (
            self.playback.current_status() == self.rs.playback_status.stopped
        )

    def read(self, timeout_ms: int = 200) -> Frames | None:
        """The next synchronized color (+ depth) pair, or None when none came in `timeout_ms`."""
        want_depth = any(s.is_depth_sensor() for s in self.sensors)
        while True:
            ok, frames = self.sync.try_wait_for_frames(timeout_ms)
            if not ok:
                return None
            frames = frames.as_frameset()
            # A lone frame the syncer could not pair is skipped, not reported as "nothing":
            # a recording has usually finished dispatching by then, and the pairs behind it
            # are still queued.
            if frames.size() >= (2 if want_depth else 1):
                break
        if self.align is not None:
            frames = self.align.process(frames)
        color = frames.get_color_frame()
        depth = frames.get_depth_frame() if want_depth else None
        stamp = self._stamp(color)
        c_intr = color.get_profile().as_video_stream_profile().get_intrinsics()
        d_intr = depth.get_profile().as_video_stream_profile().get_intrinsics() if depth else None
        return Frames(
            stamp,
            np.asanyarray(color.get_data()).copy(),
            depth_to_mm(np.asanyarray(depth.get_data()).copy(), self.depth_units)
            if depth
            else None,
            c_intr,
            d_intr,
        )

    def _stamp(self, frame) -> float:
        domain = frame.get_frame_timestamp_domain()
        if domain in (self.rs.timestamp_domain.global_time, self.rs.timestamp_domain.system_time):
            return frame.get_timestamp() / 1000.0
        return now()  # a device clock with no host mapping: arrival time is the best we have

    def close(self) -> None:
        for sensor in self.sensors:
            try:
                sensor.stop()
                sensor.close()
            except RuntimeError:
                pass  # already stopped (end of a recording)


def camera_info(intr, stamp: float, frame_id: str):
    """`sensor_msgs/CameraInfo` from pyrealsense2 intrinsics (pinhole, plumb_bob)."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    to_stamp(stamp, info.header.stamp)
    info.header.frame_id = frame_id
    info.width, info.height = intr.width, intr.height
    info.distortion_model = "plumb_bob"
    info.d = [float(c) for c in intr.coeffs[:5]]
    info.k = [intr.fx, 0.0, intr.ppx, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [intr.fx, 0.0, intr.ppx, 0.0, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def image_msg(pixels: np.ndarray, encoding: str, stamp: float, frame_id: str):
    from sensor_msgs.msg import Image

    msg = Image()
    to_stamp(stamp, msg.header.stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.step = pixels.shape[1] * pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
    msg.is_bigendian = 0
    msg.data = pixels.tobytes()
    return msg


def run_node(p: RealSenseParams, ros: RosNode) -> None:
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    source = RealSenseSource(p)
    qos = QoSProfile(depth=64)  # reliable and deep: a recording drops nothing
    if source.playback is not None:  # and a subscriber that matches late still gets it all
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    node = ros.node
    base = f"/{p.camera}"
    depth_ns = "aligned_depth_to_color" if source.align is not None else "depth"
    depth_image = "image_raw" if source.align is not None else "image_rect_raw"
    pub_color = node.create_publisher(Image, f"{base}/color/image_raw", qos)
    pub_color_info = node.create_publisher(CameraInfo, f"{base}/color/camera_info", qos)
    pub_depth = node.create_publisher(Image, f"{base}/{depth_ns}/{depth_image}", qos)
    pub_depth_info = node.create_publisher(CameraInfo, f"{base}/{depth_ns}/camera_info", qos)
    color_frame, depth_frame = f"{p.camera}_color_optical_frame", f"{p.camera}_depth_optical_frame"
    if source.playback is not None:
        deadline = time.monotonic() + p.wait_subscribers
        while pub_color.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    source.start()
    sent = 0
    try:
        while ros.context.ok():
            frames = source.read()
            if frames is None:
                if source.finished:
                    break
                continue
            pub_color.publish(image_msg(frames.color, "rgb8", frames.stamp, color_frame))
            pub_color_info.publish(camera_info(frames.color_intrinsics, frames.stamp, color_frame))
            if frames.depth_mm is not None:
                aligned = source.align is not None
                intr = frames.color_intrinsics if aligned else frames.depth_intrinsics
                frame_id = color_frame if aligned else depth_frame
                pub_depth.publish(image_msg(frames.depth_mm, "16UC1", frames.stamp, frame_id))
                pub_depth_info.publish(camera_info(intr, frames.stamp, frame_id))
            sent += 1
    finally:
        source.close()
        print(f"realsense: published {sent} frames", file=sys.stderr, flush=True)
    # A reliable subscriber that matched late is still catching up on the history: leave only
    # once it has acknowledged everything (or after a while).
    from rclpy.duration import Duration

    for pub in (pub_color, pub_color_info, pub_depth, pub_depth_info):
        pub.wait_for_all_acked(Duration(seconds=5))


def main(argv: list[str] | None = None) -> int:
    return node_main("camera", RealSenseParams(), run_node, argv)


if __name__ == "__main__":
    sys.exit(main())
