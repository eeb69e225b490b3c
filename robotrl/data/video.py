"""Camera streams as MP4 (H.264) through PyAV.

Frames carry their real observation times as presentation timestamps, so a reader seeking
by timestamp (as LeRobot's does) lands on the frame that was observed then, even when the
recording rate jittered.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from robotrl.data.layout import VIDEO_PIX_FMT, DatasetError, commit_file

TIME_BASE = Fraction(1, 90_000)  # the MPEG clock: 11 us resolution
CRF = 18  # visually lossless for 8-bit camera images
GOP = 2  # a keyframe every other frame keeps random access cheap (LeRobot's choice too)


def encode(path: Path, frames: np.ndarray, timestamps: np.ndarray, fps: float) -> None:
    """Write uint8 frames [T, H, W, 3] atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = VIDEO_PIX_FMT
        stream.codec_context.time_base = stream.time_base = TIME_BASE
        stream.options = {"crf": str(CRF), "g": str(GOP), "preset": "veryfast", "bf": "0"}
        pts = np.round(np.asarray(timestamps, np.float64) * TIME_BASE.denominator).astype(np.int64)
        # Strictly increasing even if two observation times round alike: pts[i] > pts[i-1].
        steps = np.arange(len(pts))
        pts = np.maximum.accumulate(pts - steps) + steps
        for image, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = int(t), TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    commit_file(tmp, path)


def decode(path: Path, start: float = 0.0, count: int | None = None) -> np.ndarray:
    """Decode `count` frames (all, if None) from `start` seconds on, as uint8 [T, H, W, 3]."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start > 0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            # Frame times are rounded to the container's clock: match to within half a frame.
            tolerance = 0.5 / float(stream.average_rate or 30)
            frames = []
            for frame in container.decode(stream):
                if frame.time is not None and frame.time < start - tolerance:
                    continue
                frames.append(frame.to_ndarray(format="rgb24"))
                if count is not None and len(frames) == count:
                    break
    except (av.error.FFmpegError, OSError) as e:
        raise DatasetError(f"cannot decode video {path}: {e}") from e
    if count is not None and len(frames) != count:
        raise DatasetError(
            f"video {path} has {len(frames)} frames from {start:.3f}s, expected {count}"
        )
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def frame_count(path: Path) -> int:
    """Frames in a video file, by decoding (a truncated file fails here)."""
    return len(decode(path))
