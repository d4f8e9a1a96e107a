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
from capture.data.events import (
    EVENTGPT_N_CHUNKS,
    check_events,
    render_benchmark_event_image,
    save_eventgpt_npy,
    split_equal_count,
)
from capture.data.folder import (
    EVENT_DIR,
    EVENT_IMAGE_1F_DIR,
    EVENT_IMAGE_DIR,
    INSTRUCTION_FILE,
    MP4_DIR,
    VIDEO_DIR,
)
from capture.data.frames import pick_indices
from capture.data.sample import DEFAULT_PROMPT, DSEC_HEIGHT, DSEC_WIDTH, EVENT_DTYPE, InputRequest, RawSample
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
        self.warnings: list[str] = []
        self.sensor_hw = (int(height), int(width))
        self.n_frames = n_frames
        self.duration_us = duration_us

    def __len__(self) -> int:
        return self.n_samples

    def sample_id(self, index: int) -> str:
        self._check_index(index)
        return f"synthetic-{index:05d}"

    def load(self, index: int, request: InputRequest) -> RawSample:
        """Generate sample ``index`` as ``request`` asks: camera frames picked from the clip's
        ``n_frames`` by the request's rule, or the event stream (to be drawn as
        ``request.n_frames`` frames). There are no pre-rendered event frames here."""
        self._check_index(index)
        scene = self._scene(index)
        sample_id = self.sample_id(index)
        raw = RawSample(
            sample_id,
            request.question or DEFAULT_PROMPT,
            sensor_hw=request.sensor_hw,
            n_frames=request.n_frames,
        )
        if request.source == "camera":
            picked = pick_indices(self.n_frames, request.n_frames, request.pick)
            raw.frames = [self._render_frame(scene, k) for k in picked]
            return raw
        if request.event_input == "image":
            raise CaptureError(
                "the built-in synthetic dataset has no pre-rendered event frames: use --event-input "
                "npy (or auto), or write a folder with capture.data.synthetic.write_synthetic_folder"
            )
        frames = [self._render_frame(scene, k) for k in range(self.n_frames)]
        raw.events = events_from_frames(frames, self.duration_us)
        check_events(raw.events, request.sensor_hw, f"synthetic sample {index}")
        return raw

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


# DSEC's frame camera (the benchmarks' video/ frames), and the clips' frame rate in mp4/.
CAMERA_HW = (1080, 1440)
MP4_FPS = 20
RESULTS_FILE = "EventGPT_Instruction_Subset_results_n{n}_20260123_223000.json"


def write_synthetic_folder(
    root: Path,
    n_samples: int,
    seed: int = 0,
    *,
    camera_hw: tuple[int, int] = CAMERA_HW,
    mp4: bool = True,
    video: bool = True,
) -> Path:
    """Write ``n_samples`` synthetic clips under ``root`` in the layout of the EventGPT DSEC
    benchmarks (``my_egpt_dsec_seq_1s``), every file atomically. Returns ``root``.

    - ``event_npy/synthetic/<i:05d>.npy``: EventGPT's pickled dict of x, y, t, p, with
      timestamps offset as the builders store them and their metadata keys (``time_start``,
      ``time_end``, ``duration_ms``, ``image_timestamp``, ``image_idx``,
      ``image_indices_in_clip``, ``num_events``);
    - ``event_image/synthetic/<i>_{0..4}.png`` and ``event_image_1f/synthetic/<i>_0.png``: the
      events drawn as the benchmarks' preprocessing draws them (5 equal-count chunks, and all
      events in one frame; each on its own extent; red p == 1, then blue p == 0 over it);
    - ``video/synthetic/<i>/<k:06d>.png``: the clip's camera frames, scaled to ``camera_hw``
      (DSEC's 1440x1080 frame camera by default) when ``video``;
    - ``mp4/synthetic/<i>.mp4``: the same frames as an H.264 clip at 20 fps when ``mp4``;
    - ``EventGPT_Instruction_Subset.json``: one entry per clip with every path field and empty
      human and gpt turns, as the benchmarks' ``generate_json.py`` writes it;
    - a results JSON as the benchmark scripts leave in the folder (not an instruction list).
    """
    root = Path(root)
    dataset = SyntheticDataset(n_samples, seed=seed)
    entries, results = [], []
    for index in range(n_samples):
        clip = f"{index:05d}"
        key = f"{SYNTHETIC_SEQUENCE}/{clip}"
        frames, events = dataset.clip(index)
        offset_us = 1_000_000 + index * dataset.duration_us // 2  # absolute, 50% overlapping windows
        stored = events.copy()
        stored["t"] += offset_us
        save_eventgpt_npy(
            root / EVENT_DIR / f"{key}.npy",
            stored,
            metadata={
                "time_start": offset_us,
                "time_end": offset_us + dataset.duration_us,
                "duration_ms": dataset.duration_us / 1000.0,
                "image_timestamp": offset_us + dataset.duration_us,
                "image_idx": index,
                "image_indices_in_clip": list(range(len(frames))),
                "num_events": len(events),
            },
        )
        entry: dict[str, object] = {
            "id": dataset.sample_id(index),
            "split": root.name,
            "event_data": f"{key}.npy",
        }
        x, y, p = stored["x"], stored["y"], stored["p"]
        for folder, n_chunks in ((EVENT_IMAGE_DIR, EVENTGPT_N_CHUNKS), (EVENT_IMAGE_1F_DIR, 1)):
            names = []
            for k, chunk in enumerate(split_equal_count(np.arange(len(x)), n_chunks)):
                image = render_benchmark_event_image(x[chunk], y[chunk], p[chunk])
                names.append(f"{key}_{k}.png")
                _write_png(root / folder / names[-1], image)
            entry[folder] = names
        camera = [_scaled(frame, camera_hw) for frame in frames]
        if video:
            for k, frame in enumerate(camera):
                _write_png(root / VIDEO_DIR / key / f"{k:06d}.png", frame)
            entry["video_data"] = key
        if mp4:
            _write_mp4(root / MP4_DIR / f"{key}.mp4", camera)
            entry["mp4_data"] = f"{key}.mp4"
        entry["conversations"] = [{"from": "human", "value": ""}, {"from": "gpt", "value": ""}]
        entries.append(entry)
        results.append(
            {
                "id": entry["id"],
                "split": root.name,
                "query": DEFAULT_PROMPT,
                "event_data": entry["event_data"],
                "egpt": "Coloured shapes move across a textured background.",
                "egpt_time": 1.02,
                "egpt_token_ids": [450, 9088, 2],
            }
        )
    write_text_atomic(root / INSTRUCTION_FILE, json.dumps(entries, indent=1))
    write_text_atomic(root / RESULTS_FILE.format(n=n_samples), json.dumps(results, indent=1))
    return root


def _scaled(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] == tuple(hw):
        return frame
    return np.asarray(Image.fromarray(frame).resize((hw[1], hw[0]), Image.Resampling.BILINEAR))


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG", compress_level=1))


def _write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    """H.264 (yuv420p, crf 28) at 20 fps, as the benchmarks' ffmpeg call encodes ``mp4/``."""
    import av

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=MP4_FPS)
            stream.height, stream.width = frames[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "28", "preset": "fast"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write, suffix=".mp4")
