"""Writing and checking each sample's trace off the sample loop's critical path.

Per sample, capture's loop only stops the profiler and hands the session to :class:`Exporter`;
the next sample starts at once. A background thread then has Kineto write the session's JSON
into the run folder under a temporary name (Kineto's writer runs without Python's lock), and a
worker process (``python -c "from capture.exporter import serve; serve()"``, torch-free) checks
that JSON as ``analyze`` reads it (capture.verify.trace_summary), gzips it at a fast level into a
second temporary name beside it and renames that over the trace's name. Only then does the loop
record the sample in run.json: a sample counts as captured only when its trace is whole on disk.

The analysis runs in its own process, not in the background thread, so that it never holds the
interpreter lock while the next sample's generate() runs (on a GPU, generate() is mostly Python
launching kernels). If the worker cannot be started or dies, the thread does its work itself.

Temporary names follow :mod:`analyze.files` (``.<trace name>.tmp-<pid>[.json]``), so a killed
run leaves them only in its run folder, where ``capture --resume`` removes them; nothing goes to
the system temp folder. A worker ignores Ctrl-C: the loop waits for the traces in flight,
records them, and only then stops.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from analyze.contract import SampleAccounting
from analyze.errors import describe
from analyze.files import tmp_path, write_atomic

# gzip level of the traces: level 1 deflates about ten times faster than the level 9 that torch
# uses, for files about a third larger; every gzip reader (analyze, HTA, Perfetto) opens them.
GZIP_LEVEL = 1
MAX_IN_FLIGHT = 2  # sessions waiting or being written before the loop waits for them
_WORKER_LIVES = 3  # a worker that dies this often is not started again
_COPY_BYTES = 1 << 20


def gzip_file(src: Path, dst: Path) -> None:
    """``src`` gzipped into ``dst`` as a stream (zlib releases the interpreter lock while it works)."""
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_COPY_BYTES):
            fout.write(deflate.compress(chunk))
        fout.write(deflate.flush())


def gzip_trace(plain: Path, path: Path) -> None:
    """Kineto's JSON ``plain`` gzipped into the trace ``path``, which exists whole or not at all
    (analyze.files.write_atomic); the caller removes ``plain``."""
    write_atomic(path, lambda tmp: gzip_file(plain, tmp))


class Finished(msgspec.Struct, kw_only=True):
    """What became of one trace: whole on disk (``error`` None) with its check, or why not."""

    error: str | None = None
    compress_ms: float = 0.0
    check_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    accounting: SampleAccounting | None = None


class _Job(msgspec.Struct, kw_only=True):
    plain: str  # Kineto's JSON, a temporary file beside ``path``
    path: str  # the trace's name (.json.gz)
    tokens: int


def finish_trace(plain: Path, path: Path, tokens: int) -> Finished:
    """Check ``plain`` (capture.verify.trace_summary), gzip it to ``path`` atomically, remove it.

    The check reads the uncompressed JSON, so it costs no gunzip; it runs before compression
    so that both read a file the page cache still holds.
    """
    from capture import verify  # analyze's tables: imported where the check runs

    try:
        t0 = time.perf_counter()
        try:
            ttft, tpot, accounting = verify.trace_summary(plain, tokens)
        except Exception as exc:  # not kept, like the trace of any sample that failed
            return Finished(error=f"the accounting check could not read the trace: {describe(exc)}")
        t1 = time.perf_counter()
        gzip_trace(plain, path)
        t2 = time.perf_counter()
    finally:
        plain.unlink(missing_ok=True)
    return Finished(
        compress_ms=round((t2 - t1) * 1e3, 3),
        check_ms=round((t1 - t0) * 1e3, 3),
        ttft_ms=ttft,
        tpot_ms=tpot,
        accounting=accounting,
    )


def serve() -> None:
    """The worker process: one JSON job per line on stdin, one :class:`Finished` per line on stdout.

    It ignores Ctrl-C (its parent decides when to stop) and ends when stdin closes, which also
    happens when its parent is killed.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    decode, encode = msgspec.json.Decoder(_Job).decode, msgspec.json.Encoder().encode
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        job = decode(line)
        try:
            done = finish_trace(Path(job.plain), Path(job.path), job.tokens)
        except Exception as exc:
            done = Finished(error=describe(exc))
        out.write(encode(done) + b"\n")
        out.flush()


class _Worker:
    """The worker process, started on first use and kept for the process's later runs; a None
    result means it is gone (and the caller does the work itself)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed = False
        self._deaths = 0
        self._lock = threading.Lock()  # one job at a time, whichever exporter sends it
        self._decode = msgspec.json.Decoder(Finished).decode
        self._encode = msgspec.json.Encoder().encode

    def _start(self) -> subprocess.Popen[bytes] | None:
        if self._proc is None and not self._failed:
            env = dict(os.environ)
            # The child imports this very checkout of capture and analyze, whatever sys.path says.
            here = str(Path(__file__).resolve().parents[1])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", "from capture.exporter import serve; serve()"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            except OSError:
                self._failed = True
        return self._proc

    def run(self, job: _Job) -> Finished | None:
        with self._lock:
            proc = self._start()
            if proc is None or proc.stdin is None or proc.stdout is None:
                return None
            try:
                proc.stdin.write(self._encode(job) + b"\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if line:
                    return self._decode(line)
            except (OSError, ValueError, msgspec.DecodeError):
                pass
            self._stop()  # died (killed, out of memory): the thread takes over this job
            self._deaths += 1
            self._failed = self._deaths >= _WORKER_LIVES  # and later ones, if it keeps dying
            return None

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_WORKER: _Worker | None = None


def _shared_worker() -> _Worker:
    """The process's one worker (its start-up, imports included, is paid once per process); it
    ends when this process exits, or when its stdin closes because this process was killed."""
    global _WORKER
    if _WORKER is None:
        _WORKER = _Worker()
        atexit.register(_WORKER.stop)
    return _WORKER


@dataclass
class Export:
    """One sample's profiler session on its way to disk: ``save(path)`` writes Kineto's JSON."""

    key: object  # the caller's handle, handed back with the result (capture: the SampleOutcome)
    save: Callable[[Path], object]
    path: Path
    tokens: int
    export_ms: float = 0.0  # Kineto's write plus compression
    result: Finished | None = None


class Exporter:
    """Writes and checks traces in the background, in the order they were submitted.

    ``submit`` hands over a finished session (waiting while MAX_IN_FLIGHT are in flight),
    ``finished`` returns the exports done so far without waiting, ``drain`` waits for all of
    them, ``close`` ends the thread (the process's worker stays for its later runs).
    """

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT, *, use_worker: bool = True) -> None:
        self.max_in_flight = max_in_flight
        self._worker = _shared_worker() if use_worker else None
        self._queue: deque[Export] = deque()
        self._done: deque[Export] = deque()
        self._in_flight = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="stagetrace-exporter", daemon=True)
        self._thread.start()

    def submit(self, export: Export) -> None:
        with self._cond:
            while self._in_flight >= self.max_in_flight:
                self._cond.wait(timeout=0.1)
            self._in_flight += 1
            self._queue.append(export)
            self._cond.notify_all()

    def finished(self) -> list[Export]:
        with self._cond:
            done = list(self._done)
            self._done.clear()
        return done

    def drain(self) -> list[Export]:
        """Wait until every submitted export is done; returns those not yet returned."""
        with self._cond:
            while self._in_flight:
                self._cond.wait(timeout=0.1)
        return self.finished()

    def close(self) -> None:
        """Let the thread finish what it holds, then end it (the worker stays for later runs)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                export = self._queue.popleft()
            self._export(export)
            with self._cond:
                self._done.append(export)
                self._in_flight -= 1
                self._cond.notify_all()

    def _export(self, export: Export) -> None:
        plain = tmp_path(export.path, ".json")
        t0 = time.perf_counter()
        try:
            export.save(plain)
        except Exception as exc:
            plain.unlink(missing_ok=True)
            export.result = Finished(error=f"trace export failed: {describe(exc)}")
            return
        finally:
            export.save = _spent  # the session's memory goes now, not when the loop records it
        save_ms = (time.perf_counter() - t0) * 1e3
        job = _Job(plain=str(plain), path=str(export.path), tokens=export.tokens)
        done = self._worker.run(job) if self._worker is not None else None
        if done is None:
            try:
                done = finish_trace(plain, export.path, export.tokens)
            except Exception as exc:
                done = Finished(error=f"trace export failed: {describe(exc)}")
        export.export_ms = round(save_ms + done.compress_ms, 3)
        export.result = done


def _spent(_path: Path) -> None:
    raise RuntimeError("this session was already exported")
