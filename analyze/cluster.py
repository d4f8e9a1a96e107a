"""Per-trace jobs on a Dask distributed cluster: ``analyze PATH --scheduler tcp://HOST:PORT``.

Dask schedules; stagetrace only submits one :func:`analyze.incremental.trace_job` per trace and
collects the small index rows they return. Each worker reads its traces and writes their rows into
the new snapshot itself, so the workers must see the traces and the output folder at the same paths
as this process (a shared filesystem), and run the same stagetrace code: a pre-flight check on
every worker says so in one line when they do not. At most a few jobs per worker thread are in
flight at once, so neither this process nor the scheduler holds a task per trace of a huge input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from analyze.errors import AnalyzeError, first_line
from analyze.incremental import JobResult, Skipped, TraceJob, code_key, trace_job
from analyze.workers import progress_bar

CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 30
IN_FLIGHT_PER_THREAD = 4


def _address(scheduler: str) -> str:
    address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
    scheme, _, rest = address.partition("://")
    if scheme not in ("tcp", "tls", "ucx", "ws", "wss") or ":" not in rest:
        raise AnalyzeError(f"--scheduler {scheduler}: expected tcp://HOST:PORT (a Dask scheduler's address)")
    return address


def connect(scheduler: str) -> Any:
    """A Dask client of the scheduler, with at least one worker (AnalyzeError, one line, otherwise)."""
    from distributed import Client

    address = _address(scheduler)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise AnalyzeError(f"--scheduler {scheduler}: cannot connect ({first_line(exc)})") from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (OSError, TimeoutError):
        client.close()
        raise AnalyzeError(
            f"--scheduler {scheduler}: no worker joined within {WORKERS_TIMEOUT_S} s; "
            f"start `dask worker {address}`"
        ) from None
    return client


def probe(snapshot: str, trace: str) -> dict[str, Any]:
    """Run on every worker before the jobs: its code's key, and whether it can write the output
    folder and read the first trace at the paths this process uses."""
    marker = Path(snapshot) / f".probe-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        marker.write_bytes(b"")
        marker.unlink()
        writable = ""
    except OSError as exc:
        writable = first_line(exc)
    try:
        with open(trace, "rb") as f:
            f.read(1)
        readable = ""
    except OSError as exc:
        readable = first_line(exc)
    return {"code": code_key(), "write": writable, "read": readable}


def unreadable_on_worker(path: Path | str, worker: str, detail: str) -> str:
    """The one-line error for a trace that a Dask worker cannot open."""
    return (
        f"{path}: Dask worker {worker} cannot read it ({detail}); every worker must see the traces "
        "at the same path (a shared filesystem)"
    )


def _worker_job(job: TraceJob) -> JobResult:
    """trace_job on a worker; a trace it cannot open is marked with the worker's address."""
    result = trace_job(job)
    if isinstance(result, Skipped) and result.unreachable:
        from distributed import get_worker

        return Skipped(result.reason, unreachable=True, detail=result.detail, where=get_worker().address)
    return result


def _preflight(client: Any, scheduler: str, jobs: Sequence[TraceJob], code: str) -> None:
    try:
        answers = client.run(probe, str(jobs[0].snapshot), str(jobs[0].task.path))
    except Exception as exc:
        raise AnalyzeError(
            f"--scheduler {scheduler}: the workers cannot run stagetrace's code ({first_line(exc)}); "
            "install the same stagetrace on every worker"
        ) from None
    for worker, answer in sorted(answers.items()):
        if answer["code"] != code:
            raise AnalyzeError(
                f"Dask worker {worker} runs other stagetrace analysis code than this process; "
                "install the same stagetrace version on every worker"
            )
        if answer["write"]:
            raise AnalyzeError(
                f"Dask worker {worker} cannot write the output folder {jobs[0].snapshot.parent.parent} "
                f"({answer['write']}); the workers must see it at the same path (a shared filesystem)"
            )
        if answer["read"]:
            raise AnalyzeError(unreadable_on_worker(jobs[0].task.path, worker, answer["read"]))


def run_jobs(scheduler: str, jobs: Sequence[TraceJob], progress: bool, *, code: str) -> Iterator[JobResult]:
    """The jobs' results, in job order, computed on the cluster; the progress bar follows the
    cluster's futures as they finish. AnalyzeError (one line) when a job fails on a worker."""
    from distributed import as_completed

    if not jobs:
        return iter(())
    client = connect(scheduler)
    results: list[JobResult | None] = [None] * len(jobs)
    try:
        _preflight(client, scheduler, jobs, code)
        threads = sum(client.nthreads().values()) or 1
        window = max(8, IN_FLIGHT_PER_THREAD * threads)
        position: dict[str, int] = {}

        def submit(i: int) -> Any:
            future = client.submit(
                _worker_job, jobs[i], key=f"stagetrace-trace-{os.getpid()}-{i}", pure=False
            )
            position[future.key] = i
            return future

        upcoming = iter(range(len(jobs)))
        first = [submit(i) for _, i in zip(range(window), upcoming, strict=False)]
        pending = as_completed(first, loop=client.loop)
        bar = progress_bar(len(jobs), progress)
        with bar:
            for future in pending:
                i = position.pop(future.key)
                try:
                    results[i] = future.result()
                except Exception as exc:
                    raise AnalyzeError(
                        f"{jobs[i].task.path}: failed on a Dask worker ({first_line(exc)})"
                    ) from None
                future.release()
                bar.update()
                nxt = next(upcoming, None)
                if nxt is not None:
                    pending.add(submit(nxt))
    finally:
        client.close()
    return iter([r for r in results if r is not None])
