"""Event streams: safe loading, validation, and EventGPT's events-to-frames preprocessing.

EventGPT (``common/common.py`` of its public code, ``process_event_data``) reads a ``.npy``
holding a pickled dict of arrays ``x, y, t, p`` (the DSEC benchmark builders add metadata keys
such as ``time_start`` and ``num_events``, which are ignored), splits the stream into chunks of
equal event count, and draws each chunk on a white canvas of that chunk's own extent,
``(y.max() + 1, x.max() + 1)``: polarity 0 blue, any other value (1, -1, 2, ...) red, later
events overwriting earlier ones at the same pixel. The drawing here is vectorised and gives the
same pixels as EventGPT's per-event loop (kept as :func:`render_events_loop`); a fixed canvas
(``--sensor-size``) replaces the per-chunk extent only when asked for.

The benchmarks' own preprocessing (``preprocess_event_images.py``, which wrote the
``event_image/`` PNGs) draws slightly differently: red where p == 1, then blue where p == 0 over
it, other polarities not at all (:func:`render_benchmark_event_image`, used to write synthetic
folders in that layout).

Pure NumPy: no torch import, so the benchmark and tests run anywhere.
"""

from __future__ import annotations

import codecs
import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from analyze.files import write_bytes_atomic
from capture.data.sample import EVENT_DTYPE
from capture.errors import CaptureError

EVENT_FIELDS = ("x", "y", "t", "p")

# RGB colours of EventGPT's event image.
WHITE = (255, 255, 255)
BLUE_NEGATIVE = (0, 0, 255)  # p == 0
RED_POSITIVE = (255, 0, 0)  # p != 0
_PALETTE = np.array([BLUE_NEGATIVE, RED_POSITIVE, WHITE], dtype=np.uint8)

# EventGPT draws 5 frames per event stream.
EVENTGPT_N_CHUNKS = 5

# The callables a NumPy pickle of arrays, dtypes and scalars needs, taken from NumPy itself so
# that pickles written by NumPy 1.x (``numpy.core``) and 2.x (``numpy._core``) both resolve to
# the running NumPy's objects without importing the deprecated ``numpy.core`` shim.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Protocol-2 pickles (and NumPy scalars in them) spell bytes as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): codecs.encode,
}


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,8}$")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy array/dtype/scalar reconstruction globals.

    Plain containers (dict, list, tuple, str, int, float, bool, None) have their own pickle
    opcodes and need no global. Any other global is refused in ``find_class``, i.e. before
    anything could call it.
    """

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            # Name the global only when it looks like one: the message must not quote file contents.
            what = f"{module}.{name}" if _IDENTIFIER.match(f"{module}.{name}") else "a non-NumPy object"
            raise CaptureError(
                f"{self._source}: refused to unpickle {what}: event files may hold only "
                "NumPy arrays and plain containers"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise CaptureError(f"{self._source}: refused a persistent id in the pickle: not an event file")


def load_event_file(path: Path) -> np.ndarray:
    """Read an event file into an ``EVENT_DTYPE`` array, in the order stored (not re-sorted).

    Accepted: EventGPT ``.npy`` (a pickled dict of arrays ``x, y, t, p``, other keys ignored;
    read with an unpickler that admits only NumPy arrays and plain containers), a structured
    ``.npy`` with fields ``x, y, t, p``, and ``.npz`` with arrays ``x, y, t, p``. Polarity is
    stored as EventGPT reads it: 0 where ``p == 0``, 1 for any other value (so -1/+1 streams
    are all "not 0", as in EventGPT's drawing). Raises CaptureError naming the file for
    anything else, including truncated files; no message quotes the file's contents.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise CaptureError(f"{source}: event file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            fields = _read_npz(path, source)
        elif suffix == ".npy":
            fields = _read_npy(path, source)
        else:
            raise CaptureError(f"{source}: unknown event file type {suffix!r}: expected .npy or .npz")
    except CaptureError:
        raise
    except Exception as exc:  # NumPy and pickle raise many types on a bad file
        # A malformed file or pickle (allowed callables given bad arguments, absurd shapes, a
        # header NumPy cannot parse). Only the exception's type is quoted: NumPy's and pickle's
        # messages can echo the file's bytes.
        raise CaptureError(
            f"{source}: unreadable event file ({type(exc).__name__}): truncated or not NumPy"
        ) from None
    return events_from_arrays(fields, source)


def _read_npz(path: Path, source: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        missing = [name for name in EVENT_FIELDS if name not in archive.files]
        if missing:
            raise CaptureError(
                f"{source}: .npz lacks arrays {', '.join(missing)}: expected arrays x, y, t, p"
            )
        return {name: archive[name] for name in EVENT_FIELDS}


def _read_npy(path: Path, source: str) -> dict[str, np.ndarray]:
    with path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            _shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            _shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            dtype = None
        if dtype is not None and dtype.hasobject:
            obj = _NumpyOnlyUnpickler(fh, source).load()
            return _fields_from_object(obj, source)
    array = np.load(path, allow_pickle=False)
    if array.dtype.names is None:
        raise CaptureError(
            f"{source}: .npy holds a plain {array.dtype} array of shape {array.shape}: expected a dict "
            "of arrays x, y, t, p (EventGPT) or a structured array with those fields"
        )
    missing = [name for name in EVENT_FIELDS if name not in array.dtype.names]
    if missing:
        raise CaptureError(f"{source}: structured .npy lacks fields {', '.join(missing)}")
    return {name: array[name] for name in EVENT_FIELDS}


def _fields_from_object(obj: Any, source: str) -> dict[str, np.ndarray]:
    """The dict of arrays inside an unpickled EventGPT file (a 0-d object array)."""
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.size == 1:
        obj = obj.reshape(()).item()
    if not isinstance(obj, dict):
        raise CaptureError(
            f"{source}: pickled .npy holds a {type(obj).__name__}: expected a dict of arrays x, y, t, p"
        )
    missing = [name for name in EVENT_FIELDS if name not in obj]
    if missing:
        raise CaptureError(f"{source}: event dict lacks keys {', '.join(missing)}")
    return {name: np.asarray(obj[name]) for name in EVENT_FIELDS}


def events_from_arrays(fields: dict[str, np.ndarray], source: str) -> np.ndarray:
    """Pack 1-D arrays ``x, y, t, p`` into one ``EVENT_DTYPE`` array, checking their types.

    ``x, y, t`` must be integers (t in microseconds), ``p`` integer or bool; ``x, y`` must fit
    ``uint16``. Polarity becomes 0 where ``p == 0``, else 1 (EventGPT: 0 blue, anything else red).
    """
    arrays = {name: np.asarray(fields[name]) for name in EVENT_FIELDS}
    lengths = {name: a.shape for name, a in arrays.items()}
    if any(a.ndim != 1 for a in arrays.values()) or len(set(lengths.values())) != 1:
        shapes = ", ".join(f"{name}{shape}" for name, shape in lengths.items())
        raise CaptureError(f"{source}: event arrays must be 1-D and of equal length, got {shapes}")
    for name in ("x", "y", "t"):
        if arrays[name].dtype.kind not in "iu":
            raise CaptureError(
                f"{source}: event field {name} has dtype {arrays[name].dtype}: expected integers"
                + (" (microseconds)" if name == "t" else " (pixel coordinates)")
            )
    if arrays["p"].dtype.kind not in "iub":
        raise CaptureError(
            f"{source}: event field p has dtype {arrays['p'].dtype}: expected integers or bool"
        )
    n_events = arrays["t"].shape[0]
    if n_events:
        for name in ("x", "y"):
            lo, hi = int(arrays[name].min()), int(arrays[name].max())
            if lo < 0 or hi > np.iinfo(np.uint16).max:
                raise CaptureError(f"{source}: event field {name} spans {lo}..{hi}: not pixel coordinates")
        if arrays["t"].dtype == np.uint64 and int(arrays["t"].max()) > np.iinfo(np.int64).max:
            raise CaptureError(f"{source}: event timestamps exceed int64 microseconds")
    events = np.empty(n_events, dtype=EVENT_DTYPE)
    events["x"] = arrays["x"]
    events["y"] = arrays["y"]
    events["t"] = arrays["t"]
    events["p"] = arrays["p"] != 0
    return events


def check_events(events: np.ndarray, sensor_hw: tuple[int, int] | None, source: str) -> None:
    """Raise CaptureError (one line naming ``source``) unless ``events`` can be drawn.

    Requires a non-empty structured array with integer fields ``x, y, t`` and integer/bool
    ``p`` and non-negative coordinates; with a fixed ``sensor_hw`` (``--sensor-size``) every
    coordinate must also fall inside it (``0 <= x < W``, ``0 <= y < H``). Without one, each
    chunk is drawn on its own extent, as EventGPT does. Streams of any duration are accepted
    (EventGPT's own script refuses windows of 100 ms or more).
    """
    names = events.dtype.names if isinstance(events, np.ndarray) else None
    if names is None or any(name not in names for name in EVENT_FIELDS):
        raise CaptureError(f"{source}: events must be a structured array with fields x, y, t, p")
    for name in EVENT_FIELDS:
        kinds = "iub" if name == "p" else "iu"
        if events.dtype[name].kind not in kinds:
            raise CaptureError(
                f"{source}: event field {name} has dtype {events.dtype[name]}: expected integers"
            )
    if events.ndim != 1 or events.size == 0:
        raise CaptureError(f"{source}: the event stream is empty: nothing to draw")
    lows: dict[str, int] = {}
    for name in ("x", "y"):
        lo = lows[name] = int(events[name].min())
        if lo < 0:
            raise CaptureError(f"{source}: event {name} spans {lo}..{int(events[name].max())}: negative")
    if sensor_hw is None:
        return
    height, width = sensor_hw
    for name, limit in (("x", width), ("y", height)):
        hi = int(events[name].max())
        if hi >= limit:
            raise CaptureError(
                f"{source}: event {name} spans {lows[name]}..{hi}, outside the {width}x{height} sensor "
                "(width x height): wrong --sensor-size or corrupt file"
            )


def split_equal_count(events: np.ndarray, n_chunks: int = EVENTGPT_N_CHUNKS) -> list[np.ndarray]:
    """Split a stream, in order, into ``n_chunks`` contiguous chunks of equal event count.

    As EventGPT's own script does: every chunk holds ``N // n_chunks`` events and the last one
    also the remainder (N=12, n=5 gives 2, 2, 2, 2, 4). With fewer events than chunks, the
    first chunks are empty. ``n_chunks=1`` is the whole stream (how the benchmarks'
    ``event_image_1f/`` frames were drawn). Always returns exactly ``n_chunks`` views.
    """
    if n_chunks < 1:
        raise CaptureError(f"n_chunks must be at least 1, got {n_chunks}")
    per_chunk = events.shape[0] // n_chunks
    bounds = [k * per_chunk for k in range(1, n_chunks)]
    return np.split(events, bounds)


def canvas_hw(events: np.ndarray, sensor_hw: tuple[int, int] | None) -> tuple[int, int]:
    """The canvas a chunk is drawn on: ``sensor_hw`` if given, else EventGPT's rule, the
    chunk's own extent ``(y.max() + 1, x.max() + 1)`` (so a chunk that does not reach the
    sensor's edge gives a smaller frame). An empty chunk has no extent: CaptureError."""
    if sensor_hw is not None:
        return int(sensor_hw[0]), int(sensor_hw[1])
    if events.shape[0] == 0:
        raise CaptureError(
            "an empty chunk of events has no extent to draw (EventGPT sizes each frame by its "
            "events): give fewer --frames than events, or a fixed --sensor-size WxH"
        )
    return int(events["y"].max()) + 1, int(events["x"].max()) + 1


def render_events(events: np.ndarray, sensor_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Draw events on a white HxWx3 uint8 canvas: p == 0 blue, else red; the last event wins.

    The canvas is :func:`canvas_hw`: the events' own extent unless ``sensor_hw`` is given.
    Vectorised and deterministic: each event gets the code ``2 * index + (p != 0)``; the
    per-pixel maximum code (``np.maximum.at``, whose result does not depend on the order in
    which duplicates are visited) is the pixel's last event, and its low bit that event's
    polarity. Pixel-identical to :func:`render_events_loop`. Coordinates outside a given
    sensor raise CaptureError.
    """
    height, width = canvas_hw(events, sensor_hw)
    n_events = events.shape[0]
    if n_events == 0:
        return np.full((height, width, 3), 255, dtype=np.uint8)
    x = events["x"].astype(np.intp)
    y = events["y"].astype(np.intp)
    if x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height:
        raise CaptureError(f"events fall outside the {width}x{height} sensor: run check_events first")
    linear = y * width + x
    code = np.arange(0, 2 * n_events, 2, dtype=np.int64)
    code += events["p"] != 0
    last_code = np.full(height * width, -1, dtype=np.int64)
    np.maximum.at(last_code, linear, code)
    # Palette index per pixel: 0 blue (p == 0), 1 red (p != 0), 2 white (no event).
    colour = np.where(last_code >= 0, last_code & 1, 2)
    return np.take(_PALETTE, colour, axis=0).reshape(height, width, 3)


def render_event_frames(
    events: np.ndarray, sensor_hw: tuple[int, int] | None = None, n_chunks: int = EVENTGPT_N_CHUNKS
) -> list[np.ndarray]:
    """EventGPT's event frames: split into ``n_chunks`` equal-count chunks, draw each one on
    its own extent (or on ``sensor_hw``). An empty chunk without ``sensor_hw`` is a
    CaptureError (EventGPT's own code fails on it too)."""
    frames = []
    for k, chunk in enumerate(split_equal_count(events, n_chunks)):
        if chunk.shape[0] == 0 and sensor_hw is None:
            raise CaptureError(
                f"{events.shape[0]} events cannot be drawn as {n_chunks} frames: chunk {k} is empty "
                "and EventGPT sizes each frame by its events; use fewer --frames or --sensor-size WxH"
            )
        frames.append(render_events(chunk, sensor_hw))
    return frames


def render_events_loop(events: np.ndarray, sensor_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Reference drawing: EventGPT's ``generate_event_image`` per-event Python loop, canvas
    from the events' extent unless ``sensor_hw`` is given (slow; for tests and the benchmark)."""
    height, width = canvas_hw(events, sensor_hw)
    canvas = np.ones((height, width, 3), dtype=np.uint8) * 255
    for x_, y_, p_ in zip(events["x"], events["y"], events["p"], strict=True):
        if p_ == 0:
            canvas[y_, x_] = np.array(BLUE_NEGATIVE)
        else:
            canvas[y_, x_] = np.array(RED_POSITIVE)
    return canvas


def render_benchmark_event_image(
    x: np.ndarray, y: np.ndarray, p: np.ndarray, sensor_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """The benchmarks' preprocessing drawing (``preprocess_event_images.py``): canvas from the
    events' extent unless ``sensor_hw`` is given; red where p == 1, then blue where p == 0
    over it; other polarity values are not drawn. Takes the raw arrays (polarity as stored)."""
    if sensor_hw is None:
        if x.size == 0:
            raise CaptureError("an empty chunk of events has no extent to draw")
        height, width = int(y.max()) + 1, int(x.max()) + 1
    else:
        height, width = sensor_hw
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    xi, yi, pi = x.astype(np.intp), y.astype(np.intp), p.astype(np.int64)
    image[yi[pi == 1], xi[pi == 1]] = RED_POSITIVE
    image[yi[pi == 0], xi[pi == 0]] = BLUE_NEGATIVE
    return image


def save_eventgpt_npy(path: Path, events: np.ndarray, metadata: dict[str, Any] | None = None) -> None:
    """Write events as EventGPT does: a pickled dict of arrays x, y, t, p in a ``.npy``, plus
    ``metadata`` keys beside them (the DSEC benchmark builders add ``time_start``,
    ``duration_ms``, ``num_events``, ...).

    Atomic: written to a temporary name in the same folder (created if missing), then renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {name: np.ascontiguousarray(events[name]) for name in EVENT_FIELDS}
    payload.update(metadata or {})
    buffer = io.BytesIO()
    np.save(buffer, np.array(payload, dtype=object), allow_pickle=True)
    write_bytes_atomic(path, buffer.getvalue())
