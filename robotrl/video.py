"""Write RGB frames to an MP4 (H.264 via imageio-ffmpeg) with an optional caption strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robotrl.errors import RobotrlError


def check_output(path: str | Path, what: str = "video") -> Path:
    """Fail now, in one line, if `path` cannot be written (a directory, under a file, on a
    read-only filesystem) rather than after the work that produces it. Leaves nothing behind."""
    path = Path(path)
    if path.is_dir():
        raise RobotrlError(f"the {what} path {path} is a directory; give a file name")
    made = []
    try:
        for parent in reversed(path.parents):
            if not parent.exists():
                parent.mkdir()
                made.append(parent)
        probe = path.with_name(path.name + ".probe")
        probe.open("xb").close()
        probe.unlink()
    except OSError as e:
        raise RobotrlError(f"cannot write the {what} {path}: {e.strerror}") from None
    finally:
        for parent in reversed(made):
            parent.rmdir()
    return path


def with_cameras(frame: np.ndarray, obs: dict) -> np.ndarray:
    """`frame` with the observation's camera images (`images.<name>`, what a camera policy
    sees) stacked to its right, each scaled by a whole factor to at most the frame's height
    divided by the number of cameras. Returns `frame` unchanged when `obs` has no images."""
    images = [np.asarray(v) for k, v in sorted(obs.items()) if k.startswith("images.")]
    if not images:
        return frame
    height = frame.shape[0]
    tiles = []
    for image in images:
        factor = max(1, height // (len(images) * image.shape[0]))
        tiles.append(image.repeat(factor, axis=0).repeat(factor, axis=1))
    width = max(t.shape[1] for t in tiles)
    column = np.zeros((height, width, 3), np.uint8)
    top = 0
    for tile in tiles:
        h = min(tile.shape[0], height - top)
        column[top : top + h, : tile.shape[1]] = tile[:h]
        top += h
    return np.concatenate([frame, column], axis=1)


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: float) -> Path:
    import imageio.v2 as imageio

    path = check_output(path)
    if not frames:
        raise RobotrlError(f"no frames to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.mp4")
    with imageio.get_writer(
        tmp,
        fps=fps,
        codec="libx264",
        macro_block_size=16,
        ffmpeg_log_level="error",
        output_params=["-pix_fmt", "yuv420p"],
    ) as w:
        for frame in frames:
            w.append_data(frame)
    tmp.replace(path)  # a killed run never leaves a truncated video under the real name
    return path


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """The frame with `text` drawn in its top-left corner."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 8 + 6 * len(text), 16), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(image)
