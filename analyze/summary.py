"""The numbers of an analysis: per-run metrics and the summaries the terminal and the report show.

Pure functions over the tables, returning DataFrames; no text, no HTML, no plotting. The one
per-run metrics function, :func:`run_metrics`, feeds both the terminal summary and the report's
"at a glance" table, so the two always show the same numbers. Its headline statistic is the
median over a run's samples; means and percentiles are there for the spread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analyze import vocabulary as voc
from analyze.tables import Tables
from analyze.trace_tables import stage_sort_key

# samples.parquet's stage columns, in display order, with a label each; they add up to total_ms.
STAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("load_ms", "load"),
    ("preprocess_ms", "preprocess"),
    ("vision_ms", "vision"),
    ("prefill_ms", "prefill"),
    ("decode_ms", "decode"),
    ("other_ms", "other (generate)"),
    ("unlabelled_ms", "unlabelled"),
)

RUN_METRIC_COLUMNS = (
    "run_id",
    "model",
    "n_samples",
    "total_ms",
    "total_mean_ms",
    "total_p90_ms",
    "ttft_ms",
    "ttft_mean_ms",
    "ttft_p90_ms",
    "tpot_ms",
    "tpot_mean_ms",
    "tpot_p90_ms",
    "tpot_p99_ms",
    "n_decode_tokens",
    "tokens",
    "tokens_per_s",
    "vision_ms",
    "vision_share_host",
    "llm_share_host",
    "vision_share_gpu",
    "llm_share_gpu",
    "largest_stage",
    "gpu_kernel_mean_ms",
    "gpu_busy_mean_ms",
    "unattributed_gpu_ms",
    "prefill_tokens",
    "new_tokens",
    "kv_cache_mb",
    "peak_mem_mb",
)
# Per-sample facts from run.json, headlined like the times: the median over the run's samples.
OUTCOME_METRICS = ("prefill_tokens", "new_tokens", "kv_cache_mb", "peak_mem_mb")
# headline column -> its ratio column in comparison_table
RATIO_COLUMNS: dict[str, str] = {
    "total_ms": "total_ratio",
    "ttft_ms": "ttft_ratio",
    "tpot_ms": "tpot_ratio",
    "vision_ms": "vision_ratio",
    "tokens_per_s": "tokens_per_s_ratio",
}


def run_metrics(tables: Tables, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run (RUN_METRIC_COLUMNS), in the order of ``run_ids`` (default: the runs table's).

    Headline, the median over the run's samples: total_ms (wall), ttft_ms, tpot_ms (each
    sample's mean time per decode token), tokens_per_s (each sample's tokens / generate() time),
    vision_ms. Spread: total_mean_ms, total_p90_ms, ttft_mean_ms, ttft_p90_ms over samples;
    tpot_mean_ms, tpot_p90_ms, tpot_p99_ms pooled over every decode token of the run
    (n_decode_tokens). Shares of vision + LLM time (host self time, GPU kernel time) are means of
    the samples' shares; largest_stage is the stage column with the largest median share of wall
    time. gpu_kernel_mean_ms and gpu_busy_mean_ms are means per sample (means, so that the stage
    table's means add up to them); tokens and unattributed_gpu_ms are sums over the samples.
    prefill_tokens, new_tokens, kv_cache_mb and peak_mem_mb are medians over the samples that
    have them (run.json's per-sample outcome; NaN without one).
    """
    ids = [str(r) for r in (tables.runs["run_id"] if run_ids is None else run_ids)]
    index = pd.Index(ids, name="run_id")
    samples = tables.samples.loc[tables.samples["run_id"].isin(ids)]
    by_run = samples.groupby("run_id", sort=False)
    medians = by_run[["total_ms", "ttft_ms", "tpot_ms", "tokens_per_s", "vision_ms"]].median()
    means = by_run[
        [
            "total_ms",
            "ttft_ms",
            "vision_share_host",
            "llm_share_host",
            "vision_share_gpu",
            "llm_share_gpu",
            "gpu_kernel_ms",
            "gpu_busy_ms",
        ]
    ].mean()
    p90 = by_run[["total_ms", "ttft_ms"]].quantile(0.9)
    outcome = samples[list(OUTCOME_METRICS)].astype("float64").groupby(samples["run_id"], sort=False).median()
    sums = by_run[["tokens", "unattributed_gpu_ms"]].sum()
    tokens = tables.tokens
    decode = tokens.loc[tokens["run_id"].isin(ids) & (tokens["step"] > 0)].groupby("run_id")["latency_ms"]
    out = pd.DataFrame(
        {
            "model": tables.runs.set_index("run_id")["model"].reindex(index),
            "n_samples": by_run.size().reindex(index).fillna(0).astype("int64"),
            "total_ms": medians["total_ms"].reindex(index),
            "total_mean_ms": means["total_ms"].reindex(index),
            "total_p90_ms": p90["total_ms"].reindex(index),
            "ttft_ms": medians["ttft_ms"].reindex(index),
            "ttft_mean_ms": means["ttft_ms"].reindex(index),
            "ttft_p90_ms": p90["ttft_ms"].reindex(index),
            "tpot_ms": medians["tpot_ms"].reindex(index),
            "tpot_mean_ms": decode.mean().reindex(index),
            "tpot_p90_ms": decode.quantile(0.9).reindex(index),
            "tpot_p99_ms": decode.quantile(0.99).reindex(index),
            "n_decode_tokens": decode.count().reindex(index).fillna(0).astype("int64"),
            "tokens": sums["tokens"].reindex(index).fillna(0).astype("int64"),
            "tokens_per_s": medians["tokens_per_s"].reindex(index),
            "vision_ms": medians["vision_ms"].reindex(index),
            "vision_share_host": means["vision_share_host"].reindex(index),
            "llm_share_host": means["llm_share_host"].reindex(index),
            "vision_share_gpu": means["vision_share_gpu"].reindex(index),
            "llm_share_gpu": means["llm_share_gpu"].reindex(index),
            "largest_stage": _largest_stage(samples).reindex(index),
            "gpu_kernel_mean_ms": means["gpu_kernel_ms"].reindex(index),
            "gpu_busy_mean_ms": means["gpu_busy_ms"].reindex(index),
            "unattributed_gpu_ms": sums["unattributed_gpu_ms"].reindex(index).fillna(0.0),
            **{c: outcome[c].reindex(index) for c in OUTCOME_METRICS},
        },
        index=index,
    )
    return out.reset_index()[list(RUN_METRIC_COLUMNS)]


def _largest_stage(samples: pd.DataFrame) -> pd.Series:
    """Per run, the label of the stage column with the largest median share of wall time."""
    cols = [c for c, _ in STAGE_COLUMNS]
    shares = samples[cols].div(samples["total_ms"].where(samples["total_ms"] > 0), axis=0)
    median_shares = shares.groupby(samples["run_id"], sort=False).median()
    largest = median_shares.fillna(-1.0).idxmax(axis=1).map(dict(STAGE_COLUMNS))
    return largest.where(median_shares.notna().any(axis=1)).astype(object)


def comparison_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` (rows of run_metrics) with each headline's ratio to the first row's.

    Adds RATIO_COLUMNS (total_ratio, ttft_ratio, tpot_ratio, vision_ratio, tokens_per_s_ratio);
    NaN where the first run's value is missing or zero. The order of the rows picks the baseline.
    """
    out = metrics.reset_index(drop=True).copy()
    for col, ratio in RATIO_COLUMNS.items():
        base = float(out[col].iloc[0]) if len(out) else np.nan
        out[ratio] = out[col] / base if base and np.isfinite(base) else np.nan
    return out


def stage_summary(tables: Tables, run_id: str) -> pd.DataFrame:
    """Per stage of one run: host self ms (mean, p50, p90 over its samples, 0 where a sample
    lacks the stage), mean GPU kernel ms, and share of the mean wall time (means add up)."""
    columns = ["stage", "host_self_ms", "host_self_p50_ms", "host_self_p90_ms", "gpu_kernel_ms", "share"]
    run_samples = tables.samples.loc[tables.samples["run_id"] == run_id]
    stages = tables.stages[tables.stages["run_id"] == run_id]
    seen = list(dict.fromkeys(stages["stage"]))
    if not seen:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "stage" else "float64") for c in columns})
    order = sorted(seen, key=lambda stage: stage_sort_key(stage, seen.index(stage)))
    wide = stages.pivot_table(
        index="sample_id", columns="stage", values=["host_self_ms", "gpu_kernel_ms"], aggfunc="sum"
    ).reindex(index=run_samples["sample_id"], fill_value=0.0)
    wide = wide.fillna(0.0)
    host = wide["host_self_ms"].reindex(columns=order)
    mean_ms = host.mean()
    total_ms = run_samples["total_ms"].mean()
    out = pd.DataFrame(
        {
            "stage": order,
            "host_self_ms": mean_ms.to_numpy(),
            "host_self_p50_ms": host.quantile(0.5).to_numpy(),
            "host_self_p90_ms": host.quantile(0.9).to_numpy(),
            "gpu_kernel_ms": wide["gpu_kernel_ms"].reindex(columns=order).mean().to_numpy(),
            "share": (mean_ms / total_ms).to_numpy() if total_ms > 0 else np.nan,
        }
    )
    return out[columns]


def stage_medians(samples: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """Median ms per sample of each STAGE_COLUMNS stage: one row per run (index run_id, in the
    order given), one column per stage label; NaN for a run without samples."""
    cols = [c for c, _ in STAGE_COLUMNS]
    sub = samples.loc[samples["run_id"].isin(run_ids)]
    medians = sub.groupby("run_id", sort=False)[cols].median().reindex(list(run_ids))
    return medians.rename(columns=dict(STAGE_COLUMNS))


def token_latency_bands(tokens: pd.DataFrame) -> pd.DataFrame:
    """Per run and decode step (step >= 1): median, p10 and p90 of latency_ms over samples."""
    dec = tokens.loc[tokens["step"] >= 1]
    grouped = dec.groupby(["run_id", "step"], sort=True)["latency_ms"]
    out = pd.DataFrame(
        {
            "median_ms": grouped.median(),
            "p10_ms": grouped.quantile(0.1),
            "p90_ms": grouped.quantile(0.9),
            "n_samples": grouped.size(),
        }
    )
    return out.reset_index()


def top_ops(ops: pd.DataFrame, run_id: str, kind: str, n_samples: int, *, top: int = 5) -> pd.DataFrame:
    """The ``top`` names of ``kind`` per stage of a run by mean time per sample.

    Columns: stage, name, per_sample_ms, count_per_sample, share (of the stage's ``kind`` time);
    stages in vocabulary order, then any stage-map names.
    """
    sub = ops.loc[(ops["run_id"] == run_id) & (ops["kind"] == kind)]
    grouped = sub.groupby(["stage", "name"], as_index=False)[["total_us", "count"]].sum()
    per = max(n_samples, 1)
    grouped["per_sample_ms"] = grouped["total_us"] / per / 1000.0
    grouped["count_per_sample"] = grouped["count"] / per
    grouped["share"] = grouped["total_us"] / grouped.groupby("stage")["total_us"].transform("sum")
    order = {s: i for i, s in enumerate(voc.STAGE_ORDER)}
    grouped["stage_order"] = grouped["stage"].map(order).fillna(len(order))
    grouped = grouped.sort_values(["stage_order", "stage", "total_us"], ascending=[True, True, False])
    out = grouped.groupby("stage", sort=False).head(top)
    return out[["stage", "name", "per_sample_ms", "count_per_sample", "share"]].reset_index(drop=True)


def ops_kind(ops: pd.DataFrame, run: pd.Series) -> str:
    """The ops kind a run's section ranks: "kernel" where the run has GPU kernels, else "cpu_op"."""
    has_kernels = bool(((ops["run_id"] == run["run_id"]) & (ops["kind"] == "kernel")).any())
    return "kernel" if bool(run["has_gpu"]) and has_kernels else "cpu_op"


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
