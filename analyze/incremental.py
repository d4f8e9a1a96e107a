"""``analyze`` into an output folder, incrementally: reuse the rows of unchanged traces.

:func:`analyze_into` discovers the runs, and for every trace runs one :func:`trace_job`, here
(``jobs`` 1), in local worker processes (``jobs`` N) or on a Dask cluster (``scheduler``). A job
fingerprints its trace (path, size, mtime and a hash of the first and last 64 KiB); when the
previous snapshot's reuse index holds the same fingerprint and the same task (run, sample, model,
stage map, analysis code), it hard-links that trace's Parquet files into the new snapshot;
otherwise it analyses the trace and writes its rows itself. Either way only a small index row
comes back, so the rows never pass through one process as a whole; this process writes the runs
table (one row per run), the index and the catalogue, and swaps the new snapshot in
(analyze.store). Traces of the previous snapshot that are no longer among the inputs are dropped.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analyze import store
from analyze.contract import INDEX_SCHEMA, AnalysisSnapshot, SnapshotRun
from analyze.discover import discover
from analyze.errors import AnalyzeError, first_line
from analyze.stagemap import StageMap
from analyze.tables import (
    NothingReadable,
    TraceFacts,
    run_row,
    safe_analyze,
    trace_tasks,
)
from analyze.trace_tables import TraceTask
from analyze.workers import map_traces

HASH_SPAN = 64 * 1024  # bytes hashed at each end of a trace file
# The modules whose code decides a trace's rows: a change to any of them invalidates reuse.
# tests/test_incremental.py checks that these are the analyze modules trace_tables imports.
_ANALYSIS_MODULES = (
    "parse", "attribute", "bound", "tokens", "trace_tables", "vocabulary", "stagemap", "contract", "errors",
)  # fmt: skip


class OutputError(AnalyzeError):
    """A job could not write its rows into the snapshot (disk full, not shared with a worker)."""


@functools.cache
def code_key() -> str:
    """A hash of the analysis code, the table schemas (contract) included: rows computed by other
    code are not reused."""
    h = hashlib.blake2b(digest_size=8)
    base = Path(__file__).parent
    for name in _ANALYSIS_MODULES:
        h.update((base / f"{name}.py").read_bytes())
    return h.hexdigest()


def task_key(task: TraceTask) -> str:
    """Everything besides the file's bytes that decides the trace's rows, as a short hash."""
    stages = task.stage_map.stages if task.stage_map is not None else None
    what = (
        code_key(), task.run_id, task.sample_id, task.model, task.order, task.manifest_index, stages,
        task.outcome,  # run.json's facts of the sample (a resumed or re-captured run changes them)
    )  # fmt: skip
    return hashlib.blake2b(repr(what).encode(), digest_size=8).hexdigest()


def fingerprint(path: Path) -> tuple[int, int, str]:
    """(size in bytes, mtime in ns, BLAKE2b-128 of the first and last 64 KiB) of a file."""
    st = os.stat(path)
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(HASH_SPAN))
        if st.st_size > HASH_SPAN:
            f.seek(max(HASH_SPAN, st.st_size - HASH_SPAN))
            h.update(f.read(HASH_SPAN))
    return st.st_size, st.st_mtime_ns, h.hexdigest()


@dataclass(frozen=True)
class TraceJob:
    """One trace's work: where its rows go, and the previous snapshot's index row for it."""

    task: TraceTask
    snapshot: Path  # the snapshot being built
    partition: str  # run_id=<escaped>
    part: str  # file name of its rows in each table
    key: str  # task_key(task), computed once by the caller
    previous: dict[str, Any] | None = None  # its row in the previous snapshot's index
    previous_snapshot: Path | None = None


@dataclass(frozen=True)
class Skipped:
    """A trace that could not be analysed; ``unreachable``: the file itself could not be opened
    (``detail`` says why)."""

    reason: str
    unreachable: bool = False
    detail: str = ""
    where: str = ""  # the worker that tried (cluster runs)


@dataclass(frozen=True)
class Done:
    """A trace whose rows are in the new snapshot: its reuse-index row."""

    row: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


JobResult = Done | Skipped


def _link_previous(job: TraceJob) -> bool:
    """Hard-link the trace's files from the previous snapshot (copy where links are refused);
    False when they are gone (another writer removed that snapshot)."""
    prev = job.previous
    assert prev is not None and job.previous_snapshot is not None
    made: list[Path] = []
    try:
        for table in store.PER_TRACE_TABLES:
            src = job.previous_snapshot / table / prev["partition"] / prev["part"]
            dst = job.snapshot / table / job.partition / job.part
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except FileNotFoundError:
                raise
            except OSError:  # a filesystem without hard links
                shutil.copyfile(src, dst)
            made.append(dst)
    except FileNotFoundError:
        for path in made:
            path.unlink(missing_ok=True)
        return False
    return True


def trace_job(job: TraceJob) -> JobResult:
    """Reuse or analyse one trace and leave its rows in ``job.snapshot``; returns its index row.

    Raises OutputError when its rows cannot be written (the whole analysis must stop then)."""
    task = job.task
    try:
        size, mtime_ns, head_tail = fingerprint(task.path)
    except OSError as exc:
        detail = first_line(exc)
        return Skipped(f"{task.path}: cannot read ({detail})", unreachable=True, detail=detail)
    prev = job.previous
    same = prev is not None and (
        prev["size_bytes"],
        prev["mtime_ns"],
        prev["head_tail_hash"],
        prev["task_key"],
    ) == (
        size,
        mtime_ns,
        head_tail,
        job.key,
    )
    row = {
        "path": str(task.path),
        "size_bytes": size,
        "mtime_ns": mtime_ns,
        "head_tail_hash": head_tail,
        "task_key": job.key,
        "run_id": task.run_id,
        "sample_id": task.sample_id,
        "order": task.order,
        "partition": job.partition,
        "part": job.part,
    }
    try:
        if same and prev is not None and _link_previous(job):
            # What the analysis found (GPU, row counts, warnings) carries over from the previous run.
            return Done({**row, **{k: prev[k] for k in INDEX_SCHEMA if k not in row}}, reused=True)
    except OSError as exc:
        raise OutputError(store.cannot_write(job.snapshot.parent.parent, exc)) from None
    result = safe_analyze(task)
    if isinstance(result, str):
        return Skipped(result)
    counts = {}
    try:
        for table in store.PER_TRACE_TABLES:
            frame = getattr(result, table)
            folder = job.snapshot / table / job.partition
            folder.mkdir(parents=True, exist_ok=True)
            store.write_frame(folder / job.part, frame, table)
            counts[f"rows_{table}"] = len(frame)
    except OSError as exc:
        raise OutputError(store.cannot_write(job.snapshot.parent.parent, exc)) from None
    return Done(
        {
            **row,
            "gpu_name": result.gpu_name,
            "has_gpu": result.has_gpu,
            **counts,
            "analysed": store.now_iso(),
            "warnings": "\n".join(result.warnings),
        }
    )


# ---------------------------------------------------------------------------------- execution
@dataclass
class AnalysisResult:
    """What ``analyze_into`` did: the snapshot it made current, and the counts for the summary."""

    out_dir: Path
    snapshot: Path
    warnings: list[str]
    analysed: int = 0
    reused: int = 0
    skipped: int = 0
    dropped: int = 0


Runner = Callable[[Sequence[TraceJob], bool], Iterator[JobResult]]


def analyze_into(
    paths: Sequence[Path],
    out_dir: Path,
    *,
    stage_map: StageMap | None = None,
    jobs: int = 1,
    scheduler: str | None = None,
    fresh: bool = False,
    progress: bool = False,
    max_trace_mb: float | None = None,
) -> AnalysisResult:
    """Analyse the runs under ``paths`` into ``out_dir``'s tables, reusing unchanged traces' rows
    (all recomputed with ``fresh``); per-trace work on the Dask cluster at ``scheduler`` if given,
    else in ``jobs`` local processes. A trace larger than ``max_trace_mb`` uncompressed is refused
    (skipped with a warning). The new set of tables replaces the old one atomically: on any
    error (AnalyzeError, one line) the old set stays as it was.
    """
    runs, warnings = discover(paths)
    partitions = {run.run_id: store.partition_name(run.run_id) for run in runs}
    tasks = trace_tasks(runs, stage_map, max_trace_mb)
    out_dir = Path(out_dir).absolute()  # workers elsewhere (Dask) have another working directory
    previous_dir = None if fresh else store.current_snapshot(out_dir)
    previous = _previous_rows(previous_dir)
    runner: Runner
    if scheduler is not None:
        from analyze import cluster

        runner = functools.partial(cluster.run_jobs, scheduler, code=code_key())
    else:
        runner = lambda js, bar: map_traces(trace_job, js, jobs, bar)  # noqa: E731
    snapshot = store.Snapshot.create(out_dir)
    try:
        todo = [
            TraceJob(
                task=t,
                snapshot=snapshot.path,
                partition=partitions[t.run_id],
                part=store.part_name(t.order),
                key=task_key(t),
                previous=previous.get(str(t.path)),
                previous_snapshot=previous_dir,
            )
            for t in tasks
        ]
        done: dict[str, list[dict[str, Any]]] = {run.run_id: [] for run in runs}
        skipped = dict.fromkeys(done, 0)
        reasons: list[str] = []
        reused = 0
        for job, result in zip(todo, runner(todo, progress), strict=True):
            if isinstance(result, Skipped):
                if result.unreachable and scheduler is not None:  # on a cluster: not shared, an error
                    from analyze.cluster import unreadable_on_worker

                    raise AnalyzeError(unreadable_on_worker(job.task.path, result.where, result.detail))
                reasons.append(result.reason)
                warnings.append(f"{result.reason} - skipped")
                skipped[job.task.run_id] += 1
                continue
            done[job.task.run_id].append(result.row)
            warnings.extend(w for w in str(result.row.get("warnings") or "").split("\n") if w)
            reused += result.reused
        if not any(done.values()):
            raise NothingReadable.of(len(tasks), reasons, warnings)
        rows = [r for run in runs for r in done[run.run_id]]
        facts = {rid: [TraceFacts(r["gpu_name"], r["has_gpu"]) for r in rs] for rid, rs in done.items()}
        snapshot.write_runs(
            pd.DataFrame([run_row(r, facts[r.run_id], skipped[r.run_id]) for r in runs]), partitions
        )
        index = pd.DataFrame(rows, columns=list(INDEX_SCHEMA))
        snapshot.write_index(index)
        current = {str(t.path) for t in tasks}
        result = AnalysisResult(
            out_dir=out_dir,
            snapshot=snapshot.path,
            warnings=warnings,
            analysed=len(rows) - reused,
            reused=reused,
            skipped=sum(skipped.values()),
            dropped=sum(p not in current for p in previous),
        )
        snapshot.commit(
            AnalysisSnapshot(
                code=code_key(),
                runs=[
                    SnapshotRun(run_id=r.run_id, partition=partitions[r.run_id], traces=len(done[r.run_id]))
                    for r in runs
                ],
                rows={
                    "runs": len(runs),
                    **{t: int(index[f"rows_{t}"].sum()) for t in store.PER_TRACE_TABLES},
                },
                analysed=result.analysed,
                reused=result.reused,
                skipped=result.skipped,
                dropped=result.dropped,
            )
        )
    except OSError as exc:
        snapshot.abandon()
        raise AnalyzeError(store.cannot_write(out_dir, exc)) from None
    except BaseException:
        snapshot.abandon()
        raise
    return result


def _previous_rows(previous_dir: Path | None) -> dict[str, dict[str, Any]]:
    """The previous snapshot's index rows by trace path ({} without one, or when it is unreadable)."""
    if previous_dir is None:
        return {}
    try:
        index = store.read_index(previous_dir)
    except Exception:  # an unreadable index only costs reuse
        return {}
    return {row["path"]: row for row in index.to_dict("records")}
