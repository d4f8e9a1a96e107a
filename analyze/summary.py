"""The terminal summary of an analysis: per-run metrics and a text rendering (DataFrames in, text out).

Per run: a stage table (host self time mean/p50/p90 over samples, GPU kernel time, share of
the wall time), vision-vs-LLM shares, TTFT, TPOT (mean, p50, p90, p99 over every decode token of
the run), tokens/s, and warnings (unattributed device time, missing labels, failed checks).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analyze import vocabulary as voc
from analyze.tables import Tables
from analyze.trace_tables import stage_sort_key

RUN_METRIC_COLUMNS = (
    "run_id",
    "model",
    "n_samples",
    "total_ms",
    "ttft_ms",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "tpot_ms",
    "tpot_p50_ms",
    "tpot_p90_ms",
    "tpot_p99_ms",
    "tokens",
    "tokens_per_s",
    "vision_share_host",
    "llm_share_host",
    "vision_share_gpu",
    "llm_share_gpu",
    "gpu_kernel_ms",
    "gpu_busy_ms",
    "unattributed_gpu_ms",
)


def _pct(values: pd.Series, q: float) -> float:
    values = values.dropna()
    return float(np.percentile(values, q)) if len(values) else math.nan


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def _share(part: float, other: float) -> float:
    whole = part + other
    return part / whole if whole > 0 else math.nan


def run_metrics(tables: Tables) -> pd.DataFrame:
    """One row per run (RUN_METRIC_COLUMNS): means over samples; TPOT percentiles pooled over
    every decode token of the run; tokens/s = all tokens / all generate() time; shares from
    the run's summed times."""
    rows = []
    for run in tables.runs.itertuples(index=False):
        s = tables.samples[tables.samples["run_id"] == run.run_id]
        t = tables.tokens[tables.tokens["run_id"] == run.run_id]
        decode = t.loc[t["step"] > 0, "latency_ms"]
        timed = s[s["generate_ms"].notna() & (s["tokens"] > 0)]
        gen_ms = float(timed["generate_ms"].sum())
        vision, llm = (
            float(s["vision_ms"].sum()),
            float(s[["prefill_ms", "decode_ms", "other_ms"]].sum().sum()),
        )
        vision_gpu, llm_gpu = float(s["vision_gpu_ms"].sum()), float(s["llm_gpu_ms"].sum())
        rows.append(
            {
                "run_id": run.run_id,
                "model": run.model,
                "n_samples": len(s),
                "total_ms": _mean(s["total_ms"]),
                "ttft_ms": _mean(s["ttft_ms"]),
                "ttft_p50_ms": _pct(s["ttft_ms"], 50),
                "ttft_p90_ms": _pct(s["ttft_ms"], 90),
                "tpot_ms": _mean(decode),
                "tpot_p50_ms": _pct(decode, 50),
                "tpot_p90_ms": _pct(decode, 90),
                "tpot_p99_ms": _pct(decode, 99),
                "tokens": int(s["tokens"].sum()),
                "tokens_per_s": timed["tokens"].sum() / gen_ms * 1000.0 if gen_ms > 0 else math.nan,
                "vision_share_host": _share(vision, llm),
                "llm_share_host": _share(llm, vision),
                "vision_share_gpu": _share(vision_gpu, llm_gpu) if run.has_gpu else math.nan,
                "llm_share_gpu": _share(llm_gpu, vision_gpu) if run.has_gpu else math.nan,
                "gpu_kernel_ms": _mean(s["gpu_kernel_ms"]),
                "gpu_busy_ms": _mean(s["gpu_busy_ms"]),
                "unattributed_gpu_ms": float(s["unattributed_gpu_ms"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(RUN_METRIC_COLUMNS))


def stage_summary(tables: Tables, run_id: str) -> pd.DataFrame:
    """Per stage of one run: host self ms (mean, p50, p90 over its samples, 0 where a sample
    lacks the stage), mean GPU kernel ms, and share of the mean wall time."""
    samples = tables.samples.loc[tables.samples["run_id"] == run_id, "sample_id"]
    stages = tables.stages[tables.stages["run_id"] == run_id]
    seen = list(dict.fromkeys(stages["stage"]))
    order = sorted(seen, key=lambda stage: stage_sort_key(stage, seen.index(stage)))
    wide = stages.pivot_table(
        index="sample_id", columns="stage", values=["host_self_ms", "gpu_kernel_ms"], aggfunc="sum"
    ).reindex(index=samples, fill_value=0.0)
    wide = wide.fillna(0.0)
    total = _mean(tables.samples.loc[tables.samples["run_id"] == run_id, "total_ms"])
    rows = []
    for stage in order:
        host = wide[("host_self_ms", stage)]
        rows.append(
            {
                "stage": stage,
                "host_self_ms": float(host.mean()),
                "host_self_p50_ms": _pct(host, 50),
                "host_self_p90_ms": _pct(host, 90),
                "gpu_kernel_ms": float(wide[("gpu_kernel_ms", stage)].mean()),
                "share": float(host.mean()) / total if total > 0 else math.nan,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["stage", "host_self_ms", "host_self_p50_ms", "host_self_p90_ms", "gpu_kernel_ms", "share"],
    )


def _failed(check: object) -> bool:
    """A manifest check that ran and failed (NA: not run or unknown)."""
    return not pd.isna(check) and not bool(check)


def summary_warnings(tables: Tables) -> list[str]:
    """What the reader must know: unattributed device time, missing labels, failed checks."""
    out = []
    for run in tables.runs.itertuples(index=False):
        s = tables.samples[tables.samples["run_id"] == run.run_id]
        st = tables.stages[tables.stages["run_id"] == run.run_id]
        if run.n_skipped:
            out.append(f"run {run.run_id}: {run.n_skipped} trace(s) could not be read and were skipped")
        unattributed = st[st["stage"] == voc.UNATTRIBUTED]
        if len(unattributed):
            ms = float((unattributed["gpu_kernel_ms"] + unattributed["gpu_memcpy_ms"]).sum())
            n = int(unattributed["n_device_events"].sum())
            out.append(f"run {run.run_id}: {n} device events ({ms:.3f} ms) have no launcher (unattributed)")
        labelled = st.loc[
            ~st["stage"].isin([voc.UNLABELLED, voc.UNATTRIBUTED]) & (st["n_labels"] > 0), "sample_id"
        ].unique()
        missing = len(s) - len(labelled)
        if missing:
            out.append(
                f"run {run.run_id}: {missing} of {len(s)} traces carry no stage labels, so all their "
                "host work is unlabelled (foreign traces: pass --stage NAME=REGEX or --stage-map)"
            )
        no_steps = int((s["generate_ms"].notna() & (s["tokens"] == 0)).sum())
        if no_steps:
            out.append(
                f"run {run.run_id}: {no_steps} traces have stage4:generate but no prefill/decode labels"
            )
        if _failed(run.identity_ok):
            out.append(
                f"run {run.run_id}: capture's identity check FAILED: tokens with labels and profiler "
                "differ from tokens without them (run.json verification.identity)"
            )
        if _failed(run.accounting_ok):
            out.append(
                f"run {run.run_id}: capture's accounting check FAILED (run.json verification.accounting)"
            )
    return out


def _num(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return text + unit


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _pc(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def format_run(tables: Tables, run_id: str, metrics: pd.Series) -> str:
    """The summary block of one run."""
    run = tables.runs[tables.runs["run_id"] == run_id].iloc[0]
    facts = [f"model {run['model']}" if run["model"] else "", run["mode"], run["device"], run["gpu_name"]]
    skipped = f", {run['n_skipped']} skipped" if run["n_skipped"] else ""
    header = "  ".join(
        [f"run {run_id}", *(f for f in facts if f), f"({_count(run['n_samples'], 'trace')}{skipped})"]
    )
    if not run["n_samples"]:
        return header + "\n  no trace of this run could be read"
    lines = [header]
    stages = stage_summary(tables, run_id)
    width = max([len("stage"), *stages["stage"].str.len()]) + 2
    head = f"  {'stage':<{width}}{'self ms':>10}{'p50':>10}{'p90':>10}{'GPU kernel ms':>15}{'share':>8}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for r in stages.itertuples(index=False):
        lines.append(
            f"  {r.stage:<{width}}{_num(r.host_self_ms):>10}{_num(r.host_self_p50_ms):>10}"
            f"{_num(r.host_self_p90_ms):>10}{_num(r.gpu_kernel_ms):>15}{_pc(r.share):>8}"
        )
    lines.append(
        f"  {'total (wall)':<{width}}{_num(metrics.total_ms):>10}{'':>20}{_num(metrics.gpu_kernel_ms):>15}"
    )
    m = metrics
    shares = []
    if not math.isnan(m.vision_share_host):
        shares.append(f"host {_pc(m.vision_share_host)} / {_pc(m.llm_share_host)}")
    if not math.isnan(m.vision_share_gpu):
        shares.append(f"GPU kernels {_pc(m.vision_share_gpu)} / {_pc(m.llm_share_gpu)}")
    if shares:
        lines.append("  vision vs LLM: " + ", ".join(shares))
    if run["has_gpu"]:
        lines.append(f"  GPU busy {_num(m.gpu_busy_ms, ' ms')} per sample (union over streams)")
    if m.tokens:
        timeline = "device" if run["has_gpu"] else "host"
        lines.append(
            f"  TTFT {_num(m.ttft_ms, ' ms')} (p50 {_num(m.ttft_p50_ms)}, p90 {_num(m.ttft_p90_ms)})"
        )
        lines.append(
            f"  TPOT {_num(m.tpot_ms, ' ms')} (p50 {_num(m.tpot_p50_ms)}, p90 {_num(m.tpot_p90_ms)}"
            f", p99 {_num(m.tpot_p99_ms)})   {_num(m.tokens_per_s)} tokens/s"
            f"   ({m.tokens} tokens, {timeline} timeline)"
        )
    else:
        lines.append("  no generation steps (no stage4:prefill / stage4:decode#k labels): no TTFT or TPOT")
    return "\n".join(lines)


def format_summary(tables: Tables) -> str:
    """The whole terminal summary: one block per run, then the warnings."""
    metrics = run_metrics(tables).set_index("run_id", drop=False)
    blocks = [format_run(tables, run_id, metrics.loc[run_id]) for run_id in tables.runs["run_id"]]
    warnings = summary_warnings(tables)
    if warnings:
        blocks.append("warnings:\n" + "\n".join(f"  - {w}" for w in warnings))
    return "\n\n".join(blocks)
