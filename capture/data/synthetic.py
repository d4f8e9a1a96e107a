"""The built-in dataset: moving shapes at DSEC size, with events from log-intensity changes.

Every sample is a short clip: a few coloured circles and squares moving over a blocky
textured background that pans slowly (as under a moving camera). Frames are rendered at the
DSEC sensor size; events are derived from them the way an event camera would fire: a pixel
whose log intensity changes by more than a contrast threshold between two consecutive frames
emits one event with the sign of the change, timestamped where a linear ramp between the two
frames crosses the threshold. So image, video and event models all see the same scene.

Sample ``i`` is generated from ``SeedSequence([seed, i])``: identical on every call and
independent of which other samples were generated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from analyze.files import write_atomic, write_text_atomic
from capture.data.events import save_eventgpt_npy
from capture.data.folder import EVENT_DIR, EVENT_PLACEHOLDER, VIDEO_DIR
from capture.data.sample import DEFAULT_PROMPT, DSEC_HEIGHT, DSEC_WIDTH, EVENT_DTYPE, Modality, RawSample
from capture.errors import CaptureError

# Event-camera model: contrast threshold in natural-log units, and the offset that keeps
# log() finite on black pixels (intensity in [0, 1]).
CONTRAST_THRESHOLD = 0.2
LOG_EPS = 0.02

_BLOCK_PX = 16  # background texture cell size
_N_SHAPES = 4
_PAN_PX_PER_FRAME = (1, 2)  # background motion (dy, dx) between consecutive frames

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

SYNTHETIC_SEQUENCE = "synthetic"
INSTRUCTIONS_FILE = "instructions.json"


@dataclass(frozen=True)
class _Shape:
    kind: str  # "circle" or "square"
    color: tuple[int, int, int]
    radius_px: int
    y0: float
    x0: float
    vy_px_per_frame: float
    vx_px_per_frame: float


@dataclass(frozen=True)
class _Scene:
    background: np.ndarray  # (H + pan, W + pan, 3) uint8, sliced per frame
    shapes: tuple[_Shape, ...]


class SyntheticDataset:
    """``n_samples`` deterministic synthetic clips (the default dataset of ``capture``)."""

    name = "synthetic"

    def __init__(
        self,
        n_samples: int,
        seed: int = 0,
        sensor_hw: tuple[int, int] = (DSEC_HEIGHT, DSEC_WIDTH),
        n_frames: int = 8,
        duration_us: int = 50_000,
    ) -> None:
        if n_samples < 0:
            raise CaptureError(f"synthetic dataset: n_samples must be >= 0, got {n_samples}")
        if seed < 0:
            raise CaptureError(f"synthetic dataset: seed must be >= 0, got {seed}")
        if n_frames < 2:
            raise CaptureError(f"synthetic dataset: n_frames must be >= 2 (events need two), got {n_frames}")
        height, width = sensor_hw
        if height < 32 or width < 32:
            raise CaptureError(f"synthetic dataset: sensor_hw must be at least 32x32, got {sensor_hw}")
        if duration_us < n_frames - 1:
            raise CaptureError(
                f"synthetic dataset: duration_us={duration_us} is too short for {n_frames} frames"
            )
        self.n_samples = n_samples
        self.seed = seed
        self.sensor_hw = (int(height), int(width))
        self.n_frames = n_frames
        self.duration_us = duration_us

    def __len__(self) -> int:
        return self.n_samples

    def sample_id(self, index: int) -> str:
        self._check_index(index)
        return f"synthetic-{index:05d}"

    def load(self, index: int, modality: Modality) -> RawSample:
        """Generate sample ``index``: ``image`` -> the middle frame, ``video`` -> all frames,
        ``events`` -> the event stream (no frames)."""
        self._check_index(index)
        scene = self._scene(index)
        sample_id = self.sample_id(index)
        if modality == "image":
            frames = [self._render_frame(scene, self.n_frames // 2)]
            return RawSample(sample_id, DEFAULT_PROMPT, frames=frames, sensor_hw=self.sensor_hw)
        if modality == "video":
            frames = [self._render_frame(scene, k) for k in range(self.n_frames)]
            return RawSample(sample_id, DEFAULT_PROMPT, frames=frames, sensor_hw=self.sensor_hw)
        if modality == "events":
            frames = [self._render_frame(scene, k) for k in range(self.n_frames)]
            events = events_from_frames(frames, self.duration_us)
            return RawSample(sample_id, DEFAULT_PROMPT, frames=[], events=events, sensor_hw=self.sensor_hw)
        raise CaptureError(
            f"synthetic dataset: unknown modality {modality!r}: expected image, video or events"
        )

    def clip(self, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        """All frames of sample ``index`` and their events (what ``write_synthetic_folder`` stores)."""
        self._check_index(index)
        scene = self._scene(index)
        frames = [self._render_frame(scene, k) for k in range(self.n_frames)]
        return frames, events_from_frames(frames, self.duration_us)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.n_samples:
            raise CaptureError(f"synthetic dataset: sample {index} out of range 0..{self.n_samples - 1}")

    def _scene(self, index: int) -> _Scene:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        height, width = self.sensor_hw
        pan_y = _PAN_PX_PER_FRAME[0] * (self.n_frames - 1)
        pan_x = _PAN_PX_PER_FRAME[1] * (self.n_frames - 1)
        cells_y = -(-(height + pan_y) // _BLOCK_PX)
        cells_x = -(-(width + pan_x) // _BLOCK_PX)
        # Muted cells (60..200) so that shapes and their edges stand out.
        cells = rng.integers(60, 200, size=(cells_y, cells_x, 3), dtype=np.uint8)
        background = np.repeat(np.repeat(cells, _BLOCK_PX, axis=0), _BLOCK_PX, axis=1)
        background = background[: height + pan_y, : width + pan_x]
        travel = max(self.n_frames - 1, 1)
        shapes = []
        for _ in range(_N_SHAPES):
            radius = int(rng.integers(min(height, width) // 16, min(height, width) // 6))
            y0, x0 = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
            # Cross a quarter to half of the frame over the clip.
            speed = rng.uniform(0.25, 0.5) * min(height, width) / travel
            angle = rng.uniform(0.0, 2.0 * np.pi)
            color = tuple(int(c) for c in rng.choice([0, 255], size=3))
            if color in ((0, 0, 0), (255, 255, 255)):
                color = (255, 255, 0) if color == (0, 0, 0) else (0, 255, 255)
            shapes.append(
                _Shape(
                    kind="circle" if rng.random() < 0.5 else "square",
                    color=color,
                    radius_px=radius,
                    y0=y0,
                    x0=x0,
                    vy_px_per_frame=speed * np.sin(angle),
                    vx_px_per_frame=speed * np.cos(angle),
                )
            )
        return _Scene(background=background, shapes=tuple(shapes))

    def _render_frame(self, scene: _Scene, k: int) -> np.ndarray:
        height, width = self.sensor_hw
        off_y, off_x = _PAN_PX_PER_FRAME[0] * k, _PAN_PX_PER_FRAME[1] * k
        frame = scene.background[off_y : off_y + height, off_x : off_x + width].copy()
        for shape in scene.shapes:
            cy = shape.y0 + shape.vy_px_per_frame * k
            cx = shape.x0 + shape.vx_px_per_frame * k
            r = shape.radius_px
            top, bottom = max(int(cy) - r, 0), min(int(cy) + r + 1, height)
            left, right = max(int(cx) - r, 0), min(int(cx) + r + 1, width)
            if top >= bottom or left >= right:
                continue  # left the frame
            if shape.kind == "square":
                frame[top:bottom, left:right] = shape.color
                continue
            yy = np.arange(top, bottom, dtype=np.float32)[:, None] - cy
            xx = np.arange(left, right, dtype=np.float32)[None, :] - cx
            inside = yy * yy + xx * xx <= r * r
            frame[top:bottom, left:right][inside] = shape.color
        return frame


def events_from_frames(frames: list[np.ndarray], duration_us: int) -> np.ndarray:
    """Events an ideal event camera would emit between consecutive RGB frames, sorted by t.

    Frame k is taken at ``k * duration_us / (n - 1)``. A pixel whose log intensity
    ``log(I + LOG_EPS)`` (I = luma in [0, 1]) changes by more than ``CONTRAST_THRESHOLD``
    between frames k and k+1 emits one event, polarity 1 for brighter and 0 for darker, at
    the time a linear ramp between the two values crosses the threshold. Ties in time keep
    pixel (row-major) order.
    """
    n_frames = len(frames)
    if n_frames < 2:
        return np.empty(0, dtype=EVENT_DTYPE)
    width = frames[0].shape[1]
    stack = np.stack(frames).astype(np.float32)  # (n, H, W, 3)
    luma = stack @ (_LUMA / 255.0)
    log_i = np.log(luma + LOG_EPS)
    delta = np.diff(log_i, axis=0)  # (n-1, H, W)
    magnitude = np.abs(delta)
    step, pixel = np.nonzero(magnitude.reshape(n_frames - 1, -1) > CONTRAST_THRESHOLD)
    change = delta.reshape(n_frames - 1, -1)[step, pixel]
    interval_us = duration_us / (n_frames - 1)
    crossing = CONTRAST_THRESHOLD / np.abs(change)  # in (0, 1): earlier for sharper changes
    t_us = np.floor((step + crossing) * interval_us).astype(np.int64)
    order = np.argsort(t_us, kind="stable")
    y, x = np.divmod(pixel[order], width)
    events = np.empty(order.size, dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t_us[order]
    events["p"] = change[order] > 0
    return events


def write_synthetic_folder(root: Path, n_samples: int, seed: int = 0) -> Path:
    """Write ``n_samples`` synthetic clips in the EventGPT DSEC layout under ``root``.

    ``event_npy/synthetic/<i:05d>.npy`` (EventGPT's pickled dict of x, y, t, p),
    ``video/synthetic/<i:05d>/<k:06d>.png`` (the frames) and ``instructions.json`` (one entry
    per clip, id ``synthetic-<i:05d>``, ``event_data`` relative to ``event_npy/``, the default
    prompt after EventGPT's ``<event>`` placeholder). Every file is written atomically.
    Returns ``root``.
    """
    root = Path(root)
    dataset = SyntheticDataset(n_samples, seed=seed)
    event_dir = root / EVENT_DIR / SYNTHETIC_SEQUENCE
    event_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(n_samples):
        clip = f"{index:05d}"
        frames, events = dataset.clip(index)
        save_eventgpt_npy(event_dir / f"{clip}.npy", events)
        frame_dir = root / VIDEO_DIR / SYNTHETIC_SEQUENCE / clip
        frame_dir.mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(frames):
            write_atomic(
                frame_dir / f"{k:06d}.png",
                lambda tmp, frame=frame: Image.fromarray(frame).save(tmp, format="PNG", compress_level=1),
            )
        entries.append(
            {
                "id": dataset.sample_id(index),
                "event_data": f"{SYNTHETIC_SEQUENCE}/{clip}.npy",
                "conversations": [
                    {"from": "human", "value": f"{EVENT_PLACEHOLDER}\n{DEFAULT_PROMPT}"},
                    {"from": "gpt", "value": "Coloured shapes move across a textured background."},
                ],
            }
        )
    write_text_atomic(root / INSTRUCTIONS_FILE, json.dumps(entries, indent=1))
    return root
