"""Kineto (PyTorch profiler) Chrome-trace files, built event by event and written as Kineto does.

The one trace builder and writer of the repository: the tests' hand-made scenarios
(``tests/kineto_builders.py``) and the benchmarks' simulated 7B run (``gen_traces.py``) both
build a :class:`KinetoTrace` and write it with :meth:`KinetoTrace.write`. Events are kept as
tuples and written in Kineto's own multi-line layout with one f-string per event kind (no
``json.dumps`` per event), so a 50 MB trace takes about a second; the header keeps
``"rank": N`` with the space that HolisticTraceAnalysis's rank regex needs.

Times: the record methods (``host_op``, ``runtime``, ``kernel``, ``memcpy``, ``sync``,
``gpu_label``, ``flow``) take integer nanoseconds on the trace's clock (``ts_ns``) and are
written as microseconds with three decimals, as Kineto writes them, so nothing is lost to float
rounding. The scenario methods (``label``, ``op``, ``launch``) take microseconds relative to the
trace's base (``start_us``), as hand-computed test answers are written.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from analyze.files import write_atomic

DEVICE_PID = 0  # Kineto writes device events under the device index as pid
DEFAULT_STREAM = 7  # the stream PyTorch's default CUDA stream usually gets
HOST_PID = 23817
BASE_NS = 1_700_000_000_000_000  # an epoch-like clock value, as real traces have
BASE_TIME_NS = 1_790_857_026_000_000_000
SYNTHETIC_GPU = {"id": 0, "name": "Synthetic GPU", "totalGlobalMem": 1}
A100 = {
    "id": 0, "name": "NVIDIA A100-SXM4-80GB", "totalGlobalMem": 85_031_714_816, "computeMajor": 8,
    "computeMinor": 0, "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048,
    "regsPerBlock": 65536, "warpSize": 32, "sharedMemPerBlock": 49152, "numSms": 108,
    "regsPerMultiprocessor": 65536, "sharedMemPerBlockOptin": 166912,
    "sharedMemPerMultiprocessor": 167936,
}  # fmt: skip
# CUPTI callback ids of the runtime calls PyTorch makes.
CBID = {"cudaLaunchKernel": 211, "cudaMemcpyAsync": 41, "cudaMemsetAsync": 51, "cudaStreamSynchronize": 131}
Link = Literal["correlation", "flow", "external", "none"]
_CHUNK = 20_000  # events formatted per piece of text written
_TS, _DUR = 3, 4  # where start and duration sit in host and activity records


def _us(ns: int) -> str:
    """Nanoseconds as Kineto writes microseconds: three decimals, exact."""
    return f"{ns // 1000}.{ns % 1000:03d}"


def _ids(ext: int | None, corr: int | None) -> tuple[str, str]:
    """The optional "External id" line and ", correlation" of a device event's args."""
    return (
        "" if ext is None else f'"External id": {ext},\n      ',
        "" if corr is None else f', "correlation": {corr}',
    )


# -- one formatter per event kind (Kineto's multi-line layout) -----------------------------------
# Host records: [cat, name, where, ts, dur, external id]; cat and name already JSON-quoted,
# where = '"pid": P, "tid": T'. Activity records: (kind, name, where, ts, dur, ...).
def _host(e: list[Any], idx: int) -> str:
    cat, name, where, ts, dur, ext = e
    return (
        f'  {{\n    "ph": "X", "cat": {cat}, "name": {name}, {where},\n'
        f'    "ts": {_us(ts)}, "dur": {_us(dur)},\n'
        f'    "args": {{\n      "External id": {ext},"Record function id": 0, "Ev Idx": {idx}\n    }}\n  }}'
    )


def _runtime(e: tuple[Any, ...]) -> str:
    _, name, where, ts, dur, ext, cbid, corr = e
    return (
        f'  {{\n    "ph": "X", "cat": "cuda_runtime", "name": {name}, {where},\n'
        f'    "ts": {_us(ts)}, "dur": {_us(dur)},\n'
        f'    "args": {{\n      "External id": {ext}, "cbid": {cbid}, "correlation": {corr}\n    }}\n  }}'
    )


def _kernel(e: tuple[Any, ...]) -> str:
    _, name, where, ts, dur, stream, ext, corr, launch = e
    ext_s, corr_s = _ids(ext, corr)
    return (
        f'  {{\n    "ph": "X", "cat": "kernel", "name": {name}, {where},\n'
        f'    "ts": {_us(ts)}, "dur": {_us(dur)},\n'
        f'    "args": {{\n      {ext_s}"queued": 0, "device": 0, "context": 1,\n'
        f'      "stream": {stream}{corr_s},\n{launch}\n    }}\n  }}'
    )


def _memcpy(e: tuple[Any, ...]) -> str:
    _, name, where, ts, dur, stream, ext, corr, cat, nbytes = e
    ext_s, corr_s = _ids(ext, corr)
    return (
        f'  {{\n    "ph": "X", "cat": {cat}, "name": {name}, {where},\n'
        f'    "ts": {_us(ts)}, "dur": {_us(dur)},\n'
        f'    "args": {{\n      {ext_s}"device": 0, "context": 1,\n'
        f'      "stream": {stream}{corr_s},\n      "bytes": {nbytes}, '
        f'"memory bandwidth (GB/s)": {nbytes / max(dur, 1):.6f}\n    }}\n  }}'
    )


def _sync(e: tuple[Any, ...]) -> str:
    _, name, where, ts, dur, stream, ext, corr = e
    return (
        f'  {{\n    "ph": "X", "cat": "cuda_sync", "name": {name}, {where},\n'
        f'    "ts": {_us(ts)}, "dur": {_us(dur)},\n'
        f'    "args": {{\n      "External id": {ext}, "cuda_sync_kind": "Stream Sync", '
        f'"stream": {stream}, "correlation": {corr}, "device": 0, "context": 1\n    }}\n  }}'
    )


def _flow(e: tuple[Any, ...]) -> str:
    """Both ends of one ac2g flow: "s" at the launch, "f" at the device event's start."""
    corr, host_where, launch_ts, device_where, start = e
    return (
        f'  {{\n    "ph": "s", "id": {corr}, {host_where}, "ts": {_us(launch_ts)},\n'
        '    "cat": "ac2g", "name": "ac2g"\n  },\n'
        f'  {{\n    "ph": "f", "id": {corr}, {device_where}, "ts": {_us(start)},\n'
        '    "cat": "ac2g", "name": "ac2g", "bp": "e"\n  }'
    )


def _gpu_label(e: tuple[Any, ...]) -> str:
    name, where, ts, dur, ext = e
    return (
        f'  {{\n    "ph": "X", "cat": "gpu_user_annotation", "name": {name}, {where},\n'
        f'    "ts": {_us(ts)}, "dur": {_us(dur)},\n'
        f'    "args": {{\n      "External id": {ext}\n    }}\n  }}'
    )


def _meta(name: str, where: str, ts: str, args: str) -> str:
    return (
        f'  {{\n    "name": "{name}", "ph": "M", "ts": {ts}, {where},\n'
        f"    \"args\": {{\n      {args}\n    }}\n  }}"
    )


_RUNTIME, _KERNEL, _MEMCPY, _SYNC = range(4)
_ACTIVITY = (_runtime, _kernel, _memcpy, _sync)  # indexed by an activity record's kind


def _fixed_bytes() -> tuple[int, tuple[int, ...], int, int]:
    """Bytes of one formatted event besides its name (and host cat), with typical numbers.

    Used by :meth:`KinetoTrace.approx_size_bytes`, so a simulation can stop at a target size
    without formatting anything; ",\\n" between events included.
    """
    ts, dur, n, launch = 4_532_721_000_250_000, 23_456, 12345, "x" * 260
    where = f'"pid": {HOST_PID}, "tid": {HOST_PID}'
    host = len(_host(["", "", where, ts, dur, n], n))
    acts = (
        _runtime((_RUNTIME, "", where, ts, dur, n, 211, n)),
        _kernel((_KERNEL, "", '"pid": 0, "tid": 7', ts, dur, 7, n, n, launch)),
        _memcpy((_MEMCPY, "", '"pid": 0, "tid": 7', ts, dur, 7, n, n, '"gpu_memcpy"', 4960)),
        _sync((_SYNC, "", '"pid": 0, "tid": 7', ts, dur, 7, n, n)),
    )
    flow = len(_flow((n, where, ts, '"pid": 0, "tid": 7', ts)))
    label = len(_gpu_label(("", '"pid": 0, "tid": 7', ts, dur, n)))
    return host + 2, tuple(len(a) + 2 for a in acts), flow + 2, label + 2


_HOST_BYTES, _ACTIVITY_BYTES, _FLOW_BYTES, _LABEL_BYTES = _fixed_bytes()


@dataclass(frozen=True)
class Written:
    """What :meth:`KinetoTrace.dump` wrote."""

    path: Path
    size_bytes: int  # uncompressed JSON
    n_events: int  # traceEvents entries, metadata included


class KinetoTrace:
    """One Kineto trace under construction: host threads, device streams, the links between them.

    ``device``: the GPU's deviceProperties entry (None: a CPU-only trace). ``rank`` goes into
    distributedInfo (HTA keys traces by it); ``trace_name`` into the footer's traceName.
    """

    def __init__(
        self,
        *,
        base_ns: int = BASE_NS,
        device: dict[str, Any] | None = SYNTHETIC_GPU,
        rank: int = 0,
        host_pid: int = HOST_PID,
        main_tid: int | str = HOST_PID,
        trace_name: str = "trace.pt.trace.json",
        base_time_ns: int = BASE_TIME_NS,
    ) -> None:
        self.base_ns = base_ns
        self.device = device
        self.rank = rank
        self.host_pid = host_pid
        self.main_tid = main_tid
        self.trace_name = trace_name
        self.base_time_ns = base_time_ns
        self._stop_ns: int | None = None  # when the profiler stopped (see stop); None: not said
        self._host: list[list[Any]] = []  # cpu_op / user_annotation, sorted by start when written
        self._activity: list[tuple[Any, ...]] = []  # runtime calls and device events, in launch order
        self._flows: list[tuple[Any, ...]] = []
        self._gpu_labels: list[tuple[Any, ...]] = []
        self._quoted: dict[str, str] = {}  # name -> its JSON text
        self._threads: dict[int | str, str] = {}  # host tid -> '"pid": P, "tid": T'
        self._streams: dict[int, str] = {}  # stream -> '"pid": 0, "tid": S'
        self._launch: dict[tuple[Any, ...], str] = {}  # kernel launch config -> its args text
        self._sized = [0, 0, 0, 0, 0]  # records counted by approx_size_bytes: 4 lists, then bytes
        self._next_id = 1000
        self._host_where(main_tid)

    # -- interning -----------------------------------------------------------------------------
    def _q(self, name: str) -> str:
        q = self._quoted.get(name)
        if q is None:
            q = self._quoted[name] = json.dumps(name)
        return q

    def _host_where(self, tid: int | str | None) -> str:
        tid = self.main_tid if tid is None else tid
        where = self._threads.get(tid)
        if where is None:
            where = self._threads[tid] = f'"pid": {self.host_pid}, "tid": {json.dumps(tid)}'
        return where

    def _stream_where(self, stream: int) -> str:
        where = self._streams.get(stream)
        if where is None:
            where = self._streams[stream] = f'"pid": {DEVICE_PID}, "tid": {stream}'
        return where

    def _launch_args(
        self, grid: tuple[int, int, int], block: tuple[int, int, int], regs: int, smem: int
    ) -> str:
        key = (grid, block, regs, smem)
        text = self._launch.get(key)
        if text is None:
            sms = (self.device or {}).get("numSms", 108)
            blocks, warps = grid[0] * grid[1] * grid[2], block[0] * block[1] // 32
            text = self._launch[key] = (
                f'      "registers per thread": {regs},\n      "shared memory": {smem},\n'
                f'      "blocks per SM": {blocks / sms:.6f},\n'
                f'      "warps per SM": {blocks * warps / sms:.6f},\n'
                f'      "grid": [{grid[0]}, {grid[1]}, {grid[2]}],\n'
                f'      "block": [{block[0]}, {block[1]}, {block[2]}],\n'
                f'      "est. achieved occupancy %": {min(100, 4 * warps)}'
            )
        return text

    # -- record methods: Kineto's events, integer ns on the trace clock ------------------------
    def host_op(
        self,
        name: str,
        ts_ns: int,
        dur_ns: int = 0,
        *,
        cat: str = "cpu_op",
        tid: int | str | None = None,
        external_id: int = 0,
    ) -> int:
        """A host range (cpu_op, user_annotation...) on thread ``tid`` (None: the main thread).

        Returns a handle for :meth:`end_op`, for ranges whose end is known only later.
        """
        self._host.append([self._q(cat), self._q(name), self._host_where(tid), ts_ns, dur_ns, external_id])
        return len(self._host) - 1

    def end_op(self, handle: int, end_ns: int) -> None:
        """Close the host range ``handle`` (from :meth:`host_op`) at ``end_ns``."""
        rec = self._host[handle]
        rec[_DUR] = end_ns - rec[_TS]

    def runtime(
        self,
        name: str,
        ts_ns: int,
        dur_ns: int,
        *,
        correlation: int,
        external_id: int = 0,
        tid: int | str | None = None,
    ) -> None:
        """A CUDA runtime call (cudaLaunchKernel, cudaMemcpyAsync...) on a host thread."""
        where, cbid = self._host_where(tid), CBID.get(name, 0)
        rec = (_RUNTIME, self._q(name), where, ts_ns, dur_ns, external_id, cbid, correlation)
        self._activity.append(rec)

    def kernel(
        self,
        name: str,
        stream: int,
        ts_ns: int,
        dur_ns: int,
        *,
        correlation: int | None = None,
        external_id: int | None = None,
        grid: tuple[int, int, int] = (1, 1, 1),
        block: tuple[int, int, int] = (128, 1, 1),
        registers: int = 32,
        shared_memory: int = 0,
    ) -> None:
        """A kernel on ``stream``; a None id is left out of its args."""
        launch = self._launch_args(grid, block, registers, shared_memory)
        where = self._stream_where(stream)
        rec = (_KERNEL, self._q(name), where, ts_ns, dur_ns, stream, external_id, correlation, launch)
        self._activity.append(rec)

    def memcpy(
        self,
        name: str,
        stream: int,
        ts_ns: int,
        dur_ns: int,
        *,
        nbytes: int = 0,
        cat: str = "gpu_memcpy",
        correlation: int | None = None,
        external_id: int | None = None,
    ) -> None:
        """A copy (cat gpu_memcpy) or fill (gpu_memset) on ``stream``; a None id is left out."""
        where, qcat = self._stream_where(stream), self._q(cat)
        rec = (_MEMCPY, self._q(name), where, ts_ns, dur_ns, stream, external_id, correlation, qcat, nbytes)
        self._activity.append(rec)

    def sync(self, stream: int, ts_ns: int, dur_ns: int, *, correlation: int, external_id: int = 0) -> None:
        """The device side of a cudaStreamSynchronize (cat cuda_sync): drawn, never counted."""
        where = self._stream_where(stream)
        rec = (_SYNC, '"Stream Sync"', where, ts_ns, dur_ns, stream, external_id, correlation)
        self._activity.append(rec)

    def gpu_label(self, name: str, stream: int, ts_ns: int, dur_ns: int, *, external_id: int) -> None:
        """A gpu_user_annotation: a label's envelope over its device work on one stream."""
        self._gpu_labels.append((self._q(name), self._stream_where(stream), ts_ns, dur_ns, external_id))

    def flow(
        self, correlation: int, launch_ns: int, start_ns: int, stream: int, *, tid: int | str | None = None
    ) -> None:
        """An ac2g flow from a launch on host thread ``tid`` to a device event on ``stream``."""
        self._flows.append(
            (correlation, self._host_where(tid), launch_ns, self._stream_where(stream), start_ns)
        )

    def stop(self, end_ns: int) -> None:
        """The profiler stopped at ``end_ns``: its span ends there, and Kineto's iteration-start
        and record-window-end marks (two instant events) are written.

        Without it the span ends with the last event and there are no marks, so a hand-made
        trace holds only the events its scenario added, plus the span.
        """
        self._stop_ns = end_ns

    # -- scenario methods: microseconds after the base, ids chosen here ------------------------
    @property
    def base_us(self) -> float:
        return self.base_ns / 1000

    def new_id(self) -> int:
        """A fresh id (External id or correlation), unique in this trace."""
        self._next_id += 1
        return self._next_id

    def _ns(self, us: float) -> int:
        return self.base_ns + round(us * 1000)

    def label(self, name: str, start_us: float, end_us: float, *, tid: int | str | None = None) -> int:
        """A record_function range (cat user_annotation) on a host thread; returns its External id."""
        ext = self.new_id()
        start = self._ns(start_us)
        self.host_op(name, start, self._ns(end_us) - start, cat="user_annotation", tid=tid, external_id=ext)
        return ext

    def op(
        self,
        name: str,
        start_us: float,
        end_us: float,
        *,
        tid: int | str | None = None,
        cat: str = "cpu_op",
        external_id: int | None = None,
    ) -> int:
        """A host op (cpu_op by default); returns its External id."""
        ext = external_id or self.new_id()
        start = self._ns(start_us)
        self.host_op(name, start, self._ns(end_us) - start, cat=cat, tid=tid, external_id=ext)
        return ext

    def launch(
        self,
        at_us: float,
        start_us: float,
        end_us: float,
        *,
        stream: int = DEFAULT_STREAM,
        name: str = "gemm_kernel",
        cat: str = "kernel",
        link: Link = "correlation",
        external_id: int | None = None,
        tid: int | str | None = None,
        runtime_us: float = 5.0,
    ) -> int:
        """A device event on ``stream`` over [start, end), launched from the host at ``at``.

        link: "correlation" (runtime call and device event share args.correlation), "flow" (the
        device event has no correlation; an ac2g s/f flow joins them), "external" (the device
        event carries only ``external_id``, which a cpu_op must have; no runtime call), "none"
        (a correlation that no host event has: unattributed). Returns the correlation id.
        """
        if link not in ("correlation", "flow", "external", "none"):
            raise ValueError(f"unknown link {link!r}")
        corr = self.new_id()
        at, start = self._ns(at_us), self._ns(start_us)
        if link in ("correlation", "flow"):
            api = {"kernel": "cudaLaunchKernel", "gpu_memset": "cudaMemsetAsync"}.get(cat, "cudaMemcpyAsync")
            self.runtime(api, at, round(runtime_us * 1000), correlation=corr, external_id=corr, tid=tid)
        ext, dev_corr = {
            "correlation": (corr, corr),
            "flow": (None, None),
            "external": (external_id, None),
            "none": (None, 999_999),
        }[link]
        dur = self._ns(end_us) - start
        if cat == "kernel":
            self.kernel(name, stream, start, dur, correlation=dev_corr, external_id=ext)
        else:
            self.memcpy(name, stream, start, dur, cat=cat, correlation=dev_corr, external_id=ext)
        if link == "flow":
            self.flow(corr, at, start, stream, tid=tid)
        return corr

    # -- the writer -----------------------------------------------------------------------------
    def approx_size_bytes(self) -> int:
        """About the size of the JSON written now (within a few %), without formatting it.

        Incremental: each call only looks at the events added since the last one.
        """
        n_host, n_act, n_flow, n_label, total = self._sized
        host, act, labels = self._host, self._activity, self._gpu_labels
        total += sum(len(e[0]) + len(e[1]) for e in host[n_host:]) + _HOST_BYTES * (len(host) - n_host)
        total += sum(_ACTIVITY_BYTES[e[0]] + len(e[1]) for e in act[n_act:])
        total += _FLOW_BYTES * (len(self._flows) - n_flow)
        total += sum(len(e[0]) for e in labels[n_label:]) + _LABEL_BYTES * (len(labels) - n_label)
        self._sized = [len(host), len(act), len(self._flows), len(labels), total]
        return total

    def _last_end_ns(self) -> int:
        ends = [e[_TS] + e[_DUR] for e in (*self._host, *self._activity)]
        ends += [e[2] + e[3] for e in self._gpu_labels]
        return max(ends, default=self.base_ns)

    def _header(self) -> str:
        props = "" if self.device is None else f"\n    {json.dumps(self.device)}\n  "
        cuda = '  "cuda_runtime_version": 12040,\n  "cuda_driver_version": 12040,\n' if self.device else ""
        # HTA finds the rank with the regex '"rank":\s+(\d+)': keep the space after the colon.
        return (
            f'{{\n  "schemaVersion": 1,\n  "deviceProperties": [{props}],\n'
            f'  "distributedInfo": {{"backend": "nccl", "rank": {self.rank}, "world_size": 1}},\n{cuda}'
            '  "trace_id": "9D1C2F7E4B0A4E19A3F6C8D2E5B7A140",\n  "host_name": "gpu-node-01",\n'
            f'  "displayTimeUnit": "ms",\n  "baseTimeNanoseconds": {self.base_time_ns},\n  "traceEvents": [\n'
        )

    def _metadata(self) -> list[str]:
        ts = _us(self.base_ns)
        host = f'"pid": {self.host_pid}, "tid": 0'
        out = [
            _meta("process_name", host, ts, '"name": "python"'),
            _meta("process_labels", host, ts, '"labels": "CPU"'),
            _meta("process_sort_index", host, ts, f'"sort_index": {self.host_pid}'),
        ]
        if self._streams:
            device = f'"pid": {DEVICE_PID}, "tid": 0'
            out += [
                _meta("process_name", device, ts, '"name": "python"'),
                _meta("process_labels", device, ts, f'"labels": "GPU {DEVICE_PID}"'),
                _meta("process_sort_index", device, ts, '"sort_index": 5000000'),
            ]
        for tid, where in self._threads.items():
            out.append(_meta("thread_name", where, ts, f'"name": {json.dumps(f"thread {tid} (python)")}'))
            out.append(_meta("thread_sort_index", where, ts, f'"sort_index": {json.dumps(tid)}'))
        for stream, where in sorted(self._streams.items()):
            out.append(_meta("thread_name", where, ts, f'"name": "stream {stream} "'))
            out.append(_meta("thread_sort_index", where, ts, f'"sort_index": {stream}'))
        return out

    def _tail(self) -> list[str]:
        start = _us(self.base_ns)
        end = self._last_end_ns() if self._stop_ns is None else self._stop_ns
        tail = [
            '  {\n    "ph": "X", "cat": "Trace", "name": "PyTorch Profiler (0)", "pid": "Spans", '
            f'"tid": "PyTorch Profiler",\n    "ts": {start}, "dur": {_us(end - self.base_ns)},\n'
            '    "args": {\n      "Op count": 0\n    }\n  }',
            _meta("process_sort_index", '"pid": "Spans", "tid": 0', start, '"sort_index": 536870912'),
        ]
        if self._stop_ns is not None:
            tail += [
                '  {\n    "ph": "i", "s": "g", "name": "Iteration Start: PyTorch Profiler", "pid": "Traces", '
                f'"tid": "Trace PyTorch Profiler", "ts": {start}\n  }}',
                '  {\n    "ph": "i", "s": "g", "name": "Record Window End", "pid": "", "tid": "", '
                f'"ts": {_us(end + 50_000)}\n  }}',
            ]
        return tail

    def _chunks(self) -> Iterator[tuple[str, int]]:
        """The file's text in pieces, each with its number of events, in Kineto's order."""
        yield self._header(), 0
        meta = self._metadata()
        yield ",\n".join(meta) + ",\n", len(meta)
        host = sorted(self._host, key=itemgetter(_TS))  # stable: equal starts keep their order
        for i in range(0, len(host), _CHUNK):
            part = host[i : i + _CHUNK]
            yield ",\n".join([_host(e, i + j) for j, e in enumerate(part)]) + ",\n", len(part)
        fmt = _ACTIVITY
        for i in range(0, len(self._activity), _CHUNK):
            part = self._activity[i : i + _CHUNK]
            yield ",\n".join([fmt[e[0]](e) for e in part]) + ",\n", len(part)
        for i in range(0, len(self._flows), _CHUNK):
            part = self._flows[i : i + _CHUNK]
            yield ",\n".join([_flow(e) for e in part]) + ",\n", 2 * len(part)
        for i in range(0, len(self._gpu_labels), _CHUNK):
            part = self._gpu_labels[i : i + _CHUNK]
            yield ",\n".join([_gpu_label(e) for e in part]) + ",\n", len(part)
        tail = self._tail()
        footer = f"\n  ],\n  \"traceName\": {json.dumps(self.trace_name)}\n}}\n"
        yield ",\n".join(tail) + footer, len(tail)

    def dump(self, path: Path) -> Written:
        """Write the trace to ``path`` atomically, gzipped when it ends in ``.gz``.

        Streams the text in pieces (a 50 MB trace is never one string). Same events give the
        same bytes, .gz included (no time or name in the gzip header).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        counts = [0, 0]

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as raw, (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0)
                if path.name.endswith(".gz")
                else nullcontext(raw)
            ) as fh:
                for text, n in self._chunks():
                    data = text.encode()
                    fh.write(data)
                    counts[0] += len(data)
                    counts[1] += n

        write_atomic(path, write)
        return Written(path=path, size_bytes=counts[0], n_events=counts[1])

    def write(self, path: Path) -> Path:
        """:meth:`dump`, returning just the path (tests pass it straight to a reader)."""
        return self.dump(path).path
