"""Event files, validation, equal-count split and EventGPT's event frames."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from capture.data.events import (
    check_events,
    events_from_arrays,
    load_event_file,
    render_benchmark_event_image,
    render_event_frames,
    render_events,
    render_events_loop,
    save_eventgpt_npy,
    split_equal_count,
)
from capture.data.sample import EVENT_DTYPE
from capture.errors import CaptureError

W, B, R = (255, 255, 255), (0, 0, 255), (255, 0, 0)


def make_events(x: list[int], y: list[int], p: list[int], t: list[int] | None = None) -> np.ndarray:
    events = np.empty(len(x), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = x, y, p
    events["t"] = t if t is not None else np.arange(len(x)) * 10
    return events


def random_events(n: int, sensor_hw: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, sensor_hw[1], n)
    events["y"] = rng.integers(0, sensor_hw[0], n)
    events["t"] = np.sort(rng.integers(0, 100_000, n))
    events["p"] = rng.integers(0, 3, n)  # 2 is "not 0" too: red
    return events


def write_npy_payload(path: Path, payload: bytes) -> None:
    """A .npy whose header says 0-d object array, followed by ``payload`` (a pickle)."""
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        fh.write(payload)


# --- drawing -------------------------------------------------------------------------------


def test_render_events_hand_computed_3x4() -> None:
    # (x, y, p) in stream order on a 3-row, 4-column sensor.
    events = make_events(
        x=[0, 1, 0, 3, 1, 2, 3],
        y=[0, 0, 0, 2, 0, 1, 2],
        p=[1, 0, 0, 1, 1, 0, 2],
    )
    expected = np.array(
        [
            [B, R, W, W],  # (0,0): red then blue -> blue; (1,0): blue then red -> red
            [W, W, B, W],
            [W, W, W, R],  # (3,2): p=1 then p=2 -> red
        ],
        dtype=np.uint8,
    )
    assert np.array_equal(render_events(events, (3, 4)), expected)
    assert np.array_equal(render_events_loop(events, (3, 4)), expected)


def test_render_events_empty_is_white() -> None:
    canvas = render_events(make_events([], [], []), (2, 3))
    assert canvas.shape == (2, 3, 3) and canvas.dtype == np.uint8
    assert (canvas == 255).all()


@pytest.mark.parametrize(
    ("n", "sensor_hw", "seed"), [(1, (3, 4), 0), (500, (4, 5), 1), (20_000, (48, 64), 2)]
)
def test_vectorised_matches_loop(n: int, sensor_hw: tuple[int, int], seed: int) -> None:
    events = random_events(n, sensor_hw, seed)
    assert np.array_equal(render_events(events, sensor_hw), render_events_loop(events, sensor_hw))


def test_render_event_frames_draws_each_equal_count_chunk() -> None:
    events = make_events(x=[0, 1, 2, 3, 0, 1, 2], y=[0, 0, 0, 0, 1, 1, 1], p=[1, 0, 1, 0, 1, 0, 1])
    frames = render_event_frames(events, (2, 4), n_chunks=3)
    assert len(frames) == 3
    # chunks of 2, 2, 3 events (remainder last, as EventGPT): {0,1}, {2,3}, {4,5,6}
    expected_0 = np.array([[R, B, W, W], [W, W, W, W]], dtype=np.uint8)
    expected_1 = np.array([[W, W, R, B], [W, W, W, W]], dtype=np.uint8)
    expected_2 = np.array([[W, W, W, W], [R, B, R, W]], dtype=np.uint8)
    for got, want in zip(frames, [expected_0, expected_1, expected_2], strict=True):
        assert np.array_equal(got, want)


def test_render_event_frames_fewer_events_than_chunks() -> None:
    events = make_events(x=[1, 2], y=[0, 0], p=[0, 1])
    # On a fixed sensor the empty chunks are blank canvases ...
    frames = render_event_frames(events, (1, 3))
    assert len(frames) == 5
    assert all((frame == 255).all() for frame in frames[:4])
    assert np.array_equal(frames[4], np.array([[W, B, R]], dtype=np.uint8))
    # ... but EventGPT sizes each frame by its events, and an empty chunk has no size (its own
    # code fails on it with "zero-size array to reduction operation maximum").
    with pytest.raises(CaptureError, match=r"2 events cannot be drawn as 5 frames: chunk 0 is empty"):
        render_event_frames(events)
    assert len(render_event_frames(events, n_chunks=2)) == 2


# --- EventGPT's own drawing, edge cases ------------------------------------------------------


def official_frames(events: np.ndarray, n: int) -> list[np.ndarray]:
    """EventGPT's ``get_event_images_list`` + ``generate_event_image`` (common/common.py), as
    documented: equal-count chunks (remainder last), each drawn by a per-event loop on a white
    canvas of (y.max() + 1, x.max() + 1); p == 0 blue, anything else red; the last event wins.
    Works on the raw arrays, polarity as stored."""
    x, y, p = events["x"], events["y"], events["p"]
    per = len(x) // n
    frames = []
    for i in range(n):
        lo, hi = i * per, (i + 1) * per if i < n - 1 else len(x)
        xs, ys, ps = x[lo:hi], y[lo:hi], p[lo:hi]
        image = np.ones((ys.max() + 1, xs.max() + 1, 3), dtype=np.uint8) * 255
        for x_, y_, p_ in zip(xs, ys, ps, strict=True):
            image[y_, x_] = np.array([0, 0, 255]) if p_ == 0 else np.array([255, 0, 0])
        frames.append(image)
    return frames


def test_canvas_is_each_chunks_own_extent_as_eventgpt_draws() -> None:
    # The documented example: x in {10, 20}, y in {5, 7} -> an (8, 21, 3) frame.
    frame = render_events(make_events(x=[10, 20], y=[5, 7], p=[0, 1]))
    assert frame.shape == (8, 21, 3)
    assert tuple(frame[5, 10]) == B and tuple(frame[7, 20]) == R and int((frame != 255).any(-1).sum()) == 2
    # Two chunks that reach different extents give frames of different sizes.
    events = make_events(x=[0, 3, 1, 9], y=[0, 2, 0, 4], p=[1, 1, 0, 0])
    frames = render_event_frames(events, n_chunks=2)
    assert [f.shape for f in frames] == [(3, 4, 3), (5, 10, 3)]
    for got, want in zip(frames, official_frames(events, 2), strict=True):
        assert np.array_equal(got, want)
    # --sensor-size replaces the extent.
    assert [f.shape for f in render_event_frames(events, (6, 12), n_chunks=2)] == [(6, 12, 3)] * 2


def test_polarities_minus_one_and_one_are_all_red_as_in_eventgpt(tmp_path: Path) -> None:
    path = tmp_path / "signed.npy"
    rng = np.random.default_rng(5)
    n = 2_000
    data = {
        "x": rng.integers(0, 50, n).astype(np.uint16),
        "y": rng.integers(0, 30, n).astype(np.uint16),
        "t": np.arange(n, dtype=np.int64),
        "p": rng.choice(np.array([-1, 1], dtype=np.int8), n),
    }
    np.save(path, data, allow_pickle=True)
    events = load_event_file(path)
    frames = render_event_frames(events)
    want = official_frames(np.rec.fromarrays([data["x"], data["y"], data["p"]], names="x,y,p"), 5)
    for got, ref in zip(frames, want, strict=True):
        assert np.array_equal(got, ref)
        drawn = (got != 255).any(-1)
        assert (got[drawn] == R).all() and drawn.sum() > 0  # no blue at all
    # while 0/1 streams give both colours, the last event at a pixel winning
    assert tuple(render_events(make_events(x=[0, 0], y=[0, 0], p=[0, 1]))[0, 0]) == R
    assert tuple(render_events(make_events(x=[0, 0], y=[0, 0], p=[1, 0]))[0, 0]) == B


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_frames_equal_the_official_drawing_on_random_streams(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 3_000))
    events = make_events(
        x=rng.integers(0, 64, n).tolist(), y=rng.integers(0, 48, n).tolist(), p=rng.integers(0, 2, n).tolist()
    )
    for n_frames in (1, 5):
        got, want = render_event_frames(events, n_chunks=n_frames), official_frames(events, n_frames)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_one_frame_is_all_events_in_one_chunk() -> None:
    events = make_events(x=[0, 1, 2, 3, 4, 5, 6], y=[0] * 7, p=[1, 0, 1, 0, 1, 0, 1])
    (frame,) = render_event_frames(events, n_chunks=1)
    assert np.array_equal(frame, render_events(events)) and frame.shape == (1, 7, 3)


def test_benchmark_preprocessing_draws_red_then_blue_and_skips_other_polarities() -> None:
    x, y = np.array([0, 0, 1, 2]), np.array([0, 0, 0, 0])
    p = np.array([0, 1, 1, -1])  # (0,0): blue then red -> blue wins here; (2,0): -1 not drawn
    image = render_benchmark_event_image(x, y, p)
    assert image.shape == (1, 3, 3)
    assert [tuple(c) for c in image[0]] == [B, R, W]
    # EventGPT's own rule differs on exactly these pixels: last event wins, -1 is red.
    assert [tuple(c) for c in render_events(make_events(x=[0, 0, 1, 2], y=[0] * 4, p=[0, 1, 1, 1]))[0]] == [
        R,
        R,
        R,
    ]


def test_render_events_outside_a_given_sensor_raises() -> None:
    with pytest.raises(CaptureError, match="outside the 4x3 sensor"):
        render_events(make_events(x=[4], y=[0], p=[0]), (3, 4))


# --- split ---------------------------------------------------------------------------------


def test_split_equal_count_remainder_goes_to_the_last_chunk_as_in_eventgpt() -> None:
    events = make_events(x=list(range(12)), y=[0] * 12, p=[0] * 12)
    chunks = split_equal_count(events, 5)
    assert [len(c) for c in chunks] == [2, 2, 2, 2, 4]
    assert np.array_equal(np.concatenate(chunks), events)
    assert chunks[1]["x"].tolist() == [2, 3]
    assert chunks[4]["x"].tolist() == [8, 9, 10, 11]


def test_split_equal_count_exact_and_short() -> None:
    events = make_events(x=list(range(10)), y=[0] * 10, p=[0] * 10)
    assert [len(c) for c in split_equal_count(events, 5)] == [2, 2, 2, 2, 2]
    assert [len(c) for c in split_equal_count(events[:3], 5)] == [0, 0, 0, 0, 3]
    with pytest.raises(CaptureError, match="n_chunks"):
        split_equal_count(events, 0)


# --- loading -------------------------------------------------------------------------------


def test_load_eventgpt_dict_npy(tmp_path: Path) -> None:
    events = random_events(1000, (480, 640), seed=3)
    path = tmp_path / "clip.npy"
    save_eventgpt_npy(path, events)
    loaded = load_event_file(path)
    assert loaded.dtype == EVENT_DTYPE
    assert np.array_equal(loaded[["x", "y", "t"]], events[["x", "y", "t"]])
    assert np.array_equal(loaded["p"], (events["p"] != 0).astype(np.uint8))


def test_load_dict_npy_written_by_np_save_other_dtypes_kept_order(tmp_path: Path) -> None:
    path = tmp_path / "clip.npy"
    data = {
        "x": np.array([5, 1, 2], dtype=np.int64),
        "y": np.array([0, 7, 3], dtype=np.int32),
        "t": np.array([30, 10, 20], dtype=np.uint32),  # not sorted: kept as stored
        "p": np.array([-1, 1, -1], dtype=np.int8),  # -1/+1 encoding
        "extra": "ignored",
    }
    np.save(path, data, allow_pickle=True)
    loaded = load_event_file(path)
    assert loaded["x"].tolist() == [5, 1, 2]
    assert loaded["y"].tolist() == [0, 7, 3]
    assert loaded["t"].tolist() == [30, 10, 20]
    assert loaded["p"].tolist() == [1, 1, 1]  # -1 is "not 0": red, as EventGPT draws it


def test_load_protocol2_pickle_with_numpy1_names(tmp_path: Path) -> None:
    # NumPy 1.x pickles name numpy.core.multiarray; protocol 2 spells bytes via _codecs.encode.
    array = np.array(
        {
            "x": np.array([1, 2], dtype=np.uint16),
            "y": np.array([0, 1], dtype=np.uint16),
            "t": np.array([0, 5], dtype=np.int64),
            "p": np.array([1, 0], dtype=np.uint8),
        },
        dtype=object,
    )
    payload = pickle.dumps(array, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in payload and b"_codecs" in payload
    path = tmp_path / "old.npy"
    write_npy_payload(path, payload)
    loaded = load_event_file(path)
    assert (
        loaded["x"].tolist() == [1, 2] and loaded["t"].tolist() == [0, 5] and loaded["p"].tolist() == [1, 0]
    )


def test_load_structured_npy(tmp_path: Path) -> None:
    dtype = np.dtype([("t", "<i8"), ("p", "i1"), ("x", "<i4"), ("y", "<i2"), ("extra", "f4")])
    stored = np.array([(100, 1, 3, 2, 0.5), (50, 0, 0, 1, 0.0)], dtype=dtype)
    path = tmp_path / "structured.npy"
    np.save(path, stored)
    loaded = load_event_file(path)
    assert loaded.tolist() == [(3, 2, 100, 1), (0, 1, 50, 0)]


def test_load_npz(tmp_path: Path) -> None:
    path = tmp_path / "clip.npz"
    np.savez(path, x=np.array([4, 2]), y=np.array([1, 0]), t=np.array([7, 9]), p=np.array([True, False]))
    assert load_event_file(path).tolist() == [(4, 1, 7, 1), (2, 0, 9, 0)]


def _os_system_payload(marker: Path) -> object:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    return Evil()


def _eval_payload(marker: Path) -> object:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (eval, (f"open({str(marker)!r}, 'w').close()",))

    return Evil()


@pytest.mark.parametrize(
    ("make_payload", "refused"), [(_os_system_payload, "system"), (_eval_payload, "eval")]
)
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, make_payload, refused: str) -> None:
    marker = tmp_path / "marker"
    evil = make_payload(marker)
    path = tmp_path / "evil.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.array({"x": evil, "y": 0, "t": 0, "p": 0}, dtype=object), allow_pickle=True)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CaptureError, match=rf"evil\.npy: refused to unpickle \w+\.{refused}"):
        load_event_file(path)
    assert not marker.exists()


def test_pickle_of_other_class_refused(tmp_path: Path) -> None:
    from collections import OrderedDict

    path = tmp_path / "od.npy"
    write_npy_payload(path, pickle.dumps(OrderedDict(x=1), protocol=4))
    with pytest.raises(CaptureError, match=r"od\.npy: refused to unpickle collections\.OrderedDict"):
        load_event_file(path)


@pytest.mark.parametrize("kind", ["dict", "structured", "npz"])
def test_truncated_file_raises(tmp_path: Path, kind: str) -> None:
    events = random_events(200, (48, 64), seed=4)
    path = tmp_path / ("clip.npz" if kind == "npz" else "clip.npy")
    if kind == "dict":
        save_eventgpt_npy(path, events)
    elif kind == "structured":
        np.save(path, events)
    else:
        np.savez(path, x=events["x"], y=events["y"], t=events["t"], p=events["p"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaptureError, match=r"clip\.np[yz]"):
        load_event_file(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "unreadable event file"),
        (lambda p: np.save(p, np.zeros((3, 4))), "plain float64 array"),
        (
            lambda p: np.save(p, {"x": np.array([1]), "y": np.array([1])}, allow_pickle=True),
            "lacks keys t, p",
        ),
        (lambda p: np.save(p, [1, 2], allow_pickle=True), "plain int64 array"),
        (
            lambda p: np.save(
                p,
                {"x": np.array([1.5]), "y": np.array([1]), "t": np.array([0]), "p": np.array([0])},
                allow_pickle=True,
            ),
            "field x has dtype float64",
        ),
        (
            lambda p: np.save(
                p,
                {"x": np.array([1]), "y": np.array([1]), "t": np.array([0.5]), "p": np.array([0])},
                allow_pickle=True,
            ),
            "field t has dtype float64: expected integers",
        ),
        (
            lambda p: np.save(
                p,
                {"x": np.array([1, 2]), "y": np.array([1]), "t": np.array([0]), "p": np.array([0])},
                allow_pickle=True,
            ),
            "1-D and of equal length",
        ),
        (
            lambda p: np.save(
                p,
                {"x": np.array([-1]), "y": np.array([1]), "t": np.array([0]), "p": np.array([0])},
                allow_pickle=True,
            ),
            "field x spans -1..-1",
        ),
    ],
)
def test_bad_event_files(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(CaptureError, match=message) as info:
        load_event_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="event file not found"):
        load_event_file(tmp_path / "nope.npy")
    (tmp_path / "events.txt").write_text("1 2 3 4")
    with pytest.raises(CaptureError, match=r"unknown event file type '\.txt'"):
        load_event_file(tmp_path / "events.txt")
    np.savez(tmp_path / "partial.npz", x=np.array([1]))
    with pytest.raises(CaptureError, match="lacks arrays y, t, p"):
        load_event_file(tmp_path / "partial.npz")


# --- validation ----------------------------------------------------------------------------


def test_check_events_accepts_valid_stream() -> None:
    events = make_events(x=[0, 3], y=[0, 2], p=[0, 1], t=[0, 10_000_000])  # 10 s is fine
    assert check_events(events, (3, 4), "clip") is None


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (make_events([], [], []), "clip.npy: the event stream is empty"),
        (make_events(x=[4], y=[0], p=[0]), r"clip.npy: event x spans 4..4, outside the 4x3 sensor"),
        (make_events(x=[0, 1], y=[1, 3], p=[0, 0]), r"clip.npy: event y spans 1..3, outside the 4x3 sensor"),
        (np.zeros(3), "clip.npy: events must be a structured array"),
        (
            np.zeros(2, dtype=[("x", "f4"), ("y", "u2"), ("t", "i8"), ("p", "u1")]),
            "clip.npy: event field x has dtype float32",
        ),
        (np.zeros(2, dtype=[("x", "u2"), ("y", "u2"), ("t", "i8")]), "with fields x, y, t, p"),
    ],
)
def test_check_events_errors(events: np.ndarray, message: str) -> None:
    with pytest.raises(CaptureError, match=message) as info:
        check_events(events, (3, 4), "clip.npy")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("x", "y", "sensor_hw", "message"),
    [
        ([-2, 3], [0, 1], None, r"^clip: event x spans -2\.\.3: negative$"),
        ([-2, 3], [0, 1], (3, 4), r"^clip: event x spans -2\.\.3: negative$"),
        # negative coordinates are named before coordinates outside the sensor
        ([5, 1], [-1, 2], (3, 4), r"^clip: event y spans -1\.\.2: negative$"),
        # x outside the sensor is named before y
        ([1, 5], [0, 7], (3, 4), r"^clip: event x spans 1\.\.5, outside the 4x3 sensor"),
        ([1, 2], [1, 7], (3, 4), r"^clip: event y spans 1\.\.7, outside the 4x3 sensor"),
    ],
)
def test_check_events_coordinate_errors_in_order(
    x: list[int], y: list[int], sensor_hw: tuple[int, int] | None, message: str
) -> None:
    events = np.zeros(len(x), dtype=[("x", "i4"), ("y", "i4"), ("t", "i8"), ("p", "u1")])
    events["x"], events["y"] = x, y
    with pytest.raises(CaptureError, match=message):
        check_events(events, sensor_hw, "clip")


def test_events_from_arrays_bool_and_signed_polarity() -> None:
    events = events_from_arrays(
        {
            "x": np.array([1, 2, 3]),
            "y": np.array([0, 0, 0]),
            "t": np.array([0, 1, 2]),
            "p": np.array([-1, 0, 1]),
        },
        "src",
    )
    assert events.dtype == EVENT_DTYPE
    assert events["p"].tolist() == [1, 0, 1]


def test_metadata_keys_beside_the_events_are_accepted(tmp_path: Path) -> None:
    """The DSEC benchmark builders store time_start, duration_ms, num_events, ... beside x, y, t, p
    (numpy scalars, floats, lists): read, and ignored."""
    events = random_events(100, (48, 64), seed=9)
    path = tmp_path / "000000.npy"
    save_eventgpt_npy(
        path,
        events,
        metadata={
            "time_start": np.int64(49_000_000_000),
            "time_end": np.int64(49_001_000_000),
            "duration_ms": 1000.0,
            "image_timestamp": np.uint64(49_001_000_000),
            "image_idx": 27,
            "image_indices_in_clip": [27, 28, 29],
            "num_events": np.int64(100),
        },
    )
    loaded = load_event_file(path)
    assert np.array_equal(loaded[["x", "y", "t"]], events[["x", "y", "t"]])


def test_no_error_message_quotes_the_files_contents(tmp_path: Path) -> None:
    secret = b"root:x:0:0:root:/root:/bin/bash\n"
    for name, payload in (
        ("passwd.npy", secret),  # not NumPy at all
        ("header.npy", b"\x93NUMPY\x01\x00" + b"\x10\x00" + b"{'root:x:0:0': 1}\n"),  # bad header
        ("pickle.npy", None),  # a pickle that names a global made of text
    ):
        path = tmp_path / name
        if payload is None:
            write_npy_payload(path, b"croot:x:0:0\nsystem\n.")
        else:
            path.write_bytes(payload)
        with pytest.raises(CaptureError) as info:
            load_event_file(path)
        message = str(info.value)
        assert "root:x" not in message and "/bin/bash" not in message, message
        assert message.startswith(str(path)) and "\n" not in message
