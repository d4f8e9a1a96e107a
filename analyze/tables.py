"""The five Parquet tables of an analysis (DESIGN.md, Files): build, write, read.

``analyze_paths`` finds the runs under the given paths, analyses their traces one at a time
(or in ``jobs`` worker processes, each returning small per-trace DataFrames), and assembles
the runs, samples, stages, tokens and ops tables. A trace that cannot be read is named in a
warning and skipped.
"""

from __future__ import annotations

import ctypes
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pandas as pd

from analyze.contract import MB, TABLE_SCHEMAS, RunManifest
from analyze.discover import RunInput, discover, sample_id
from analyze.errors import AnalyzeError
from analyze.stagemap import StageMap
from analyze.trace_tables import SampleFacts, TraceTables, TraceTask, analyze_trace
from analyze.workers import map_traces


class NothingReadable(AnalyzeError):
    """No trace under the given paths could be read; ``warnings`` says why for each."""

    def __init__(self, message: str, warnings: list[str]) -> None:
        super().__init__(message)
        self.warnings = warnings

    @classmethod
    def of(cls, n_traces: int, reasons: list[str], warnings: list[str]) -> NothingReadable:
        """The error after all ``n_traces`` were skipped, ``reasons`` saying why each."""
        return cls(f"none of the {n_traces} trace files could be read; first: {reasons[0]}", warnings)


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


def trace_tasks(
    runs: Sequence[RunInput], stage_map: StageMap | None, max_trace_mb: float | None = None
) -> list[TraceTask]:
    """One task per trace of ``runs``, in run order and then trace order; ``max_trace_mb`` refuses
    a trace larger than that uncompressed (``--max-trace-mb``)."""
    max_bytes = None if max_trace_mb is None else int(max_trace_mb * MB)
    tasks = []
    for run in runs:
        model = run_model(run.manifest)
        recorded = {s.trace: s for s in run.manifest.samples} if run.manifest else {}
        for order, path in enumerate(run.traces):
            outcome = recorded.get(path.name)
            tasks.append(
                TraceTask(
                    path=path,
                    run_id=run.run_id,
                    model=model,
                    sample_id=sample_id(path),
                    order=order,
                    manifest_index=outcome.index if outcome else None,
                    stage_map=stage_map,
                    outcome=SampleFacts.of(outcome) if outcome else None,
                    max_bytes=max_bytes,
                )
            )
    return tasks


def safe_analyze(task: TraceTask) -> TraceTables | str:
    """Analyse one trace; a trace that cannot be read comes back as the reason why."""
    try:
        return analyze_trace(task)
    except AnalyzeError as exc:
        return str(exc)
    except Exception as exc:  # a malformed trace must not stop the others
        return f"{task.path}: could not be analysed ({type(exc).__name__}: {exc})"
    finally:
        return_freed_memory()


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def return_freed_memory() -> None:
    """Give the heap freed by the last trace back to the OS, so that peak memory stays near one
    trace's worth however many are read (glibc otherwise keeps the fragmented heap)."""
    if _TRIM is not None:
        _TRIM(0)


# run.json config keys of the settings users compare, with the value a run that predates them had.
SETTING_DEFAULTS: dict[str, Any] = {
    "attn_implementation": "",  # not recorded: transformers' own default
    "cache": "dynamic",
    "compile": False,
    "load_in": "",  # none: weights loaded in --dtype
}


def run_settings(manifest: RunManifest | None) -> dict[str, Any]:
    """The settings of a run as the runs table shows them: dtype, attn_implementation, cache,
    compile, load_in, weights ("pretrained" or "random"). Older run.json files lack some keys: the
    defaults above apply, and ``weights`` is "random" when the model's weights source says so.
    Without a run.json everything is empty (compile False)."""
    if manifest is None:
        return {"dtype": "", **dict.fromkeys(SETTING_DEFAULTS, ""), "compile": False, "weights": ""}
    config = manifest.config
    values = {k: config.get(k, default) for k, default in SETTING_DEFAULTS.items()}
    # tiny-* models are random too, though they never ask for it (config weights "pretrained")
    random = config.get("weights") == "random" or manifest.model.weights.startswith("random")
    weights = "random" if random else "pretrained"
    return {
        "dtype": manifest.dtype or str(config.get("dtype") or ""),
        "attn_implementation": str(values["attn_implementation"] or ""),
        "cache": str(values["cache"] or ""),
        "compile": bool(values["compile"]),
        "load_in": str(values["load_in"] or ""),
        "weights": str(weights),
    }


class TraceFacts(NamedTuple):
    """What the runs table needs of one trace that was read (kept in the reuse index)."""

    gpu_name: str
    has_gpu: bool


class _HasFacts(Protocol):
    gpu_name: str
    has_gpu: bool


def run_row(run: RunInput, read: Sequence[_HasFacts], n_skipped: int) -> dict[str, Any]:
    """The runs-table row of ``run``: its manifest's facts and those of the traces that were read."""
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
        **run_settings(m),
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
    contract.DEFAULT_MAX_TRACE_MB). Raises AnalyzeError when a path is missing or holds no traces,
    or no trace could be read.
    """
    runs, warnings = discover(paths)
    tasks = trace_tasks(runs, stage_map, max_trace_mb)
    read: dict[str, list[TraceTables]] = {run.run_id: [] for run in runs}
    skipped: dict[str, int] = dict.fromkeys(read, 0)
    reasons: list[str] = []
    for task, result in zip(tasks, map_traces(safe_analyze, tasks, jobs, progress), strict=True):
        if isinstance(result, str):
            reasons.append(result)
            warnings.append(f"{result} - skipped")
            skipped[task.run_id] += 1
        else:
            read[task.run_id].append(result)
            warnings.extend(result.warnings)
    if not any(read.values()):
        raise NothingReadable.of(len(tasks), reasons, warnings)
    all_read = [r for run in runs for r in read[run.run_id]]
    tables = Tables(
        runs=conform(pd.DataFrame([run_row(r, read[r.run_id], skipped[r.run_id]) for r in runs]), "runs"),
        samples=_concat([r.samples for r in all_read], "samples"),
        stages=_concat([r.stages for r in all_read], "stages"),
        tokens=_concat([r.tokens for r in all_read], "tokens"),
        ops=_concat([r.ops for r in all_read], "ops"),
    )
    return tables, warnings


def write_tables(tables: Tables, out_dir: Path) -> list[Path]:
    """Write ``tables`` to ``out_dir`` as the current set of Parquet datasets, partitioned by run_id
    (analyze.store: a new snapshot, swapped in atomically); returns the five table folders."""
    from analyze import store

    return store.write_tables(tables, out_dir)


def read_tables(out_dir: Path, only: Collection[str] | None = None) -> Tables:
    """The five tables ``analyze`` (or ``write_tables``) wrote to ``out_dir``, with the dtypes of
    contract.TABLE_SCHEMAS: always one whole set, the old or the new one while a new analysis
    replaces it. Tables not named in ``only`` come back empty (the summary needs no ops)."""
    from analyze import store

    return store.read_tables(out_dir, only)
