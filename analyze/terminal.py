"""The terminal summary of an analysis: the numbers of :mod:`analyze.summary` as plain text.

Per run: a header, the stage table (host self time mean/p50/p90 over samples, mean GPU kernel
time, share of the mean wall time; a total row with the wall time's mean/median/p90),
vision-vs-LLM shares, GPU busy time, TTFT and TPOT (the median over samples, with the spread),
tokens/s, the verdicts (what bounds each phase and stage that matters, with the usual remedy);
then the warnings. Tables are laid out by rich and rendered to a string without
colour codes, so the text is the same on a terminal, in a pipe and in a test.
"""

from __future__ import annotations

import io
import math

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from analyze.summary import (
    other_verdicts,
    run_metrics,
    stage_summary,
    summary_warnings,
    verdict_name,
    verdict_summary,
)
from analyze.tables import Tables

# Plain ASCII rules under the header and above the total row; no vertical lines, no outer edge.
_RULES = box.Box("    \n    \n -- \n    \n -- \n -- \n    \n    \n", ascii=True)
_WIDTH = 200  # rich wraps cells wider than the console; long stage-map names stay on one line


def _num(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return text + unit


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _pc(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def _render(table: Table, indent: str = "  ") -> list[str]:
    """The table's lines as plain text (no colour codes, no trailing blanks), indented.

    Cells are taken literally (no rich markup), so a stage named ``[x]`` prints as such.
    """
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=_WIDTH, color_system=None, markup=False, highlight=False, emoji=False
    )
    console.print(table)
    return [indent + line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines()]


def stage_table(tables: Tables, run_id: str, metrics: pd.Series) -> Table:
    """The rich table of one run's stages, with the wall time as its total row."""
    table = Table(box=_RULES, show_edge=False, pad_edge=False, header_style="", collapse_padding=True)
    table.add_column("stage", no_wrap=True)
    for header in ("self ms (mean)", "p50", "p90", "GPU kernel ms (mean)", "share"):
        table.add_column(header, justify="right", no_wrap=True)
    stages = stage_summary(tables, run_id)
    for i, r in enumerate(stages.itertuples(index=False)):
        table.add_row(
            r.stage,
            _num(r.host_self_ms),
            _num(r.host_self_p50_ms),
            _num(r.host_self_p90_ms),
            _num(r.gpu_kernel_ms),
            _pc(r.share),
            end_section=i == len(stages) - 1,
        )
    table.add_row(
        "total (wall)",
        _num(metrics.total_mean_ms),
        _num(metrics.total_ms),
        _num(metrics.total_p90_ms),
        _num(metrics.gpu_kernel_mean_ms),
        "",
    )
    return table


def verdict_line(row: pd.Series) -> str:
    """One row of summary.verdict_summary as text, e.g. ``decode: launch-bound in 15/15 steps
    (GPU busy 4% of each step, median) -> try --cache static --compile (...)``."""
    if not row["bound"]:
        return f"{row['what']}: no verdict"
    others = other_verdicts(row)
    text = f"{row['what']}: {verdict_name(row['bound'])} in {row['n_bound']}/{row['n']} {row['unit']}"
    if others:
        text += ", " + ", ".join(others)
    if row["bound"] == "host" and not others:
        text += " (no device work)"
    elif not math.isnan(row["gpu_busy_share"]):
        each = "each step" if row["unit"] == "steps" else "its span"
        text += f" (GPU busy {100 * row['gpu_busy_share']:.0f}% of {each}, median)"
    if row["remedy"]:
        text += f" -> {row['remedy']}"
    return text


def verdict_lines(tables: Tables, run_id: str, has_gpu: bool) -> list[str]:
    """The verdict block of one run: one line per phase or stage that matters; on a CPU-only
    run one line, since every stage is host-bound there."""
    if not has_gpu:
        return ["  verdict: host-bound throughout (CPU-only trace: no GPU verdict applies)"]
    rows = verdict_summary(tables, run_id)
    if rows.empty:
        return []
    return ["  verdicts (what bounds each part; the thresholds are in the README):"] + [
        "    " + verdict_line(row) for _, row in rows.iterrows()
    ]


def _sizes(m: pd.Series) -> str:
    """Prefill tokens, KV-cache and peak memory MB (medians), where run.json gave them."""
    parts = []
    if not math.isnan(m.prefill_tokens):
        parts.append(f"prefill {m.prefill_tokens:,.0f} tokens")
    if not math.isnan(m.kv_cache_mb):
        parts.append(f"KV cache {_num(m.kv_cache_mb, ' MB')}")
    if not math.isnan(m.peak_mem_mb):
        parts.append(f"peak memory {_num(m.peak_mem_mb, ' MB')}")
    return ", ".join(parts)


def format_run(tables: Tables, run_id: str, metrics: pd.Series) -> str:
    """The summary block of one run (``metrics``: its row of run_metrics)."""
    run = tables.runs[tables.runs["run_id"] == run_id].iloc[0]
    facts = [f"model {run['model']}" if run["model"] else "", run["mode"], run["device"], run["gpu_name"]]
    skipped = f", {run['n_skipped']} skipped" if run["n_skipped"] else ""
    header = "  ".join(
        [f"run {run_id}", *(f for f in facts if f), f"({_count(run['n_samples'], 'trace')}{skipped})"]
    )
    if not run["n_samples"]:
        return header + "\n  no trace of this run could be read"
    m = metrics
    lines = [header, *_render(stage_table(tables, run_id, m))]
    shares = []
    if not math.isnan(m.vision_share_host):
        shares.append(f"host {_pc(m.vision_share_host)} / {_pc(m.llm_share_host)}")
    if not math.isnan(m.vision_share_gpu):
        shares.append(f"GPU kernels {_pc(m.vision_share_gpu)} / {_pc(m.llm_share_gpu)}")
    if shares:
        lines.append("  vision vs LLM (mean of samples): " + ", ".join(shares))
    if run["has_gpu"]:
        lines.append(f"  GPU busy {_num(m.gpu_busy_mean_ms, ' ms')} per sample (mean, union over streams)")
    if m.tokens:
        timeline = "device" if run["has_gpu"] else "host"
        of_samples = f"median of {_count(m.n_samples, 'sample')}"
        lines.append(
            f"  TTFT {_num(m.ttft_ms, ' ms')} ({of_samples}; mean {_num(m.ttft_mean_ms)}, "
            f"p90 {_num(m.ttft_p90_ms)})"
        )
        per_token = f"over {_count(m.n_decode_tokens, 'decode token')}"
        lines.append(
            f"  TPOT {_num(m.tpot_ms, ' ms')} ({of_samples}; {per_token}: mean {_num(m.tpot_mean_ms)}, "
            f"p90 {_num(m.tpot_p90_ms)}, p99 {_num(m.tpot_p99_ms)})"
        )
        lines.append(
            f"  {_num(m.tokens_per_s)} tokens/s ({of_samples}; {m.tokens} tokens, {timeline} timeline)"
        )
        sizes = _sizes(m)
        if sizes:
            lines.append(f"  {sizes} ({of_samples}, from run.json)")
    else:
        lines.append("  no generation steps (no stage4:prefill / stage4:decode#k labels): no TTFT or TPOT")
    lines.extend(verdict_lines(tables, run_id, bool(run["has_gpu"])))
    return "\n".join(lines)


def format_summary(tables: Tables) -> str:
    """The whole terminal summary: one block per run, then the warnings."""
    metrics = run_metrics(tables).set_index("run_id", drop=False)
    blocks = [format_run(tables, run_id, metrics.loc[run_id]) for run_id in tables.runs["run_id"]]
    warnings = summary_warnings(tables)
    if warnings:
        blocks.append("warnings:\n" + "\n".join(f"  - {w}" for w in warnings))
    return "\n\n".join(blocks)
