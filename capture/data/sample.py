"""What a dataset hands a model adapter: one raw sample, before any preprocessing, and what the
adapter asks for (``InputRequest``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Modality = Literal["image", "video", "events"]
# Where a model's frames come from: the camera (video/ PNGs or mp4/), or the event stream
# (pre-rendered event_image/ PNGs, or events drawn from event_npy/).
Source = Literal["camera", "events"]
EventInput = Literal["auto", "npy", "image"]
# How N camera frames are picked from a clip's M: "linspace" = np.linspace(0, M - 1, N) floored
# (the EventGPT benchmarks' 8-frame LLaVA-1.5 rule; N = 1 takes the middle frame), "arange" =
# np.arange(0, M, M / N) floored (transformers' Video-LLaVA recipe; repeats frames when M < N).
FramePick = Literal["linspace", "arange"]

# DSEC's event-camera sensor, the size of the built-in synthetic scene.
DSEC_HEIGHT = 480
DSEC_WIDTH = 640

# The question every EventGPT DSEC benchmark script asks.
DEFAULT_PROMPT = "What are the key elements in this scene?"


@dataclass(frozen=True)
class InputRequest:
    """What a model reads per sample: ``n_frames`` frames from ``source``.

    Camera frames are picked by ``pick``. Event frames come from pre-rendered PNGs or from the
    event stream, as ``event_input`` says (auto: PNGs where the clip has a set of ``n_frames``,
    else the stream). ``sensor_hw`` fixes the canvas events are drawn on (None: each chunk's
    own extent, as EventGPT draws). ``question`` replaces every sample's own question.
    """

    source: Source
    n_frames: int
    pick: FramePick = "linspace"
    event_input: EventInput = "auto"
    sensor_hw: tuple[int, int] | None = None
    question: str | None = None


@dataclass
class RawSample:
    """One sample as read from disk (or generated): the input of ``stage2:preprocess``.

    ``frames`` are HxWx3 uint8 RGB arrays: camera frames, or pre-rendered event images;
    ``events`` is a structured array with fields ``x, y, t, p`` (t in microseconds) where the
    event stream is to be drawn, as ``n_frames`` frames on ``sensor_hw`` (None: each chunk's
    own extent). ``files`` are the files read, relative to the dataset folder.
    """

    sample_id: str
    prompt: str
    frames: list[np.ndarray] = field(default_factory=list)
    events: np.ndarray | None = None
    sensor_hw: tuple[int, int] | None = None
    n_frames: int = 1
    files: list[str] = field(default_factory=list)


class Dataset(Protocol):
    """A finite, indexable source of samples; ``load`` is what ``stage1:load`` times."""

    name: str
    warnings: list[str]  # things the user should know (files skipped), printed by the CLI

    def __len__(self) -> int: ...

    def sample_id(self, index: int) -> str:
        """Stable id of sample ``index`` (used in run.json and for --resume)."""
        ...

    def load(self, index: int, request: InputRequest) -> RawSample:
        """Read (or generate) sample ``index``: what ``request`` asks for, and nothing else."""
        ...


EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
