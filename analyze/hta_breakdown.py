"""HolisticTraceAnalysis (HTA) on a run's traces: temporal, kernel and idle-time breakdowns.

HTA is Meta's trace analyser for Kineto GPU traces. It answers questions stagetrace's own
attribution does not (how much of the GPU's span is idle, and whether the idle time is the host
not launching work fast enough). HTA knows nothing about samples: it reads one trace per
distributed *rank* and keys everything by rank. stagetrace's run folders hold one trace per
sample, so each sample's trace is given to its own TraceAnalysis as rank 0, through an explicit
{rank: file} map (HTA never lists the run folder, where run.json and analysis/ would confuse
its rank parsing), and the rank is mapped back to the sample id. One odd trace thus cannot
spoil the others, and HTA's cross-rank alignment and ProfilerStep filtering never mix samples.

Every function returns plain DataFrames with stagetrace's column names (units in the names);
plotting is the report's job. HTA is optional at run time: when it is missing or fails, the
functions raise AnalyzeError with a one-line reason. :func:`compute_hta` runs HTA on every GPU
run of an analysis and keeps that reason per run; the CLI calls it before rendering, and the
report only draws what it returns (no rendering module imports this one).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analyze.errors import AnalyzeError, describe

if TYPE_CHECKING:
    from analyze.tables import Tables

# HTA parses every trace it is given into memory; a long run is summarised from an evenly
# spaced subset of its samples so that the report stays quick and bounded in memory.
MAX_SAMPLES = 16

TEMPORAL_COLUMNS = (
    "run_id",
    "sample_id",
    "idle_us",
    "compute_us",
    "non_compute_us",
    "gpu_span_us",
    "idle_share",
    "compute_share",
    "non_compute_share",
)
KERNEL_TYPE_COLUMNS = ("run_id", "kernel_type", "total_us", "share")
KERNEL_COLUMNS = (
    "run_id",
    "sample_id",
    "kernel_type",
    "name",
    "total_us",
    "mean_us",
    "min_us",
    "max_us",
    "std_us",
)
IDLE_COLUMNS = ("run_id", "sample_id", "stream", "idle_category", "idle_us", "idle_share")


@dataclass(frozen=True)
class HtaTables:
    """HTA's breakdowns of one run, keyed by run_id and sample_id like stagetrace's tables.

    temporal: one row per sample: idle, compute and non-compute (memory, communication) time
      within the GPU span (first kernel start to last kernel end), and their shares of it.
    kernel_types: one row per HTA kernel type (COMPUTATION, MEMORY, COMMUNICATION): total
      time over the samples analysed and its share.
    kernels: one row per sample x kernel: HTA's most time-consuming kernels per type (the
      rest folded into a row named "others").
    idle: one row per sample x stream x idle category (host_wait, kernel_wait, other).
    top_kernels: kernel_summary of ``kernels`` (the top kernels by time per sample).
    stream_idle: idle_by_stream of ``idle`` (idle ms per stream and category, over the samples).
    sample_ids: the samples HTA analysed (at most MAX_SAMPLES of the run).
    failures: one line per sample HTA failed on: ``sample_id: Error: reason``.
    """

    temporal: pd.DataFrame
    kernel_types: pd.DataFrame
    kernels: pd.DataFrame
    idle: pd.DataFrame
    top_kernels: pd.DataFrame
    stream_idle: pd.DataFrame
    sample_ids: tuple[str, ...]
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class HtaResults:
    """HTA's breakdowns of the GPU runs of an analysis, computed before a report is rendered.

    version: the installed HolisticTraceAnalysis version (None: not installed).
    runs: run_id -> its HtaTables, or the one-line reason HTA could not analyse it (not
      installed, no trace file left, failed on every trace). CPU-only runs have no entry.
    """

    version: str | None
    runs: Mapping[str, HtaTables | str]


def hta_version() -> str | None:
    """The installed HolisticTraceAnalysis version, None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("HolisticTraceAnalysis")
    except metadata.PackageNotFoundError:
        return None


def select_traces(
    runs: pd.DataFrame, samples: pd.DataFrame, run_id: str, *, max_samples: int = MAX_SAMPLES
) -> dict[str, Path]:
    """{sample_id: trace path} of up to ``max_samples`` evenly spaced samples of ``run_id``.

    Paths are runs.trace_dir / samples.trace_file, in sample order. Raises AnalyzeError
    when the run is unknown or none of its trace files exists any more.
    """
    run = runs.loc[runs["run_id"] == run_id]
    if run.empty:
        raise AnalyzeError(f"run {run_id!r} is not in the runs table; pass a run_id it lists")
    trace_dir = Path(str(run["trace_dir"].iloc[0]))
    rows = samples.loc[samples["run_id"] == run_id].sort_values(["sample_index", "sample_id"])
    if len(rows) > max_samples:
        picks = np.unique(np.linspace(0, len(rows) - 1, max_samples).round().astype(int))
        rows = rows.iloc[picks]
    paths = {
        str(sid): trace_dir / str(name)
        for sid, name in zip(rows["sample_id"], rows["trace_file"], strict=True)
    }
    existing = {sid: p for sid, p in paths.items() if p.is_file()}
    if not existing:
        raise AnalyzeError(
            f"no trace file of run {run_id!r} found in {trace_dir}; analyse the run where its traces are"
        )
    return existing


@contextlib.contextmanager
def _quiet_hta() -> Iterator[None]:
    """Silence HTA's per-file INFO/WARNING chatter (it logs through the "hta" logger)."""
    logger = logging.getLogger("hta")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _by_sample(df: pd.DataFrame, rank_to_sample: Mapping[int, str], run_id: str) -> pd.DataFrame:
    """Replace HTA's rank column by run_id and sample_id."""
    out = df.drop(columns=["rank"]).copy()
    out.insert(0, "sample_id", df["rank"].map(rank_to_sample).astype(str).to_numpy())
    out.insert(0, "run_id", run_id)
    return out.reset_index(drop=True)


def temporal_table(raw: pd.DataFrame, rank_to_sample: Mapping[int, str], run_id: str) -> pd.DataFrame:
    """stagetrace's temporal table from HTA's get_temporal_breakdown() frame."""
    df = raw.rename(
        columns={
            "idle_time(us)": "idle_us",
            "compute_time(us)": "compute_us",
            "non_compute_time(us)": "non_compute_us",
            "kernel_time(us)": "gpu_span_us",
        }
    )
    df = df[["rank", "idle_us", "compute_us", "non_compute_us", "gpu_span_us"]].astype(
        {"idle_us": "float64", "compute_us": "float64", "non_compute_us": "float64", "gpu_span_us": "float64"}
    )
    span = df["gpu_span_us"].where(df["gpu_span_us"] > 0)
    for part in ("idle", "compute", "non_compute"):
        df[f"{part}_share"] = df[f"{part}_us"] / span
    return _by_sample(df, rank_to_sample, run_id)[list(TEMPORAL_COLUMNS)]


def kernel_type_table(raw: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """stagetrace's kernel-type table from the first frame of get_gpu_kernel_breakdown()."""
    total = raw["sum"].astype("float64")
    out = pd.DataFrame(
        {
            "run_id": run_id,
            "kernel_type": raw["kernel_type"].astype(str).to_numpy(),
            "total_us": total.to_numpy(),
            "share": (total / total.sum()).to_numpy() if total.sum() > 0 else np.nan,
        }
    )
    return out.sort_values("total_us", ascending=False, ignore_index=True)[list(KERNEL_TYPE_COLUMNS)]


def kernel_table(raw: pd.DataFrame, rank_to_sample: Mapping[int, str], run_id: str) -> pd.DataFrame:
    """stagetrace's kernel table from the second frame of get_gpu_kernel_breakdown()."""
    df = raw.rename(
        columns={
            "sum (us)": "total_us",
            "mean (us)": "mean_us",
            "min (us)": "min_us",
            "max (us)": "max_us",
            "stddev": "std_us",
        }
    )
    df = df.astype({c: "float64" for c in ("total_us", "mean_us", "min_us", "max_us", "std_us")})
    df["kernel_type"] = df["kernel_type"].astype(str)
    df["name"] = df["name"].astype(str)
    return _by_sample(df, rank_to_sample, run_id)[list(KERNEL_COLUMNS)]


def idle_table(raw: pd.DataFrame, rank_to_sample: Mapping[int, str], run_id: str) -> pd.DataFrame:
    """stagetrace's idle table from the first frame of get_idle_time_breakdown()."""
    df = raw.rename(columns={"idle_time": "idle_us", "idle_time_ratio": "idle_share"})
    df = df.astype({"idle_us": "float64", "idle_share": "float64", "stream": "int64"})
    df["idle_category"] = df["idle_category"].astype(str)
    return _by_sample(df, rank_to_sample, run_id)[list(IDLE_COLUMNS)]


def _one_sample(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """HTA's raw temporal, kernel-type, kernel and idle frames of one trace (as rank 0)."""
    from hta.trace_analysis import TraceAnalysis

    analysis = TraceAnalysis(
        trace_files={0: str(path)}, trace_dir=str(path.parent), include_last_profiler_step=True
    )
    temporal = analysis.get_temporal_breakdown(visualize=False)
    kernel_types, kernels = analysis.get_gpu_kernel_breakdown(visualize=False)
    idle, _ = analysis.get_idle_time_breakdown(ranks=[0], visualize=False)
    return temporal, kernel_types, kernels, idle


def run_hta(run_id: str, traces: Mapping[str, Path]) -> HtaTables:
    """HTA's temporal, kernel and idle-time breakdowns of one run's sample traces.

    ``traces`` maps sample_id to a Kineto trace file (see select_traces). Each trace is its
    own TraceAnalysis (as rank 0), so one odd trace cannot spoil the others and HTA's
    cross-rank alignment and ProfilerStep filtering never mix samples. The last profiler step
    is included (stagetrace traces have no ProfilerStep). A sample HTA fails on is listed in
    ``failures``; AnalyzeError (one-line reason) when HTA is not installed or fails on all.
    """
    if not traces:
        raise AnalyzeError(f"run {run_id!r}: no traces to give HTA")
    try:
        import hta.trace_analysis  # noqa: F401  (optional at run time)
    except ImportError as exc:
        raise AnalyzeError(
            f"HolisticTraceAnalysis is not installed ({exc}); pip install HolisticTraceAnalysis"
        ) from exc
    frames: dict[str, list[pd.DataFrame]] = {"temporal": [], "kernel_types": [], "kernels": [], "idle": []}
    ok: list[str] = []
    failures: list[str] = []
    with _quiet_hta():
        for sample_id, path in traces.items():
            rank = {0: sample_id}
            try:
                temporal, kernel_types, kernels, idle = _one_sample(Path(path).resolve())
                converted = (
                    temporal_table(temporal, rank, run_id),
                    kernel_types[["kernel_type", "sum"]],
                    kernel_table(kernels, rank, run_id),
                    idle_table(idle, rank, run_id),
                )
            except Exception as exc:  # HTA raises anything from AssertionError to IndexError
                failures.append(f"{sample_id}: {describe(exc)}")
                continue
            for key, frame in zip(frames, converted, strict=True):
                frames[key].append(frame)
            ok.append(sample_id)
    if not ok:
        raise AnalyzeError(f"HTA failed on every trace of run {run_id!r} ({failures[0]})")
    summed_types = (
        pd.concat(frames["kernel_types"], ignore_index=True)
        .groupby("kernel_type", as_index=False, sort=False)["sum"]
        .sum()
    )
    kernels = pd.concat(frames["kernels"], ignore_index=True)
    idle = pd.concat(frames["idle"], ignore_index=True)
    return HtaTables(
        temporal=pd.concat(frames["temporal"], ignore_index=True),
        kernel_types=kernel_type_table(summed_types, run_id),
        kernels=kernels,
        idle=idle,
        top_kernels=kernel_summary(kernels, len(ok)),
        stream_idle=idle_by_stream(idle),
        sample_ids=tuple(ok),
        failures=tuple(failures),
    )


def compute_hta(tables: Tables, *, max_samples: int = MAX_SAMPLES) -> HtaResults:
    """HTA's breakdowns of every GPU run of ``tables`` (select_traces, then run_hta).

    Reads the runs' trace files again (runs.trace_dir / samples.trace_file). A run HTA cannot
    analyse gets the one-line reason instead of its tables, so one failing run never hides the
    others; CPU-only runs are left out (HTA's breakdowns are of GPU time).
    """
    results: dict[str, HtaTables | str] = {}
    for run_id in tables.runs.loc[tables.runs["has_gpu"].astype(bool), "run_id"]:
        try:
            traces = select_traces(tables.runs, tables.samples, str(run_id), max_samples=max_samples)
            results[str(run_id)] = run_hta(str(run_id), traces)
        except AnalyzeError as exc:
            results[str(run_id)] = str(exc)
    return HtaResults(version=hta_version(), runs=results)


def kernel_summary(kernels: pd.DataFrame, n_samples: int, *, top: int = 12) -> pd.DataFrame:
    """The ``top`` kernels of a run by time per sample: kernel_type, name, per_sample_ms, share.

    ``kernels`` is HtaTables.kernels (one run); HTA's per-sample "others" rows are summed into
    one "others" row, kept last. share is of all kernel time listed by HTA.
    """
    if kernels.empty:
        return pd.DataFrame({"kernel_type": [], "name": [], "per_sample_ms": [], "share": []})
    grouped = kernels.groupby(["kernel_type", "name"], as_index=False, sort=False)["total_us"].sum()
    grouped["per_sample_ms"] = grouped["total_us"] / max(n_samples, 1) / 1000.0
    grouped["share"] = grouped["total_us"] / grouped["total_us"].sum()
    is_others = grouped["name"].eq("others")
    named = grouped.loc[~is_others].sort_values("total_us", ascending=False).head(top)
    out = pd.concat([named, grouped.loc[is_others]], ignore_index=True)
    return out[["kernel_type", "name", "per_sample_ms", "share"]]


def idle_by_stream(idle: pd.DataFrame) -> pd.DataFrame:
    """GPU idle time per stream and category, summed over a run's samples: stream, idle_category, idle_ms."""
    out = idle.groupby(["stream", "idle_category"], as_index=False)["idle_us"].sum()
    out["idle_ms"] = out["idle_us"] / 1000.0
    return out[["stream", "idle_category", "idle_ms"]]
