"""What a dataset hands a model adapter: one raw sample, before any preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Modality = Literal["image", "video", "events"]

# DSEC's event-camera sensor, the size of the built-in synthetic scene.
DSEC_HEIGHT = 480
DSEC_WIDTH = 640

DEFAULT_PROMPT = "Describe what happens in the scene."


@dataclass
class RawSample:
    """One sample as read from disk (or generated): the input of ``stage2:preprocess``.

    ``frames`` are HxWx3 uint8 RGB arrays covering the clip (one is enough for an image model);
    ``events`` is a structured array with fields ``x, y, t, p`` (t in microseconds), or None
    where the adapter did not ask for events.
    """

    sample_id: str
    prompt: str
    frames: list[np.ndarray] = field(default_factory=list)
    events: np.ndarray | None = None
    sensor_hw: tuple[int, int] = (DSEC_HEIGHT, DSEC_WIDTH)


class Dataset(Protocol):
    """A finite, indexable source of samples; ``load`` is what ``stage1:load`` times."""

    name: str

    def __len__(self) -> int: ...

    def sample_id(self, index: int) -> str:
        """Stable id of sample ``index`` (used in run.json and for --resume)."""
        ...

    def load(self, index: int, modality: Modality) -> RawSample:
        """Read (or generate) sample ``index`` with what ``modality`` needs."""
        ...


EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
