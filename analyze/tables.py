"""The five Parquet tables of an analysis (DESIGN.md, Files): build, write, read.

``analyze_paths`` finds the runs under the given paths, analyses their traces one at a time
(or in ``jobs`` worker processes, each returning small per-trace DataFrames), and assembles
the runs, samples, stages, tokens and ops tables. A trace that cannot be read is named in a
warning and skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from analyze.contract import TABLE_SCHEMAS, RunManifest
from analyze.discover import RunInput, discover, sample_id
from analyze.errors import AnalyzeError
from analyze.files import write_atomic
from analyze.stagemap import StageMap
from analyze.trace_tables import TraceTables, TraceTask, analyze_trace


class NothingReadable(AnalyzeError):
    """No trace under the given paths could be read; ``warnings`` says why for each."""

    def __init__(self, message: str, warnings: list[str]) -> None:
        super().__init__(message)
        self.warnings = warnings


@dataclass(frozen=True)
class Tables:
    """The five tables of an analysis (columns: contract.TABLE_SCHEMAS)."""

    runs: pd.DataFrame
    samples: pd.DataFrame
    stages: pd.DataFrame
    tokens: pd.DataFrame
    ops: pd.DataFrame


def conform(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` with exactly the columns of ``table``, in order, with their dtypes."""
    schema = TABLE_SCHEMAS[table]
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} table lacks columns {missing}")
    return frame[list(schema)].astype(schema).reset_index(drop=True)


def empty_table(table: str) -> pd.DataFrame:
    """A table with no rows and the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in TABLE_SCHEMAS[table].items()})


def run_model(manifest: RunManifest | None) -> str:
    """The model name a manifest records ("" without one)."""
    if manifest is None:
        return ""
    return manifest.model.name or str(manifest.config.get("model") or "")


def _tasks(
    runs: Sequence[RunInput], stage_map: StageMap | None, max_bytes: int | None = None
) -> list[TraceTask]:
    tasks = []
    for run in runs:
        model = run_model(run.manifest)
        indices = {s.trace: s.index for s in run.manifest.samples} if run.manifest else {}
        for order, path in enumerate(run.traces):
            tasks.append(
                TraceTask(
                    path=path,
                    run_id=run.run_id,
                    model=model,
                    sample_id=sample_id(path),
                    order=order,
                    manifest_index=indices.get(path.name),
                    stage_map=stage_map,
                    max_bytes=max_bytes,
                )
            )
    return tasks


def _safe_analyze(task: TraceTask) -> TraceTables | str:
    """Analyse one trace; a trace that cannot be read comes back as the reason why."""
    try:
        return analyze_trace(task)
    except AnalyzeError as exc:
        return str(exc)
    except Exception as exc:  # a malformed trace must not stop the others
        return f"{task.path}: could not be analysed ({type(exc).__name__}: {exc})"
    finally:
        _return_freed_memory()


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def _return_freed_memory() -> None:
    """Give the heap freed by the last trace back to the OS, so that peak memory stays near one
    trace's worth however many are read (glibc otherwise keeps the fragmented heap)."""
    if _TRIM is not None:
        _TRIM(0)


class _NoBar(contextlib.nullcontext):
    def update(self) -> None:
        pass


def _results(tasks: list[TraceTask], jobs: int, progress: bool) -> Iterator[TraceTables | str]:
    if progress:  # tqdm's import is start-up time that runs without a terminal skip
        from tqdm import tqdm

        bar: Any = tqdm(total=len(tasks), unit="trace", file=sys.stderr, leave=False)
    else:
        bar = _NoBar()
    with bar:
        if jobs <= 1 or len(tasks) <= 1:
            for task in tasks:
                yield _safe_analyze(task)
                bar.update()
            return
        try:
            with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
                for result in pool.map(_safe_analyze, tasks):
                    yield result
                    bar.update()
        except BrokenProcessPool:
            raise AnalyzeError(
                f"a --jobs {jobs} worker process died (out of memory?); retry with fewer jobs"
            ) from None


def _run_row(run: RunInput, read: list[TraceTables], n_skipped: int) -> dict[str, Any]:
    m = run.manifest
    has_gpu = any(r.has_gpu for r in read)
    gpu_names = sorted({r.gpu_name for r in read if r.gpu_name})
    env = m.env if m else None
    ver = m.verification if m else None
    identity = ver.identity.ok if ver and ver.identity else None
    accounting = ver.accounting.ok if ver and ver.accounting else None
    ratio = ver.overhead.ratio if ver and ver.overhead else None
    return {
        "run_id": run.run_id,
        "model": run_model(m),
        "mode": str(m.config.get("mode") or "") if m else "",
        "device": (env.device if env else "") or (("cuda" if has_gpu else "cpu") if read else ""),
        # Each trace names its own device; a folder of foreign traces may mix several.
        "gpu_name": " | ".join(gpu_names) or ((env.gpu_name or "") if env else ""),
        "torch_version": env.torch if env else "",
        "transformers_version": env.transformers if env else "",
        "n_samples": len(read),
        "n_skipped": n_skipped,
        "trace_dir": str(run.run_dir),
        "has_manifest": m is not None,
        "identity_ok": pd.NA if identity is None else identity,
        "accounting_ok": pd.NA if accounting is None else accounting,
        "overhead_ratio": float("nan") if ratio is None else float(ratio),
        "has_gpu": has_gpu,
        "mixed_devices": len(gpu_names) > 1,
    }


def _concat(frames: list[pd.DataFrame], table: str) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_table(table)
    return conform(pd.concat(frames, ignore_index=True), table)


def analyze_paths(
    paths: Sequence[Path],
    *,
    stage_map: StageMap | None = None,
    jobs: int = 1,
    progress: bool = False,
    max_trace_mb: float | None = None,
) -> tuple[Tables, list[str]]:
    """Analyse the runs under ``paths``; returns the tables and warnings (skipped traces, ...).

    ``max_trace_mb``: a trace larger than this uncompressed is skipped with a warning (default:
    parse.DEFAULT_MAX_TRACE_MB). Raises AnalyzeError when a path is missing or holds no traces,
    or no trace could be read.
    """
    runs, warnings = discover(paths)
    max_bytes = None if max_trace_mb is None else int(max_trace_mb * 1_000_000)
    tasks = _tasks(runs, stage_map, max_bytes)
    read: dict[str, list[TraceTables]] = {run.run_id: [] for run in runs}
    skipped: dict[str, int] = dict.fromkeys(read, 0)
    reasons: list[str] = []
    for task, result in zip(tasks, _results(tasks, jobs, progress), strict=True):
        if isinstance(result, str):
            reasons.append(result)
            warnings.append(f"{result} - skipped")
            skipped[task.run_id] += 1
        else:
            read[task.run_id].append(result)
            warnings.extend(result.warnings)
    if not any(read.values()):
        raise NothingReadable(
            f"none of the {len(tasks)} trace files could be read; first: {reasons[0]}", warnings
        )
    all_read = [r for run in runs for r in read[run.run_id]]
    tables = Tables(
        runs=conform(pd.DataFrame([_run_row(r, read[r.run_id], skipped[r.run_id]) for r in runs]), "runs"),
        samples=_concat([r.samples for r in all_read], "samples"),
        stages=_concat([r.stages for r in all_read], "stages"),
        tokens=_concat([r.tokens for r in all_read], "tokens"),
        ops=_concat([r.ops for r in all_read], "ops"),
    )
    return tables, warnings


def write_tables(tables: Tables, out_dir: Path) -> list[Path]:
    """Write each table to ``out_dir/<name>.parquet`` atomically (temp file, then rename)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnalyzeError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from None
    written = []
    for f in fields(Tables):
        path = out_dir / f"{f.name}.parquet"
        frame = getattr(tables, f.name)
        try:
            write_atomic(path, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
        except OSError as exc:
            raise AnalyzeError(f"{path}: cannot write ({exc.strerror or exc})") from None
        written.append(path)
    return written


def read_tables(out_dir: Path) -> Tables:
    """Read the tables that ``write_tables`` wrote to ``out_dir``."""
    out_dir = Path(out_dir)
    frames = {}
    for f in fields(Tables):
        path = out_dir / f"{f.name}.parquet"
        if not path.exists():
            raise AnalyzeError(f"{path}: missing; run `analyze` on the traces first")
        frames[f.name] = pd.read_parquet(path)
    return Tables(**frames)
