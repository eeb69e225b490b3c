"""The RealSense node on a synthetic recording: a `rs.software_device` with a depth and a color
sensor is recorded with `rs.recorder`, then played by the node (`ctx.load_device`,
`set_real_time(False)`: every frame). What arrives over ROS must be the recorded frames."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2")
pytest.importorskip("rclpy")

from robotrl.drivers import process  # noqa: E402

# This process's own ROS domain. conftest's `setdefault` is inherited by pytest-xdist workers
# from the controller (one domain for all of them), so each worker picks its own here.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
from robotrl.drivers.realsense_node import depth_to_mm  # noqa: E402

W, H, FPS, FRAMES = 64, 48, 30, 12
T0_MS = 1.7e12  # the recording's global-time clock, ms since the epoch


def make_recording(path, rng):
    """Record FRAMES color + depth pairs; returns the frames and the intrinsics used."""
    intr = rs.intrinsics()
    # Whole-pixel principal point: librealsense's alignment then maps each pixel exactly onto
    # itself (fractional ones make its footprint rounding land on a neighbour).
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = W, H, 50.0, 50.0, 32.0, 24.0
    # No distortion: alignment is then the identity map, so the aligned depth is checkable.
    intr.model, intr.coeffs = rs.distortion.brown_conrady, [0.0] * 5
    device = rs.software_device()
    sensors, profiles = [], []
    for uid, (name, stream, fmt, bpp) in enumerate(
        (
            ("Depth", rs.stream.depth, rs.format.z16, 2),
            ("Color", rs.stream.color, rs.format.rgb8, 3),
        )
    ):
        sensor = device.add_sensor(name)
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.fmt, vs.bpp = stream, 0, uid, fmt, bpp
        vs.width, vs.height, vs.fps, vs.intrinsics = W, H, FPS, intr
        profiles.append(sensor.add_video_stream(vs))
        sensors.append(sensor)
    sensors[0].add_read_only_option(rs.option.depth_units, 0.001)
    identity = rs.extrinsics()
    identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
    profiles[0].register_extrinsics_to(profiles[1], identity)
    device.create_matcher(rs.matchers.default)
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(2 * FRAMES)
    for sensor, profile in zip(sensors, profiles):
        sensor.open(profile)
        sensor.start(queue)
    frames = []
    for i in range(FRAMES):
        depth = rng.integers(200, 4000, (H, W), dtype=np.uint16)
        color = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        stamp = T0_MS + i * 1000.0 / FPS
        for sensor, profile, pixels, bpp in zip(sensors, profiles, (depth, color), (2, 3)):
            f = rs.software_video_frame()
            f.pixels, f.stride, f.bpp = pixels, W * bpp, bpp
            f.timestamp, f.domain, f.frame_number = stamp, rs.timestamp_domain.global_time, i
            f.profile = profile.as_video_stream_profile()
            if bpp == 2:
                f.depth_units = 0.001
            sensor.on_video_frame(f)
        frames.append((stamp / 1000.0, color, depth))
    time.sleep(0.1)
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    del recorder  # writes the file
    return frames, intr


def test_depth_units_convert_to_millimetres():
    raw = np.array([0, 1, 1000, 65535], np.uint16)
    assert depth_to_mm(raw, 0.001) is raw  # the usual units: bit for bit
    np.testing.assert_array_equal(depth_to_mm(raw, 0.0001), [0, 0, 100, 6554])  # D405: 0.1 mm
    np.testing.assert_array_equal(depth_to_mm(np.array([40000], np.uint16), 0.002), [65535])


def test_camera_info_from_intrinsics():
    from robotrl.drivers.realsense_node import camera_info

    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = (
        640,
        480,
        615.1,
        614.8,
        322.4,
        241.9,
    )
    intr.model, intr.coeffs = rs.distortion.brown_conrady, [0.1, -0.2, 0.001, 0.002, 0.05]
    info = camera_info(intr, 12.5, "cam_color_optical_frame")
    assert (info.width, info.height, info.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_allclose(info.k, [615.1, 0, 322.4, 0, 614.8, 241.9, 0, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(info.d, [0.1, -0.2, 0.001, 0.002, 0.05], rtol=1e-6)
    assert info.p[0] == info.k[0] and info.p[6] == info.k[5]
    assert (info.header.stamp.sec, info.header.stamp.nanosec) == (12, 500_000_000)


def play(recording, align: bool):
    """Run the node on `recording`; returns the color, depth and camera info messages."""
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    from robotrl.drivers.ros import RosNode

    got = {"color": [], "depth": [], "info": []}
    lock = threading.Lock()
    listener = RosNode("realsense_test")
    qos = QoSProfile(depth=64, durability=DurabilityPolicy.TRANSIENT_LOCAL)

    def keep(key):
        def cb(msg):
            with lock:
                got[key].append(msg)

        return cb

    depth_topic = "aligned_depth_to_color/image_raw" if align else "depth/image_rect_raw"
    node = listener.node
    node.create_subscription(Image, "/cam/color/image_raw", keep("color"), qos)
    node.create_subscription(Image, f"/cam/{depth_topic}", keep("depth"), qos)
    node.create_subscription(CameraInfo, "/cam/color/camera_info", keep("info"), qos)
    listener.start()
    params = {"recording": str(recording), "camera": "cam", "align_depth": align}
    proc = process.start(process.node_command("realsense", params, "cam"))
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        code = process.stop(proc)
        listener.close()
    assert code == 0
    # The syncer pairs depth with color from the first pair on: every later frame arrives.
    assert len(got["color"]) >= FRAMES - 1
    assert len(got["depth"]) == len(got["color"]) == len(got["info"])
    return got


def test_recording_is_published_bit_exact(tmp_path):
    from robotrl.drivers.ros import from_stamp

    frames, intr = make_recording(tmp_path / "cam.db3", np.random.default_rng(0))
    by_stamp = {round(stamp, 4): (color, depth) for stamp, color, depth in frames}
    for align in (False, True):
        got = play(tmp_path / "cam.db3", align)
        for color_msg, depth_msg, info in zip(got["color"], got["depth"], got["info"]):
            stamp = from_stamp(color_msg.header.stamp)
            color, depth = by_stamp[round(stamp, 4)]  # stamps: the camera's global time, kept
            assert color_msg.encoding == "rgb8" and depth_msg.encoding == "16UC1"
            image = np.frombuffer(color_msg.data, np.uint8).reshape(H, W, 3)
            np.testing.assert_array_equal(image, color)  # bit-exact
            published = np.frombuffer(depth_msg.data, np.uint16).reshape(H, W)
            if not align:  # 1 mm units: the recorded depth is already millimetres, bit-exact
                np.testing.assert_array_equal(published, depth)
            else:
                check_aligned(published, depth)
            assert (info.width, info.height) == (W, H)
            np.testing.assert_allclose(
                info.k, [intr.fx, 0, intr.ppx, 0, intr.fy, intr.ppy, 0, 0, 1], rtol=1e-6
            )
            np.testing.assert_allclose(info.d, intr.coeffs, atol=1e-9)
            assert info.distortion_model == "plumb_bob"


def check_aligned(aligned: np.ndarray, depth: np.ndarray) -> None:
    """Same intrinsics and an identity extrinsic: alignment maps each depth pixel onto itself.
    librealsense's footprint of a pixel reaches into its neighbours (a one-pixel overlap that
    rounding resolves either way) and leaves a few holes (0). So: most pixels are the recorded
    depth in mm exactly; any other is a hole or a neighbour's recorded depth."""
    valid = aligned > 0
    assert valid.mean() > 0.85
    exact = aligned == depth
    assert exact.mean() > 0.9
    padded = np.pad(depth, 1, mode="edge")
    neighbours = np.stack([padded[dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3)])
    other = valid & ~exact
    assert (neighbours[:, other] == aligned[other]).any(axis=0).all()
