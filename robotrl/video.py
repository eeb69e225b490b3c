"""Write RGB frames to an MP4 (H.264 via imageio-ffmpeg) with an optional caption strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: float) -> Path:
    import imageio.v2 as imageio

    path = Path(path)
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
