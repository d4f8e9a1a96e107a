"""The built-in synthetic dataset: determinism, shapes, and events from intensity changes."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from capture.data.events import check_events
from capture.data.sample import DEFAULT_PROMPT, EVENT_DTYPE, InputRequest
from capture.data.synthetic import CONTRAST_THRESHOLD, LOG_EPS, SyntheticDataset, events_from_frames
from capture.errors import CaptureError

IMAGE = InputRequest("camera", 1)
VIDEO = InputRequest("camera", 8)
EVENTS = InputRequest("events", 5)


@pytest.fixture(scope="module")
def dataset() -> SyntheticDataset:
    return SyntheticDataset(4, seed=7)


def test_ids_and_length(dataset: SyntheticDataset) -> None:
    assert dataset.name == "synthetic"
    assert len(dataset) == 4
    assert dataset.sample_id(3) == "synthetic-00003"
    with pytest.raises(CaptureError, match=r"sample 4 out of range 0\.\.3"):
        dataset.sample_id(4)


def test_image_video_events_shapes(dataset: SyntheticDataset) -> None:
    image = dataset.load(1, IMAGE)
    assert image.sample_id == "synthetic-00001" and image.prompt == DEFAULT_PROMPT
    assert image.events is None and len(image.frames) == 1
    assert image.frames[0].shape == (480, 640, 3) and image.frames[0].dtype == np.uint8

    video = dataset.load(1, VIDEO)
    assert len(video.frames) == 8 and video.events is None
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in video.frames)
    assert np.array_equal(image.frames[0], video.frames[4])  # the middle frame
    assert not np.array_equal(video.frames[0], video.frames[7])  # things move

    events = dataset.load(1, EVENTS)
    assert events.frames == [] and events.sensor_hw is None and events.n_frames == 5
    ev = events.events
    assert ev is not None and ev.dtype == EVENT_DTYPE
    assert 10_000 <= len(ev) <= 1_000_000
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() >= 0 and ev["t"].max() < 50_000
    assert set(np.unique(ev["p"]).tolist()) == {0, 1}
    check_events(ev, (480, 640), "synthetic")


def test_deterministic_per_sample_and_seed(dataset: SyntheticDataset) -> None:
    again = SyntheticDataset(4, seed=7)
    a, b = dataset.load(2, EVENTS).events, again.load(2, EVENTS).events
    assert a is not None and b is not None and np.array_equal(a, b)
    frames_a, frames_b = dataset.load(2, VIDEO).frames, again.load(2, VIDEO).frames
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b, strict=True))
    # Same index in a bigger dataset: same sample.
    assert np.array_equal(SyntheticDataset(10, seed=7).load(2, IMAGE).frames[0], frames_a[4])
    # Different index or seed: a different scene.
    assert not np.array_equal(dataset.load(3, IMAGE).frames[0], frames_a[4])
    assert not np.array_equal(SyntheticDataset(4, seed=8).load(2, IMAGE).frames[0], frames_a[4])


def test_custom_size_and_frames() -> None:
    small = SyntheticDataset(1, sensor_hw=(64, 96), n_frames=3, duration_us=3_000)
    video = small.load(0, InputRequest("camera", 3))
    assert len(video.frames) == 3 and video.frames[0].shape == (64, 96, 3)
    ev = small.load(0, EVENTS).events
    assert ev is not None and len(ev) > 0 and ev["t"].max() < 3_000
    check_events(ev, (64, 96), "small")


def test_bad_arguments() -> None:
    with pytest.raises(CaptureError, match="n_frames must be >= 2"):
        SyntheticDataset(1, n_frames=1)
    with pytest.raises(CaptureError, match="n_samples must be >= 0"):
        SyntheticDataset(-1)
    with pytest.raises(CaptureError, match="no pre-rendered event frames: use --event-input npy"):
        SyntheticDataset(1).load(0, InputRequest("events", 5, event_input="image"))


def test_events_from_frames_known_answer() -> None:
    grey = np.full((2, 3, 3), 100, dtype=np.uint8)
    after = grey.copy()
    after[0, 1] = 200  # brighter: one ON event at (x=1, y=0)
    after[1, 2] = 20  # darker: one OFF event at (x=2, y=1)
    after[1, 0] = 105  # +5%: below the threshold, no event
    events = events_from_frames([grey, after], duration_us=1_000)

    def crossing_us(before: float, now: float) -> int:
        change = math.log(now / 255 + LOG_EPS) - math.log(before / 255 + LOG_EPS)
        return math.floor(CONTRAST_THRESHOLD / abs(change) * 1_000)

    t_on, t_off = crossing_us(100, 200), crossing_us(100, 20)
    assert t_off < t_on  # the larger log change crosses the threshold sooner
    assert events.tolist() == [(2, 1, t_off, 0), (1, 0, t_on, 1)]


def test_events_from_frames_spreads_over_intervals() -> None:
    frames = [np.full((1, 1, 3), v, dtype=np.uint8) for v in (50, 150, 50)]
    events = events_from_frames(frames, duration_us=2_000)
    assert events["p"].tolist() == [1, 0]
    assert 0 < events["t"][0] < 1_000 <= events["t"][1] < 2_000


def test_load_is_fast(dataset: SyntheticDataset) -> None:
    # Target is < 100 ms per sample; allow slack for a shared CI machine.
    dataset.load(0, EVENTS)  # warm-up
    start = time.perf_counter()
    for request in (IMAGE, VIDEO, EVENTS):
        dataset.load(0, request)
    assert time.perf_counter() - start < 1.0


def test_frames_are_picked_by_the_requests_rule(dataset: SyntheticDataset) -> None:
    video = dataset.load(1, VIDEO).frames
    picked = dataset.load(1, InputRequest("camera", 3, pick="arange", question="Why?"))
    assert picked.prompt == "Why?"
    # np.arange(0, 8, 8 / 3) -> 0, 2, 5
    assert all(np.array_equal(a, video[k]) for a, k in zip(picked.frames, (0, 2, 5), strict=True))
