"""One trace -> its rows of the samples, stages, tokens and ops tables.

This is the work a ``--jobs`` worker does: parse, attribute, aggregate, and hand back small
DataFrames (one row per stage, step or op name, never per event).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from analyze import bound
from analyze import vocabulary as voc
from analyze.attribute import Attribution, attribute, union_us
from analyze.contract import SampleOutcome
from analyze.parse import (
    CPU_OP,
    CUDA_DRIVER,
    CUDA_RUNTIME,
    KERNEL,
    USER_ANNOTATION,
    Trace,
    read_trace,
)
from analyze.stagemap import StageMap
from analyze.tokens import generate_span_us, token_steps

# Host event kinds listed in the ops table (stage labels themselves are left out).
HOST_OP_KINDS = (CPU_OP, CUDA_RUNTIME, CUDA_DRIVER, USER_ANNOTATION)
# Stages that exist only as residuals: their host_ms is their self time.
RESIDUAL_STAGES = (voc.OTHER, voc.UNLABELLED, voc.UNATTRIBUTED)


class SampleFacts(NamedTuple):
    """What run.json says of a trace's sample that the trace itself cannot: its samples-table
    columns prompt, prefill_tokens, new_tokens, kv_cache_mb and peak_mem_mb."""

    prompt: str
    prefill_tokens: int | None
    new_tokens: int | None
    kv_cache_mb: float | None
    peak_mem_mb: float | None

    @classmethod
    def of(cls, outcome: SampleOutcome) -> SampleFacts:
        return cls(*(getattr(outcome, field) for field in cls._fields))

    def row(self) -> dict[str, object]:
        """The samples-table values ("" / NA / NaN for what run.json did not record)."""
        return {
            "prompt": self.prompt or "",
            "prefill_tokens": pd.NA if self.prefill_tokens is None else self.prefill_tokens,
            "new_tokens": pd.NA if self.new_tokens is None else self.new_tokens,
            "kv_cache_mb": np.nan if self.kv_cache_mb is None else self.kv_cache_mb,
            "peak_mem_mb": np.nan if self.peak_mem_mb is None else self.peak_mem_mb,
        }


NO_FACTS = SampleFacts("", None, None, None, None)


@dataclass(frozen=True)
class TraceTask:
    """What a worker needs to analyse one trace."""

    path: Path
    run_id: str
    model: str
    sample_id: str
    order: int  # position of the trace in its run: the sample index when no label gives one
    manifest_index: int | None  # the index run.json gives this trace, if any
    stage_map: StageMap | None
    outcome: SampleFacts | None = None  # what run.json records of this trace's sample, if any
    max_bytes: int | None = None  # refuse a trace larger than this uncompressed (parse's default)


@dataclass(frozen=True)
class TraceTables:
    """The rows one trace contributes (samples: one row)."""

    samples: pd.DataFrame
    stages: pd.DataFrame
    tokens: pd.DataFrame
    ops: pd.DataFrame
    gpu_name: str
    has_gpu: bool
    warnings: tuple[str, ...] = ()  # what reading the trace dropped (parse.Trace.warnings)


def analyze_trace(task: TraceTask) -> TraceTables:
    """Parse and attribute one trace file; raises AnalyzeError when it cannot be read."""
    trace = read_trace(task.path, task.max_bytes)
    attr = attribute(trace, task.stage_map)
    return trace_tables(trace, attr, task)


def _keyed(task: TraceTask, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the run and sample keys first and the model last."""
    keyed = rows.assign(run_id=task.run_id, sample_id=task.sample_id, model=task.model)
    return keyed[["run_id", "sample_id", *rows.columns, "model"]]


def stage_rows(trace: Trace, attr: Attribution, act: bound.Activity | None = None) -> pd.DataFrame:
    """Per-stage host and device totals, verdict and its evidence, of one trace (no key columns).

    ``act``: the trace's :func:`bound.activity`, if already computed."""
    n_stages = len(attr.stage_names)
    labels = attr.labels
    code = {s: i for i, s in enumerate(attr.stage_names)}
    l_stage = labels["stage"].map(code).to_numpy(np.int64)
    # Inclusive host span: union of the stage's labels per thread, summed over threads.
    threads, th_code = np.unique(labels["thread"].to_numpy(), return_inverse=True)
    n_threads = max(len(threads), 1)
    l_start, l_end = labels["start_us"].to_numpy(), labels["end_us"].to_numpy()
    span = union_us(l_stage * n_threads + th_code, l_start, l_end, n_stages * n_threads)
    host_us = span.reshape(n_stages, n_threads).sum(axis=1)
    n_labels = np.bincount(l_stage, minlength=n_stages)
    n_host_ops = np.bincount(attr.op_stage, minlength=n_stages)

    d = attr.dev_index
    d_stage = attr.dev_stage
    d_start, d_dur = trace.ts_us[d], trace.dur_us[d]
    is_kernel = trace.cat.isin(KERNEL)[d]
    kernel_us = np.bincount(d_stage, weights=np.where(is_kernel, d_dur, 0.0), minlength=n_stages)
    memcpy_us = np.bincount(d_stage, weights=np.where(is_kernel, 0.0, d_dur), minlength=n_stages)
    busy_us = union_us(d_stage, d_start, d_start + d_dur, n_stages)
    first = np.full(n_stages, np.inf)
    last = np.full(n_stages, -np.inf)
    np.minimum.at(first, d_stage, d_start)
    np.maximum.at(last, d_stage, d_start + d_dur)
    span_us = np.where(np.isfinite(first), last - first, 0.0)
    n_kernels = np.bincount(d_stage[is_kernel], minlength=n_stages)
    n_device = np.bincount(d_stage, minlength=n_stages)

    self_us = np.array([attr.self_us.get(s, 0.0) for s in attr.stage_names])
    residual = np.isin(np.asarray(attr.stage_names, dtype=object), RESIDUAL_STAGES)
    host_us = np.where(residual, self_us, host_us)
    rows = pd.DataFrame(
        {
            "stage": list(attr.stage_names),
            "host_ms": host_us / 1000.0,
            "host_self_ms": self_us / 1000.0,
            "gpu_kernel_ms": kernel_us / 1000.0,
            "gpu_memcpy_ms": memcpy_us / 1000.0,
            "gpu_busy_ms": busy_us / 1000.0,
            "gpu_span_ms": span_us / 1000.0,
            "n_labels": n_labels.astype(np.int64),
            "n_host_ops": n_host_ops.astype(np.int64),
            "n_kernels": n_kernels.astype(np.int64),
            "n_device_events": n_device.astype(np.int64),
        }
    )
    evidence = bound.stage_evidence(trace, attr, act)
    rows = pd.concat([rows, evidence], axis=1)
    occurs = (n_labels > 0) | (n_host_ops > 0) | (n_device > 0) | (np.abs(self_us) > 0)
    order = sorted(np.flatnonzero(occurs).tolist(), key=lambda i: stage_sort_key(attr.stage_names[i], i))
    return rows.iloc[order].reset_index(drop=True)


def stage_sort_key(stage: str, appearance: int) -> tuple[int, int]:
    """Display order: built-in stages in pipeline order, then a stage map's stages in order of
    appearance, then the residuals (stage4:other, unlabelled, unattributed)."""
    if stage in RESIDUAL_STAGES:
        return 2, voc.STAGE_ORDER.index(stage)
    if stage in voc.STAGE_ORDER:
        return 0, voc.STAGE_ORDER.index(stage)
    return 1, appearance


def op_rows(trace: Trace, attr: Attribution) -> pd.DataFrame:
    """Count, total and mean time per (stage, kind, name) of host ops and device events."""
    host_keep = trace.cat.isin(*HOST_OP_KINDS)[attr.op_index]
    index = np.concatenate([attr.op_index[host_keep], attr.dev_index])
    stage = np.concatenate([attr.op_stage[host_keep], attr.dev_stage])
    frame = pd.DataFrame(
        {
            "stage": stage,
            "kind": trace.cat.codes[index],
            "name": trace.name.codes[index],
            "dur": trace.dur_us[index],
        }
    )
    grouped = frame.groupby(["stage", "kind", "name"], sort=True)["dur"].agg(["size", "sum"]).reset_index()
    # Stages in display order; within a stage, the most time first.
    display = sorted(range(len(attr.stage_names)), key=lambda i: stage_sort_key(attr.stage_names[i], i))
    stage_rank = np.empty(len(display), dtype=np.int64)
    stage_rank[display] = np.arange(len(display))
    grouped = grouped.assign(rank=stage_rank[grouped["stage"].to_numpy()]).sort_values(
        ["rank", "sum"], ascending=[True, False], kind="stable"
    )
    return pd.DataFrame(
        {
            "stage": np.asarray(attr.stage_names, dtype=object)[grouped["stage"].to_numpy()],
            "kind": np.asarray(trace.cat.names, dtype=object)[grouped["kind"].to_numpy()],
            "name": np.asarray(trace.name.names, dtype=object)[grouped["name"].to_numpy()],
            "count": grouped["size"].to_numpy(np.int64),
            "total_us": grouped["sum"].to_numpy(np.float64),
            "mean_us": (grouped["sum"] / grouped["size"]).to_numpy(np.float64),
        }
    )


def _share(part: float, other: float) -> float:
    whole = part + other
    return part / whole if whole > 0 else float("nan")


def sample_row(
    trace: Trace, attr: Attribution, stages: pd.DataFrame, tokens: pd.DataFrame, device_timeline: bool
) -> dict[str, object]:
    """The samples-table values of one trace (no key columns)."""
    self_ms = dict(zip(stages["stage"], stages["host_self_ms"], strict=True))
    kernel_ms = dict(zip(stages["stage"], stages["gpu_kernel_ms"], strict=True))
    vision_stages = [s for s in self_ms if voc.is_vision_stage(s)]
    llm_stages = [s for s in self_ms if voc.is_llm_stage(s)]
    vision_ms = sum(self_ms[s] for s in vision_stages)
    llm_ms = sum(self_ms[s] for s in llm_stages)
    vision_gpu = sum(kernel_ms[s] for s in vision_stages)
    llm_gpu = sum(kernel_ms[s] for s in llm_stages)
    unattr = stages[stages["stage"] == voc.UNATTRIBUTED]
    gen = generate_span_us(attr)
    generate_ms = (gen[1] - gen[0]) / 1000.0 if gen is not None else float("nan")
    n_tokens = len(tokens)
    decode = tokens.loc[tokens["step"] > 0, "latency_ms"]
    first = tokens.loc[tokens["step"] == 0, "latency_ms"]
    d = attr.dev_index
    has_gpu = len(d) > 0
    busy = union_us(np.zeros(len(d), dtype=np.int64), trace.ts_us[d], trace.ts_us[d] + trace.dur_us[d], 1)
    return {
        "sample_index": attr.sample_index,
        "total_ms": (attr.window_us[1] - attr.window_us[0]) / 1000.0,
        "load_ms": self_ms.get(voc.LOAD, 0.0),
        "preprocess_ms": self_ms.get(voc.PREPROCESS, 0.0),
        "vision_ms": vision_ms,
        "prefill_ms": self_ms.get(voc.PREFILL, 0.0),
        "decode_ms": self_ms.get(voc.DECODE, 0.0),
        "other_ms": self_ms.get(voc.OTHER, 0.0),
        "unlabelled_ms": self_ms.get(voc.UNLABELLED, 0.0),
        "generate_ms": generate_ms,
        "gpu_kernel_ms": float(stages["gpu_kernel_ms"].sum()),
        "vision_gpu_ms": vision_gpu,
        "llm_gpu_ms": llm_gpu,
        "unattributed_gpu_ms": float((unattr["gpu_kernel_ms"] + unattr["gpu_memcpy_ms"]).sum()),
        "ttft_ms": float(first.iloc[0]) if len(first) else float("nan"),
        "tpot_ms": float(decode.mean()) if decode.notna().any() else float("nan"),
        "tokens": n_tokens,
        "tokens_per_s": n_tokens / generate_ms * 1000.0 if n_tokens and generate_ms > 0 else float("nan"),
        "vision_share_host": _share(vision_ms, llm_ms),
        "llm_share_host": _share(llm_ms, vision_ms),
        "vision_share_gpu": _share(vision_gpu, llm_gpu) if has_gpu else float("nan"),
        "llm_share_gpu": _share(llm_gpu, vision_gpu) if has_gpu else float("nan"),
        "timeline": "device" if device_timeline or (n_tokens == 0 and has_gpu) else "host",
        "gpu_busy_ms": float(busy[0]) / 1000.0,
    }


def trace_tables(trace: Trace, attr: Attribution, task: TraceTask) -> TraceTables:
    """All table rows of one attributed trace, keyed by the task's run and sample."""
    act = bound.activity(trace, attr)
    stages = stage_rows(trace, attr, act)
    tokens, device_timeline = token_steps(trace, attr, act)
    ops = op_rows(trace, attr)
    row = sample_row(trace, attr, stages, tokens, device_timeline)
    if row["sample_index"] is None:
        row["sample_index"] = task.manifest_index if task.manifest_index is not None else task.order
    samples = pd.DataFrame(
        {
            "run_id": [task.run_id],
            "sample_id": [task.sample_id],
            "sample_index": [row.pop("sample_index")],
            "trace_file": [task.path.name],
            "model": [task.model],
            **{k: [v] for k, v in row.items()},
            "gpu_name": [trace.gpu_name],
            **{k: [v] for k, v in (task.outcome or NO_FACTS).row().items()},
        }
    )
    return TraceTables(
        samples=samples,
        stages=_keyed(task, stages),
        tokens=_keyed(task, tokens),
        ops=_keyed(task, ops),
        gpu_name=trace.gpu_name,
        has_gpu=len(attr.dev_index) > 0,
        warnings=trace.warnings,
    )
