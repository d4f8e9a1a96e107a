"""Read one Kineto (Chrome JSON) trace into NumPy columns, as a stream.

The file is inflated in pieces of a few MB (``zlib`` streaming, which is also three times faster
than inflating it whole) and never held whole: each piece's complete events are cut off at an
event boundary, decoded by msgspec into Structs that skip every field attribution does not need,
turned into columns at once and dropped. So memory holds the columns, one piece and its decoded
events, whatever the trace's size. Strings are interned as they are read: the tuple (ph, cat,
name, pid, tid) of each event is looked up in one dictionary (one C-level lookup per event), and
the few distinct tuples are split into the coded columns at the end.

Cutting: the bytes after ``"traceEvents": [`` are cut at the last ``}``-``,``-``{`` of a piece,
and the part before it is decoded as a JSON array. A cut that falls inside a string or a nested
object cannot decode (its brackets or quotes do not close), so it is tried at earlier candidates
instead; nothing depends on the file's layout. What follows the array (more keys, the closing
brace) is decoded with the last events.

Limits and bad input: a trace that inflates past ``max_bytes`` is refused as soon as it does (a
gzip bomb costs one piece of memory); events whose numbers are unusable (``ts`` missing or not a
number, a complete event's ``dur`` not a number or negative) are dropped and counted in
:attr:`Trace.warnings`; a file with no complete (``"ph": "X"``) event is no trace.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from analyze.contract import DEFAULT_MAX_TRACE_MB, MB
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

PIECE_BYTES = 4 << 20  # inflated bytes decoded at a time
_COMPRESSED_READ = 1 << 20
_HEADER_LIMIT = 64 << 20  # "traceEvents": [ must start within this many bytes
_PENDING_LIMIT = 64 << 20  # undecodable bytes held before the JSON is called invalid
_CUT_TRIES = 64  # candidate cuts tried, latest first, before waiting for more bytes
_CUT_WINDOW = 1 << 16  # candidates are looked for in this many bytes at a piece's end first
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_RE = re.compile(rb'"traceEvents"\s*:\s*\[')
_CUT_RE = re.compile(rb"\}\s*,\s*\{")


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
    ts: float = math.nan  # missing: the event is dropped (metadata events need none)
    dur: float = 0.0
    id: int | str = -1
    args: _Args = _NO_ARGS


class _DeviceProperties(msgspec.Struct, gc=False):
    name: str = ""


class _TraceFile(msgspec.Struct, gc=False):
    traceEvents: list[_Event]
    deviceProperties: list[_DeviceProperties] = []


class _Header(msgspec.Struct, gc=False):
    """The keys before ``traceEvents`` (decoded with an empty event list appended)."""

    deviceProperties: list[_DeviceProperties] = []


_DECODER = msgspec.json.Decoder(_TraceFile | list[_Event])
_EVENTS = msgspec.json.Decoder(list[_Event])
_TAIL = msgspec.json.Decoder(_TraceFile)
_HEADER = msgspec.json.Decoder(_Header)
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
    are -1; ``flow_id`` codes the ``id`` of ``ac2g`` flow events (-1 elsewhere). ``warnings``
    says what was dropped while reading (events with unusable numbers).
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
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ts_us)


# ------------------------------------------------------------------------------------ inflating
def _too_large(path: Path, max_bytes: int) -> AnalyzeError:
    return AnalyzeError(
        f"{path}: larger than {max_bytes / MB:g} MB uncompressed (--max-trace-mb); not read. "
        "Raise --max-trace-mb if it is a real trace"
    )


def inflate(path: Path, max_bytes: int | None = None) -> Iterator[bytes]:
    """The uncompressed bytes of a ``.json`` or ``.json.gz`` file, in pieces of about PIECE_BYTES.

    Gzip (recognised by its magic bytes, concatenated members included) is inflated as a
    stream. AnalyzeError, naming the file, when it cannot be read, is corrupt or truncated, or
    passes ``max_bytes`` uncompressed (checked as it inflates, so it is never inflated whole).
    """
    limit = max_bytes if max_bytes is not None else DEFAULT_MAX_TRACE_MB * MB
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below; the generator may be abandoned)
    except OSError as exc:
        raise AnalyzeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        head = fh.read(2)
        fh.seek(0)
        if head != _GZIP_MAGIC:
            if os.fstat(fh.fileno()).st_size > limit:
                raise _too_large(path, limit)
            while piece := fh.read(PIECE_BYTES):
                yield piece
            return
        yield from _gunzip(path, fh, limit)
    except OSError as exc:
        raise AnalyzeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        fh.close()


def _gunzip(path: Path, fh: Any, limit: int) -> Iterator[bytes]:
    total = 0
    inflater = zlib.decompressobj(31)
    data = b""
    try:
        while True:
            if not data:
                data = fh.read(_COMPRESSED_READ)
                if not data:
                    break
            out = inflater.decompress(data, PIECE_BYTES)
            total += len(out)
            if total > limit:
                raise _too_large(path, limit)
            if out:
                yield out
            if inflater.eof:  # end of a gzip member: another may follow
                rest = inflater.unused_data or fh.read(_COMPRESSED_READ)
                if not rest.strip(b"\0"):  # the end, or zero padding up to it
                    rest = rest + fh.read()
                    if not rest.strip(b"\0"):
                        return
                if not rest.startswith(_GZIP_MAGIC):
                    raise AnalyzeError(f"{path}: truncated or corrupt gzip (unexpected bytes after the end)")
                inflater = zlib.decompressobj(31)
                data = rest
            else:
                data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise AnalyzeError(f"{path}: truncated or corrupt gzip ({exc})") from None
    if not inflater.eof:
        raise AnalyzeError(f"{path}: truncated or corrupt gzip (compressed data ends early)")


# -------------------------------------------------------------------------------------- decoding
def _not_json(path: Path, data: bytes, exc: Exception) -> AnalyzeError:
    what = "empty file" if not data.strip() else f"not valid JSON, truncated? ({exc})"
    return AnalyzeError(f"{path}: {what}")


def _decode_whole(path: Path, data: bytes) -> tuple[list[_Event], str]:
    """A document that could not be streamed (it is small: see _HEADER_LIMIT), decoded whole."""
    try:
        doc = _DECODER.decode(data)
    except msgspec.ValidationError:
        return _decode_lenient(path, data)
    except msgspec.DecodeError as exc:
        raise _not_json(path, data, exc) from None
    if isinstance(doc, list):
        return doc, ""
    return doc.traceEvents, _gpu_name(doc.deviceProperties)


def _gpu_name(props: list[_DeviceProperties]) -> str:
    return props[0].name if props else ""


def _decode_lenient(path: Path, data: bytes) -> tuple[list[_Event], str]:
    """Slow path for documents whose fields have unexpected types: coerce what can be used."""
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
    events = _coerce_all(raw)
    if raw and not events:
        raise AnalyzeError(f"{path}: not a Kineto trace (no traceEvents list of event objects)")
    return events, _lenient_gpu_name(props)


def _lenient_gpu_name(props: Any) -> str:
    if isinstance(props, list) and props and isinstance(props[0], dict):
        return str(props[0].get("name", ""))
    return ""


def _coerce_all(raw: list[Any]) -> list[_Event]:
    return [_coerce(e) for e in raw if isinstance(e, dict)]


def _num(value: Any, kind: type, default: Any) -> Any:
    if isinstance(value, bool):
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number


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
        ts=_num(e.get("ts"), float, math.nan),
        dur=_num(e["dur"], float, math.nan) if "dur" in e else 0.0,
        id=fid if isinstance(fid, (int, str)) else -1,
        args=_Args(
            correlation=_num(args.get("correlation"), int, -1),
            external_id=_num(args.get("External id"), int, -1),
        ),
    )


def _decode_events(text: bytes) -> list[_Event]:
    """A JSON array of events (typed, or coerced where types are unexpected)."""
    try:
        return _EVENTS.decode(text)
    except msgspec.ValidationError:
        doc = _LENIENT.decode(text)
        return _coerce_all(doc)


class _Stream:
    """Cuts the inflated pieces of one trace into decoded batches of events.

    ``batches()`` yields lists of events; ``gpu_name`` is known once it is exhausted.
    """

    def __init__(self, path: Path, pieces: Iterator[bytes]) -> None:
        self.path = path
        self.pieces = pieces
        self.gpu_name = ""
        self._pending = b""

    def batches(self) -> Iterator[list[_Event]]:
        buf = b""
        for piece in self.pieces:
            buf += piece
            head = buf.lstrip()[:1]
            if head == b"[":  # Chrome's JSON array format: the events themselves
                self._pending, buf = buf[buf.index(b"[") + 1 :], b""
                yield from self._events(array_form=True)
                return
            if head == b"{":
                match = _HEADER_RE.search(buf)
                if match is not None:
                    if self._header(buf[: match.end()]):
                        self._pending, buf = buf[match.end() :], b""
                        yield from self._events(array_form=False)
                        return
                    buf += b"".join(self.pieces)  # an odd layout: decode the document whole
                    break
            elif head:
                break  # not JSON: decoding what is here says so
            if len(buf) > _HEADER_LIMIT:
                raise AnalyzeError(
                    f"{self.path}: not a Kineto trace (no traceEvents array in its first "
                    f"{_HEADER_LIMIT / MB:.0f} MB)"
                )
        events, self.gpu_name = _decode_whole(self.path, buf)  # all of a small document
        yield events

    def _header(self, header: bytes) -> bool:
        """Read the keys before the event array; False when they are not plain JSON keys."""
        text = header + b"]}"
        try:
            self.gpu_name = _gpu_name(_HEADER.decode(text).deviceProperties)
        except msgspec.ValidationError:
            self.gpu_name = _lenient_gpu_name(_LENIENT.decode(text).get("deviceProperties"))
        except msgspec.DecodeError:
            return False  # "traceEvents" matched inside a nested object: not the top-level key
        return True

    def _events(self, array_form: bool) -> Iterator[list[_Event]]:
        # buf[0] is a "[" of our own: buf[:k] decodes in place once a "]" is put at buf[k - 1].
        buf = bytearray(b"[")
        buf += self._pending
        self._pending = b""
        for piece in self.pieces:
            buf += piece
            del piece
            if len(buf) <= PIECE_BYTES:
                continue
            events = self._cut(buf)
            if events is None:
                if len(buf) > _PENDING_LIMIT:
                    self._invalid(buf)
                continue
            yield events
            del events
        yield self._tail(buf, array_form)

    def _cut(self, buf: bytearray) -> list[_Event] | None:
        """Decode the events before the last boundary that decodes and remove them from ``buf``."""
        window = max(0, len(buf) - _CUT_WINDOW)
        candidates = [m.start() for m in _CUT_RE.finditer(buf, window)]
        if not candidates:
            candidates = [m.start() for m in _CUT_RE.finditer(buf)]
        for end in reversed(candidates[-_CUT_TRIES:]):
            after = buf[end + 1]
            buf[end + 1] = 0x5D  # "]": buf[: end + 2] is a JSON array, decoded without a copy
            try:
                with memoryview(buf)[: end + 2] as text:
                    events = _decode_events(text)
            except msgspec.DecodeError:
                continue  # inside a string or a nested object: try an earlier one
            finally:
                buf[end + 1] = after
            del buf[1 : buf.index(b"{", end + 1)]
            return events
        return None

    def _invalid(self, buf: bytearray) -> None:
        try:
            _LENIENT.decode(buf)
        except msgspec.DecodeError as exc:
            raise AnalyzeError(f"{self.path}: not valid JSON ({exc})") from None
        raise AnalyzeError(f"{self.path}: not valid JSON (an event larger than {_PENDING_LIMIT / MB:.0f} MB)")

    def _tail(self, buf: bytearray, array_form: bool) -> list[_Event]:
        """The last events, and whatever keys follow the array (the closing brace included)."""
        text = buf if array_form else b'{"traceEvents":' + buf
        try:
            if array_form:
                return _decode_events(text)
            try:
                doc = _TAIL.decode(text)
                self.gpu_name = _gpu_name(doc.deviceProperties) or self.gpu_name
                return doc.traceEvents
            except msgspec.ValidationError:
                lenient = _LENIENT.decode(text)
        except msgspec.DecodeError as exc:
            raise AnalyzeError(f"{self.path}: not valid JSON, truncated? ({exc})") from None
        self.gpu_name = _lenient_gpu_name(lenient.get("deviceProperties")) or self.gpu_name
        return _coerce_all(lenient["traceEvents"])


# --------------------------------------------------------------------------------------- columns
class _Interner(dict):
    """Gives each new key the next code; looked up through C-level ``dict.__getitem__``."""

    def __missing__(self, key: Any) -> int:
        code = len(self)
        self[key] = code
        return code


_KEY = attrgetter("ph", "cat", "name", "pid", "tid")
_TS, _DUR, _ARGS = attrgetter("ts"), attrgetter("dur"), attrgetter("args")
_CORRELATION, _EXTERNAL = attrgetter("correlation"), attrgetter("external_id")
_PH, _CAT, _NAME, _PID, _TID = range(5)


class _Columns:
    """Columns of the events of one trace, batch by batch."""

    def __init__(self) -> None:
        self.keys = _Interner()  # (ph, cat, name, pid, tid) -> code
        self.key: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []
        self.dur: list[np.ndarray] = []
        self.correlation: list[np.ndarray] = []
        self.external_id: list[np.ndarray] = []
        self.flow_at: list[np.ndarray] = []
        self.flow_ids: list[Any] = []
        self.n = 0

    def add(self, events: list[_Event]) -> None:
        n = len(events)
        if not n:
            return
        key = np.fromiter(map(self.keys.__getitem__, map(_KEY, events)), np.int64, n)
        self.key.append(key)
        self.ts.append(np.fromiter(map(_TS, events), np.float64, n))
        self.dur.append(np.fromiter(map(_DUR, events), np.float64, n))
        args = list(map(_ARGS, events))
        self.correlation.append(np.fromiter(map(_CORRELATION, args), np.int64, n))
        self.external_id.append(np.fromiter(map(_EXTERNAL, args), np.int64, n))
        is_flow = np.fromiter(
            (k[_CAT] == FLOW_CAT and k[_PH] in ("s", "f") for k in self.keys), bool, len(self.keys)
        )
        flows = np.flatnonzero(is_flow[key])
        if len(flows):
            self.flow_at.append(flows + self.n)
            self.flow_ids.extend(events[i].id for i in flows.tolist())
        self.n += n

    def _split(self, keys: tuple[tuple[Any, ...], ...], codes: np.ndarray, *members: int) -> Coded:
        """The codes of one member (or tuple of members) of the keys, per event."""
        table = _Interner()
        if len(members) == 1:
            recode = np.fromiter((table[k[members[0]]] for k in keys), np.int64, len(keys))
        else:
            recode = np.fromiter((table[tuple(k[m] for m in members)] for k in keys), np.int64, len(keys))
        return Coded(recode[codes], tuple(table))

    def trace(self, path: Path, gpu_name: str) -> Trace:
        """The finished :class:`Trace`: metadata and events with unusable numbers dropped."""
        if not self.n:
            raise AnalyzeError(f'{path}: not a trace: no events (no complete "ph": "X" event)')
        codes = np.concatenate(self.key)
        keys = tuple(self.keys)
        ph, cat = self._split(keys, codes, _PH), self._split(keys, codes, _CAT)
        ts, dur = np.concatenate(self.ts), np.concatenate(self.dur)
        meta, complete, no_ph = ph.isin("M"), ph.isin("X"), ph.isin("")
        bad = ~meta & ~no_ph & (~np.isfinite(ts) | (complete & ~(np.isfinite(dur) & (dur >= 0.0))))
        n_bad = int(bad.sum())
        keep = ~meta & ~no_ph & ~bad  # an object without "ph" is no trace event at all
        if not (keep & complete).any():
            why = f" ({n_bad} had unusable ts/dur numbers)" if n_bad else ""
            raise AnalyzeError(f'{path}: not a trace: no complete ("ph": "X") event{why}')
        dur = np.where(np.isfinite(dur), dur, 0.0)
        threads = self._split(keys, codes, _PID, _TID)
        thread = threads.codes
        # A (pid, tid) is a device stream when its pid carries device events.
        on_device = np.unique(thread[cat.isin(*DEVICE_CATS, *DEVICE_ONLY_CATS)])
        gpu_pids = {threads.names[t][0] for t in on_device.tolist()}
        gpu_thread = np.array([pid in gpu_pids for pid, _ in threads.names], dtype=bool)
        flow_id = np.full(self.n, -1, dtype=np.int64)
        if self.flow_ids:
            flow_id[np.concatenate(self.flow_at)] = _flow_codes(self.flow_ids)
        warnings = ()
        if n_bad:
            warnings = (
                f"{path}: {n_bad} event(s) dropped: ts missing or not a number, or a complete event's "
                "dur not a number or negative",
            )
        return Trace(
            path=path,
            ph=ph[keep],
            cat=cat[keep],
            name=self._split(keys, codes, _NAME)[keep],
            thread=thread[keep],
            ts_us=ts[keep],
            dur_us=dur[keep],
            correlation=np.concatenate(self.correlation)[keep],
            external_id=np.concatenate(self.external_id)[keep],
            flow_id=flow_id[keep],
            gpu_thread=gpu_thread,
            gpu_name=gpu_name,
            warnings=warnings,
        )


def _flow_codes(ids: list[Any]) -> np.ndarray:
    """Flow ids as integers (Kineto writes ints; ids of other types are coded, -1 stays -1)."""
    try:
        return np.asarray(ids, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        table = _Interner()
        return np.fromiter((table[i] for i in ids), np.int64, len(ids))


def read_trace(path: Path, max_bytes: int | None = None) -> Trace:
    """Parse ``path`` (Kineto Chrome JSON, optionally gzipped) into a :class:`Trace`.

    ``max_bytes``: refuse a trace larger than this uncompressed (default DEFAULT_MAX_TRACE_MB).
    Raises AnalyzeError naming the file when it is empty, truncated, too large or not a trace.
    """
    path = Path(path)
    stream = _Stream(path, inflate(path, max_bytes))
    columns = _Columns()
    for events in stream.batches():
        columns.add(events)
        del events  # before the next batch is decoded
    return columns.trace(path, stream.gpu_name)
