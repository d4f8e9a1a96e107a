"""The numbers of an analysis: per-run metrics and the summaries the terminal and the report show.

Pure functions over the tables, returning DataFrames; no text, no HTML, no plotting. The one
per-run metrics function, :func:`run_metrics`, feeds both the terminal summary and the report's
"at a glance" table, so the two always show the same numbers. Its headline statistic is the
median over a run's samples; means and percentiles are there for the spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze import bound
from analyze import vocabulary as voc
from analyze.contract import TIMING_SPREAD_LIMIT
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
        if run.mixed_devices:
            counts = s["gpu_name"].value_counts()
            names = ", ".join(f"{name} ({n})" for name, n in counts.items() if name)
            out.append(
                f"run {run.run_id}: its traces come from different devices ({names}); their times do not "
                "compare as one run: analyse each device's traces on their own"
            )
        spread = _timing_spread(s["generate_ms"])
        if spread is not None and spread > TIMING_SPREAD_LIMIT:
            out.append(
                f"run {run.run_id}: per-sample generate() time varies {spread:.1f}x (max/median): host "
                "timings are unreliable, most likely because other processes competed for the CPU "
                "(capture on an idle machine, or with --threads 1)"
            )
    return out


def _timing_spread(generate_ms: pd.Series) -> float | None:
    """max/median of the per-sample generate() times (None for fewer than 2 samples)."""
    values = generate_ms.dropna()
    if len(values) < 2 or float(values.median()) <= 0:
        return None
    return float(values.max() / values.median())


# ------------------------------------------------------------------------------------------ verdicts
# The usual remedy per (what, verdict), naming the capture option that tries it; "what" is a phase of
# the tokens table ("prefill", "decode") or a stage. Decode that already replays CUDA/HIP graphs has
# its own entry (GRAPHS_REMEDY): compiling again does not remove launches.
REMEDIES: dict[tuple[str, str], str] = {
    ("decode", bound.LAUNCH): "try --cache static --compile (CUDA graphs: one launch per step)",
    (
        "decode",
        bound.DEVICE,
    ): "try a smaller --dtype or --load-in 4bit|8bit (decode reads every weight per token)",
    (
        "decode",
        bound.SYNC,
    ): "find the host sync inside the step (.item(), .cpu(), .tolist()); no option removes it",
    ("prefill", bound.LAUNCH): "try --compile",
    ("prefill", bound.DEVICE): "try --attn-implementation sdpa|flash_attention_2 or a smaller --dtype",
    (voc.PREPROCESS, bound.HOST): "try fewer --frames or a faster preprocessing path",
}
GRAPHS_REMEDY = "already replayed as graphs: the remaining launches are outside the graph"
MATTERS_SHARE = 0.05  # a stage matters when its mean host self time is at least this share of the wall

VERDICT_COLUMNS = (
    "what",
    "unit",
    "bound",
    "n_bound",
    "n",
    "counts",
    "gpu_busy_share",
    "n_graph_launches",
    "remedy",
)


def _majority(bounds: pd.Series) -> tuple[str, dict[str, int]]:
    """The most common verdict (ties: VERDICTS order) and every verdict's count, most first."""
    counts = bounds[bounds != bound.NO_VERDICT].value_counts()
    rank = {v: i for i, v in enumerate(bound.VERDICTS)}
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], rank.get(kv[0], len(rank))))
    return (ordered[0][0] if ordered else bound.NO_VERDICT), {str(k): int(v) for k, v in ordered}


def _most_common(bounds: pd.Series) -> str:
    return _majority(bounds)[0]


def _verdict_groups(tables: Tables, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's tokens, and its stages less prefill and decode where the phases (from the tokens)
    stand for them."""
    tokens = tables.tokens.loc[tables.tokens["run_id"] == run_id]
    stages = tables.stages.loc[tables.stages["run_id"] == run_id]
    if not tokens.empty:
        stages = stages.loc[~stages["stage"].isin([voc.PREFILL, voc.DECODE])]
    return tokens, stages


def _remedy(what: str, verdict: str, n_graph_launches: float) -> str:
    if what == "decode" and verdict == bound.LAUNCH and n_graph_launches > 0:
        return GRAPHS_REMEDY
    return REMEDIES.get((what, verdict), "")


def verdict_name(verdict: str) -> str:
    """``launch`` -> ``launch-bound``; ``mixed`` (and no verdict, "") stay as they are."""
    return verdict if verdict in ("mixed", "") else f"{verdict}-bound"


def other_verdicts(row: pd.Series) -> list[str]:
    """The verdicts of a verdict_summary row besides its majority, e.g. ``["sync-bound in 2"]``."""
    return [f"{verdict_name(v)} in {n}" for v, n in row["counts"].items() if v != row["bound"]]


def verdict_summary(tables: Tables, run_id: str) -> pd.DataFrame:
    """One row per phase or stage that matters in a run (VERDICT_COLUMNS), in pipeline order.

    Phases come from the tokens table: ``prefill`` and ``decode``, counted over steps (unit
    "steps"). Stages come from the stages table, counted over samples (unit "samples"): every
    stage whose mean host self time is at least MATTERS_SHARE of the mean wall time, except
    ``unattributed``, vision's sub-stages, and prefill/decode where the phases stand for them.
    ``bound`` is the most common verdict, ``n_bound`` how often it occurred out of ``n``, ``counts``
    every verdict's count; ``gpu_busy_share`` is the median over the steps or samples;
    ``remedy`` the usual one (REMEDIES), "" where none applies.
    """
    tokens, stages = _verdict_groups(tables, run_id)
    rows: list[tuple[tuple[int, int], dict[str, object]]] = []
    for phase, sub in tokens.groupby("phase", sort=False):
        rows.append((_phase_key(str(phase)), _verdict_row(str(phase), "steps", sub)))
    shares = stage_summary(tables, run_id).set_index("stage")["share"]
    seen = list(dict.fromkeys(stages["stage"]))
    for stage, sub in stages.groupby("stage", sort=False):
        stage = str(stage)
        part = voc.is_vision_stage(stage) and stage != voc.VISION
        if part or stage == voc.UNATTRIBUTED or not shares.get(stage, 0.0) >= MATTERS_SHARE:
            continue
        rows.append((stage_sort_key(stage, seen.index(stage)), _verdict_row(stage, "samples", sub)))
    rows.sort(key=lambda r: r[0])
    out = pd.DataFrame([r for _, r in rows], columns=list(VERDICT_COLUMNS))
    return out.astype({"n_bound": "int64", "n": "int64", "gpu_busy_share": "float64"})


def _phase_key(phase: str) -> tuple[int, int]:
    return stage_sort_key(voc.PREFILL if phase == "prefill" else voc.DECODE, 0)


def _verdict_row(what: str, unit: str, rows: pd.DataFrame) -> dict[str, object]:
    verdict, counts = _majority(rows["bound"])
    graphs = float(rows["n_graph_launches"].mean()) if len(rows) else 0.0
    return {
        "what": what,
        "unit": unit,
        "bound": verdict,
        "n_bound": counts.get(verdict, 0),
        "n": len(rows),
        "counts": counts,
        "gpu_busy_share": float(rows["gpu_busy_share"].median()) if len(rows) else np.nan,
        "n_graph_launches": graphs,
        "remedy": _remedy(what, verdict, graphs),
    }


EVIDENCE_TABLE_COLUMNS = (
    "what",
    "unit",
    "bound",
    "bound_span_ms",
    "gpu_busy_share",
    "n_launches",
    "n_graph_launches",
    "launch_ms",
    "kernel_mean_us",
    "kernel_median_us",
    "sync_ms",
)
_EVIDENCE_MEANS = list(EVIDENCE_TABLE_COLUMNS[3:])


def evidence_table(tables: Tables, run_id: str) -> pd.DataFrame:
    """The evidence behind a run's verdicts (EVIDENCE_TABLE_COLUMNS): one row per phase (mean per
    step, unit "step") and per stage (mean per sample, unit "sample"), in pipeline order; ``bound``
    the most common verdict. Kernel statistics are means of the per-step or per-sample values.
    Where the run has generation steps, the phases stand for the prefill and decode stages."""
    tokens, stages = _verdict_groups(tables, run_id)
    parts = []
    for what, unit, frame, key in (("phase", "step", tokens, "phase"), ("stage", "sample", stages, "stage")):
        if frame.empty:
            continue
        grouped = frame.groupby(key, sort=False)
        means = grouped[_EVIDENCE_MEANS].mean()
        means["bound"] = grouped["bound"].agg(_most_common)
        means["unit"] = unit
        means["order"] = [
            _phase_key(str(k)) if what == "phase" else stage_sort_key(str(k), i)
            for i, k in enumerate(means.index)
        ]
        parts.append(means.rename_axis("what").reset_index())
    if not parts:
        return pd.DataFrame(columns=list(EVIDENCE_TABLE_COLUMNS))
    out = pd.concat(parts, ignore_index=True).sort_values("order", kind="stable")
    return out[list(EVIDENCE_TABLE_COLUMNS)].reset_index(drop=True)


# ------------------------------------------------------------------------------- settings compared
# The runs-table columns that say how a run was set up; runs of one model on one device that differ
# only in these are compared stage by stage.
SETTING_COLUMNS = ("mode", "dtype", "attn_implementation", "cache", "compile", "load_in", "weights")
SETTING_CHANGE_COLUMNS = (
    "stage",
    "base_ms",
    "other_ms",
    "ratio",
    "base_span_ms",
    "other_span_ms",
    "span_ratio",
    "base_bound",
    "other_bound",
)


@dataclass(frozen=True)
class SettingComparison:
    """Run ``other`` against ``base``: the settings that differ and what they changed per stage."""

    base: str
    other: str
    settings: dict[str, tuple[object, object]]  # column -> (base value, other value)
    stages: pd.DataFrame  # SETTING_CHANGE_COLUMNS


def setting_comparisons(tables: Tables) -> list[SettingComparison]:
    """For each run whose model and device equal an earlier run's, the comparison with the first
    such run, when their settings (SETTING_COLUMNS) differ. Per stage (SETTING_CHANGE_COLUMNS):
    the median per sample of host self time (base_ms, other_ms, ratio other / base) and of the
    verdict's span (first launch to last device end: where the time went on the device timeline,
    e.g. decode's waiting moves to stage4:other in self time but not in span), and each run's most
    common verdict. ``unattributed`` is left out (it has no span or verdict)."""
    runs = tables.runs.reset_index(drop=True)
    out = []
    for _, group in runs.groupby(["model", "device"], sort=False):
        if len(group) < 2:
            continue
        base = group.iloc[0]
        for _, other in group.iloc[1:].iterrows():
            differ = {
                c: (base[c], other[c]) for c in SETTING_COLUMNS if c in runs.columns and base[c] != other[c]
            }
            if differ:
                out.append(
                    SettingComparison(
                        base=str(base["run_id"]),
                        other=str(other["run_id"]),
                        settings=differ,
                        stages=_stage_changes(tables.stages, str(base["run_id"]), str(other["run_id"])),
                    )
                )
    return out


def _stage_changes(stages: pd.DataFrame, base: str, other: str) -> pd.DataFrame:
    per_run = {}
    for run in (base, other):
        sub = stages.loc[(stages["run_id"] == run) & (stages["stage"] != voc.UNATTRIBUTED)]
        grouped = sub.groupby("stage", sort=False)
        per_run[run] = pd.DataFrame(
            {
                "ms": grouped["host_self_ms"].median(),
                "span_ms": grouped["bound_span_ms"].median(),
                "bound": grouped["bound"].agg(_most_common),
            }
        )
    seen = list(dict.fromkeys([*per_run[base].index, *per_run[other].index]))
    order = sorted(seen, key=lambda s: stage_sort_key(s, seen.index(s)))
    b, o = per_run[base].reindex(order), per_run[other].reindex(order)

    def ratio(col: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b[col] > 0, o[col] / b[col], np.nan)

    return pd.DataFrame(
        {
            "stage": order,
            "base_ms": b["ms"].to_numpy(),
            "other_ms": o["ms"].to_numpy(),
            "ratio": ratio("ms"),
            "base_span_ms": b["span_ms"].to_numpy(),
            "other_span_ms": o["span_ms"].to_numpy(),
            "span_ratio": ratio("span_ms"),
            "base_bound": b["bound"].fillna("").to_numpy(dtype=object),
            "other_bound": o["bound"].fillna("").to_numpy(dtype=object),
        }
    )[list(SETTING_CHANGE_COLUMNS)]
