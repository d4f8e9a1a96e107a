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
    frames = render_event_frames(make_events(x=[1, 2], y=[0, 0], p=[0, 1]), (1, 3))
    assert len(frames) == 5
    assert all((frame == 255).all() for frame in frames[:4])
    assert np.array_equal(frames[4], np.array([[W, B, R]], dtype=np.uint8))


def test_render_events_outside_sensor_raises() -> None:
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
    assert np.array_equal(loaded["p"], (events["p"] > 0).astype(np.uint8))


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
    assert loaded["p"].tolist() == [0, 1, 0]


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
    assert events["p"].tolist() == [0, 0, 1]
