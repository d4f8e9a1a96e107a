"""Camera frames: which N of a clip's M frames a model reads, and reading them from PNG files
or an mp4 clip (decoded with PyAV), only the frames picked.

Two rules, one per model family (``capture.data.sample.FramePick``):

- ``linspace`` (LLaVA-1.5): ``np.linspace(0, M - 1, N)`` floored, the EventGPT benchmarks' rule
  for LLaVA-1.5's 8 frames (M = 20 gives 0, 2, 5, 8, 10, 13, 16, 19); one frame is the middle one.
- ``arange`` (Video-LLaVA): ``np.arange(0, M, M / N)`` floored, first N, as transformers'
  Video-LLaVA documentation samples its 8 frames (M = 20 gives 0, 2, 5, 7, 10, 12, 15, 17); a
  clip shorter than N repeats frames, so a sample always has N frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from capture.data.sample import FramePick
from capture.errors import CaptureError


def pick_indices(n_available: int, n_wanted: int, rule: FramePick) -> list[int]:
    """Indices of the ``n_wanted`` frames ``rule`` picks from ``n_available`` (always n_wanted)."""
    if n_available < 1:
        raise CaptureError("a clip without frames has nothing to pick")
    if n_wanted < 1:
        raise CaptureError(f"cannot pick {n_wanted} frames: at least 1")
    if rule == "arange":
        picked = np.arange(0, n_available, n_available / n_wanted).astype(int)[:n_wanted]
    elif rule == "linspace":
        if n_wanted == 1:
            return [n_available // 2]
        picked = np.linspace(0, n_available - 1, n_wanted).astype(int)
    else:
        raise CaptureError(f"unknown frame rule {rule!r}: expected linspace or arange")
    return [int(i) for i in picked]


def read_rgb(path: Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 RGB array; CaptureError naming the file if unreadable."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise CaptureError(f"{path}: image not found") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CaptureError(f"{path}: unreadable image ({type(exc).__name__})") from None


def same_size(frames: list[np.ndarray], where: str) -> None:
    """One clip, one frame size: CaptureError otherwise (the processors batch them)."""
    sizes = sorted({frame.shape[:2] for frame in frames})
    if len(sizes) > 1:
        raise CaptureError(f"{where}: frames differ in size {sizes}: one clip, one size")


def mp4_frame_count(path: Path) -> int:
    """Frames in an mp4's first video stream, from its header (0 where the header lacks it)."""
    container = _open_video(path)
    with container:
        return int(container.streams.video[0].frames)


def read_mp4_frames(path: Path, n_wanted: int, rule: FramePick) -> list[np.ndarray]:
    """Decode the ``n_wanted`` frames ``rule`` picks from an mp4 clip, as RGB arrays.

    The frame count comes from the header (as transformers' Video-LLaVA example reads it);
    where the header has none, every frame is decoded first. Decoding stops after the last
    frame picked.
    """
    container = _open_video(path)
    try:
        with container:
            stream = container.streams.video[0]
            total = int(stream.frames)
            if total <= 0:  # no count in the header: decode all, then pick
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
                return [frames[i] for i in pick_indices(len(frames), n_wanted, rule)]
            wanted = pick_indices(total, n_wanted, rule)
            decoded: dict[int, np.ndarray] = {}
            for k, frame in enumerate(container.decode(stream)):
                if k in wanted:
                    decoded[k] = frame.to_ndarray(format="rgb24")
                if k >= wanted[-1]:
                    break
    except CaptureError:
        raise
    except Exception as exc:  # PyAV raises its own error types for damaged streams
        raise CaptureError(f"{path}: cannot decode the video ({type(exc).__name__})") from None
    missing = [i for i in wanted if i not in decoded]
    if missing:
        raise CaptureError(f"{path}: the header says {total} frames but frame {missing[0]} is not there")
    return [decoded[i] for i in wanted]


def _open_video(path: Path) -> Any:
    import av  # PyAV: imported on use, so only mp4 datasets need it loaded

    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise CaptureError(f"{path}: video not found") from None
    except Exception as exc:  # av.error.InvalidDataError and friends
        raise CaptureError(f"{path}: not a readable video ({type(exc).__name__})") from None
    if not container.streams.video:
        container.close()
        raise CaptureError(f"{path}: no video stream")
    return container
