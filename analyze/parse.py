"""Read one Kineto (Chrome JSON) trace into NumPy columns.

Only the fields attribution needs are decoded (msgspec Structs that skip everything else), and
they become arrays straight away, so a trace costs one decode plus a few C-level passes; there
is no per-event Python loop. One trace is held in memory at a time.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from analyze.errors import AnalyzeError

# Event categories (Kineto's "cat") that matter to attribution.
CPU_OP = "cpu_op"
USER_ANNOTATION = "user_annotation"
CUDA_RUNTIME = "cuda_runtime"
CUDA_DRIVER = "cuda_driver"
KERNEL = "kernel"
GPU_MEMCPY = "gpu_memcpy"
GPU_MEMSET = "gpu_memset"
DEVICE_CATS = (KERNEL, GPU_MEMCPY, GPU_MEMSET)
# Device-side categories that are drawn by viewers but never attributed or counted.
DEVICE_ONLY_CATS = ("gpu_user_annotation", "cuda_sync")
# Host-side categories that are not work: the profiler's own span.
NOT_WORK_CATS = ("Trace",)
FLOW_CAT = "ac2g"


class _Args(msgspec.Struct, frozen=True, gc=False):
    correlation: int = -1
    external_id: int = msgspec.field(default=-1, name="External id")


_NO_ARGS = _Args()


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    cat: str = ""
    name: str = ""
    pid: int | str = 0
    tid: int | str = 0
    ts: float = 0.0
    dur: float = 0.0
    id: int | str = -1
    args: _Args = _NO_ARGS


class _DeviceProperties(msgspec.Struct, gc=False):
    name: str = ""


class _TraceFile(msgspec.Struct, gc=False):
    traceEvents: list[_Event]
    deviceProperties: list[_DeviceProperties] = []


_DECODER = msgspec.json.Decoder(_TraceFile | list[_Event])
_LENIENT = msgspec.json.Decoder(Any)


@dataclass(frozen=True)
class Coded:
    """A string column stored as small integer codes into ``names`` (few distinct values)."""

    codes: np.ndarray  # int64, one per event
    names: tuple[Any, ...]

    def isin(self, *values: str) -> np.ndarray:
        """Boolean mask of the events whose value is one of ``values``."""
        wanted = [i for i, n in enumerate(self.names) if n in values]
        if not wanted:
            return np.zeros(len(self.codes), dtype=bool)
        if len(wanted) == 1:
            return self.codes == wanted[0]
        return np.isin(self.codes, wanted)

    def __getitem__(self, mask: np.ndarray) -> Coded:
        return Coded(self.codes[mask], self.names)

    def values(self, index: np.ndarray | None = None) -> np.ndarray:
        """The values themselves (object array), of all events or of those at ``index``."""
        table = np.empty(len(self.names), dtype=object)
        table[:] = self.names
        return table[self.codes if index is None else self.codes[index]]


@dataclass(frozen=True)
class Trace:
    """The events of one trace as columns (one row per event; metadata events dropped).

    ``thread`` codes (pid, tid) pairs; ``gpu_thread[code]`` says whether that pair is a device
    stream. Times are microseconds as in the file. Missing ``correlation``/``external_id``
    are -1; ``flow_id`` codes the ``id`` of ``ac2g`` flow events (-1 elsewhere).
    """

    path: Path
    ph: Coded  # "X", "s", "f", "i"
    cat: Coded
    name: Coded
    thread: np.ndarray  # int64 code of (pid, tid)
    ts_us: np.ndarray  # float64
    dur_us: np.ndarray  # float64
    correlation: np.ndarray  # int64
    external_id: np.ndarray  # int64
    flow_id: np.ndarray  # int64
    gpu_thread: np.ndarray  # bool per thread code
    gpu_name: str

    def __len__(self) -> int:
        return len(self.ts_us)


def read_bytes(path: Path) -> bytes:
    """The uncompressed JSON text of a ``.json`` or ``.json.gz`` file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnalyzeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise AnalyzeError(f"{path}: truncated or corrupt gzip ({exc})") from None
    return data


class _Interner(dict):
    """Gives each new key the next code; looked up through C-level ``dict.__getitem__``."""

    def __missing__(self, key: Any) -> int:
        code = len(self)
        self[key] = code
        return code


def _coded(events: list[_Event], getter: Callable[[_Event], Any]) -> Coded:
    """A field (or tuple of fields) of every event as codes: one C-level dict lookup per event."""
    table = _Interner()
    codes = np.fromiter(map(table.__getitem__, map(getter, events)), np.int64, len(events))
    return Coded(codes, tuple(table))


def _split(pairs: Coded, position: int) -> Coded:
    """The codes of one member of coded tuples (the tuples are few, the events many)."""
    table = _Interner()
    recode = np.fromiter((table[p[position]] for p in pairs.names), np.int64, len(pairs.names))
    return Coded(recode[pairs.codes], tuple(table))


def _floats(events: list[_Event], field: str) -> np.ndarray:
    return np.fromiter(map(attrgetter(field), events), dtype=np.float64, count=len(events))


def _ints(events: list[_Event], field: str) -> np.ndarray:
    return np.fromiter(map(attrgetter(field), events), dtype=np.int64, count=len(events))


def _decode(path: Path, data: bytes) -> tuple[list[_Event], str]:
    try:
        doc = _DECODER.decode(data)
    except msgspec.ValidationError:
        return _decode_lenient(path, data)
    except msgspec.DecodeError as exc:
        what = "empty file" if not data.strip() else f"not valid JSON, truncated? ({exc})"
        raise AnalyzeError(f"{path}: {what}") from None
    if isinstance(doc, list):
        return doc, ""
    gpu_name = doc.deviceProperties[0].name if doc.deviceProperties else ""
    return doc.traceEvents, gpu_name


def _decode_lenient(path: Path, data: bytes) -> tuple[list[_Event], str]:
    """Slow path for traces whose fields have unexpected types: coerce what can be used."""
    try:
        doc = _LENIENT.decode(data)
    except msgspec.DecodeError as exc:
        raise AnalyzeError(f"{path}: not valid JSON, truncated? ({exc})") from None
    if isinstance(doc, dict):
        raw, props = doc.get("traceEvents"), doc.get("deviceProperties")
    else:
        raw, props = doc, None
    if not isinstance(raw, list):
        raise AnalyzeError(f"{path}: not a Kineto trace (no traceEvents list)")
    gpu_name = ""
    if isinstance(props, list) and props and isinstance(props[0], dict):
        gpu_name = str(props[0].get("name", ""))
    events = [_coerce(e) for e in raw if isinstance(e, dict)]
    if raw and not events:
        raise AnalyzeError(f"{path}: not a Kineto trace (no traceEvents list of event objects)")
    return events, gpu_name


def _num(value: Any, kind: type, default: Any) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return default


def _coerce(e: dict[str, Any]) -> _Event:
    args = e.get("args")
    args = args if isinstance(args, dict) else {}
    pid, tid, fid = e.get("pid", 0), e.get("tid", 0), e.get("id")
    return _Event(
        ph=str(e.get("ph", "")),
        cat=str(e.get("cat", "")),
        name=str(e.get("name", "")),
        pid=pid if isinstance(pid, (int, str)) else str(pid),
        tid=tid if isinstance(tid, (int, str)) else str(tid),
        ts=_num(e.get("ts"), float, 0.0),
        dur=_num(e.get("dur"), float, 0.0),
        id=fid if isinstance(fid, (int, str)) else -1,
        args=_Args(
            correlation=_num(args.get("correlation"), int, -1),
            external_id=_num(args.get("External id"), int, -1),
        ),
    )


def _flow_ids(events: list[_Event]) -> np.ndarray:
    """Flow ids as integers (Kineto writes ints; other ids are coded)."""
    try:
        return _ints(events, "id")
    except (TypeError, ValueError):
        return _coded(events, attrgetter("id")).codes


def read_trace(path: Path) -> Trace:
    """Parse ``path`` (Kineto Chrome JSON, optionally gzipped) into a :class:`Trace`.

    Raises AnalyzeError naming the file when it is empty, truncated or not a trace.
    """
    path = Path(path)
    events, gpu_name = _decode(path, read_bytes(path))
    ph_cat = _coded(events, attrgetter("ph", "cat"))
    ph, cat = _split(ph_cat, 0), _split(ph_cat, 1)
    keep = ~ph.isin("M")
    if not keep.any():
        raise AnalyzeError(f"{path}: trace has no events")
    threads = _coded(events, attrgetter("pid", "tid"))
    thread = threads.codes
    # A (pid, tid) is a device stream when its pid carries device events.
    gpu_pids = {threads.names[t][0] for t in np.unique(thread[cat.isin(*DEVICE_CATS, *DEVICE_ONLY_CATS)])}
    gpu_thread = np.array([pid in gpu_pids for pid, _ in threads.names], dtype=bool)
    is_flow = cat.isin(FLOW_CAT) & ph.isin("s", "f")
    flow_id = np.where(is_flow, _flow_ids(events), -1) if is_flow.any() else np.full(len(events), -1)
    return Trace(
        path=path,
        ph=ph[keep],
        cat=cat[keep],
        name=_coded(events, attrgetter("name"))[keep],
        thread=thread[keep],
        ts_us=_floats(events, "ts")[keep],
        dur_us=_floats(events, "dur")[keep],
        correlation=_ints(events, "args.correlation")[keep],
        external_id=_ints(events, "args.external_id")[keep],
        flow_id=flow_id[keep],
        gpu_thread=gpu_thread,
        gpu_name=gpu_name,
    )
