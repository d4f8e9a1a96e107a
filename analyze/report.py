"""report.html: the answer at a glance, one self-contained page (plotly.js inline, no network).

Layout: a header (versions, runs, verification, how to open a trace in Perfetto), an
"at a glance" table, then, where several runs are given, comparison figures with one trace per
run (each run keeps its colour on the whole page), then one section per run: stage shares per
sample, vision vs LLM share, per-token latency, top ops or kernels per stage, and, for GPU
runs, HolisticTraceAnalysis's temporal, kernel and idle-time breakdowns.

The summaries the figures draw are pure functions over the tables (comparison_table,
token_latency_bands, top_ops); the figure builders are public so the notebook reuses them.
The only module of stagetrace that imports plotly.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from analyze import hta_breakdown, package_version
from analyze import vocabulary as vocab
from analyze.errors import AnalyzeError
from analyze.files import write_atomic

if TYPE_CHECKING:
    from analyze.tables import Tables

# samples.parquet's stage columns, in display order, with a label and a fixed colour each.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("load_ms", "load", "#8c9fb7"),
    ("preprocess_ms", "preprocess", "#5fb3b3"),
    ("vision_ms", "vision", "#f28e2b"),
    ("prefill_ms", "prefill", "#4e79a7"),
    ("decode_ms", "decode", "#59a14f"),
    ("other_ms", "other (generate)", "#b07aa1"),
    ("unlabelled_ms", "unlabelled", "#cfcfcf"),
)
# vocabulary stage -> colour (the STAGES colours; vision's parts share vision's); stage-map names get
# the fallback colour.
STAGE_COLOURS: dict[str, str] = {
    vocab.LOAD: STAGES[0][2],
    vocab.PREPROCESS: STAGES[1][2],
    vocab.VISION: STAGES[2][2],
    vocab.PREFILL: STAGES[3][2],
    vocab.DECODE: STAGES[4][2],
    vocab.OTHER: STAGES[5][2],
    vocab.UNLABELLED: "#a0a0a0",
    vocab.UNATTRIBUTED: "#e15759",
}
FALLBACK_COLOUR = "#76b7b2"
RUN_COLOURS: tuple[str, ...] = tuple(qualitative.D3)
TEMPORAL_COLOURS = {"idle": "#c7c7c7", "compute": "#59a14f", "non_compute": "#f28e2b"}
IDLE_COLOURS = {"host_wait": "#e15759", "kernel_wait": "#f1ce63", "other": "#bab0ac"}
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12)


def run_colours(run_ids: Sequence[str]) -> dict[str, str]:
    """One colour per run, in the order given (the runs table's order), reused on every figure."""
    return {r: RUN_COLOURS[i % len(RUN_COLOURS)] for i, r in enumerate(run_ids)}


# ---------------------------------------------------------------- summaries (pure, DataFrames)


def comparison_table(samples: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """Per run, medians over its samples, and ratios to the first run of ``run_ids``.

    Columns: run_id, n_samples, total_ms, ttft_ms, tpot_ms, vision_ms, tokens_per_s,
    vision_share_host, vision_share_gpu (means), largest_stage (by median share of wall time),
    and total_ratio, ttft_ratio, tpot_ratio, vision_ratio, tokens_per_s_ratio (run / first run).
    """
    cols = ["total_ms", "ttft_ms", "tpot_ms", "vision_ms", "tokens_per_s"]
    sub = samples.loc[samples["run_id"].isin(run_ids)]
    grouped = sub.groupby("run_id", sort=False)
    out = grouped[cols].median()
    out["n_samples"] = grouped.size()
    out[["vision_share_host", "vision_share_gpu"]] = grouped[["vision_share_host", "vision_share_gpu"]].mean()
    stage_cols = [c for c, _, _ in STAGES]
    shares = sub[stage_cols].div(sub["total_ms"].where(sub["total_ms"] > 0), axis=0)
    median_shares = shares.groupby(sub["run_id"], sort=False).median()
    labels = dict((c, label) for c, label, _ in STAGES)
    largest = median_shares.fillna(-1.0).idxmax(axis=1).map(labels)
    out["largest_stage"] = largest.where(median_shares.notna().any(axis=1))
    out = out.reindex(list(run_ids))
    out.index.name = "run_id"
    first = out.iloc[0] if len(out) else None
    for col, ratio in zip(
        cols, ["total_ratio", "ttft_ratio", "tpot_ratio", "vision_ratio", "tokens_per_s_ratio"], strict=True
    ):
        base = first[col] if first is not None else np.nan
        out[ratio] = out[col] / base if base and np.isfinite(base) else np.nan
    out["n_samples"] = out["n_samples"].fillna(0).astype("int64")
    return out.reset_index()[
        [
            "run_id",
            "n_samples",
            *cols,
            "vision_share_host",
            "vision_share_gpu",
            "largest_stage",
            "total_ratio",
            "ttft_ratio",
            "tpot_ratio",
            "vision_ratio",
            "tokens_per_s_ratio",
        ]
    ]


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
    order = {s: i for i, s in enumerate(vocab.STAGE_ORDER)}
    grouped["stage_order"] = grouped["stage"].map(order).fillna(len(order))
    grouped = grouped.sort_values(["stage_order", "stage", "total_us"], ascending=[True, True, False])
    out = grouped.groupby("stage", sort=False).head(top)
    return out[["stage", "name", "per_sample_ms", "count_per_sample", "share"]].reset_index(drop=True)


def ops_kind(ops: pd.DataFrame, run: pd.Series) -> str:
    """The ops kind a run's section ranks: "kernel" where the run has GPU kernels, else "cpu_op"."""
    has_kernels = bool(((ops["run_id"] == run["run_id"]) & (ops["kind"] == "kernel")).any())
    return "kernel" if bool(run["has_gpu"]) and has_kernels else "cpu_op"


# ---------------------------------------------------------------- figures


def _layout(fig: go.Figure, *, height: int, title: str | None = None, **kwargs: object) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        font=_FONT,
        margin=dict(l=60, r=20, t=60 if title else 40, b=50),
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)) if title else None,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0.0, traceorder="normal"),
        **kwargs,
    )
    return fig


def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def stage_share_figure(samples: pd.DataFrame, run_id: str) -> go.Figure:
    """Stacked bar per sample of each stage's share of the sample's wall time (host self time)."""
    sub = samples.loc[samples["run_id"] == run_id].sort_values(["sample_index", "sample_id"])
    total = sub["total_ms"].where(sub["total_ms"] > 0)
    x = sub["sample_id"].astype(str).tolist()
    fig = go.Figure()
    for col, label, colour in STAGES:
        fig.add_trace(
            go.Bar(
                x=x,
                y=(sub[col] / total).to_numpy(),
                name=label,
                marker_color=colour,
                customdata=sub[col].to_numpy(),
                hovertemplate=f"{label}: %{{y:.1%}} (%{{customdata:.2f}} ms)<extra>%{{x}}</extra>",
            )
        )
    fig.update_yaxes(tickformat=".0%", range=[0, 1], title="share of wall time")
    fig.update_xaxes(title="sample", type="category")
    return _layout(fig, height=360, barmode="stack", bargap=0.25)


def stage_time_figure(samples: pd.DataFrame, run_ids: Sequence[str], colours: dict[str, str]) -> go.Figure:
    """Median ms per stage, one bar trace per run."""
    fig = go.Figure()
    labels = [label for _, label, _ in STAGES]
    for run in run_ids:
        sub = samples.loc[samples["run_id"] == run]
        medians = [float(sub[col].median()) if len(sub) else np.nan for col, _, _ in STAGES]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=medians,
                name=run,
                marker_color=colours[run],
                hovertemplate="%{x}: %{y:.2f} ms<extra>" + html.escape(run) + "</extra>",
            )
        )
    fig.update_yaxes(title="median ms per sample (host self time)")
    return _layout(fig, height=380, barmode="group")


def vision_llm_figure(samples: pd.DataFrame, run_ids: Sequence[str], colours: dict[str, str]) -> go.Figure:
    """Vision's share of vision+LLM time on the host and on the device, one bar trace per run."""
    x = ["host (self time)", "device (kernel time)"]
    fig = go.Figure()
    for run in run_ids:
        sub = samples.loc[samples["run_id"] == run]
        y = [float(sub["vision_share_host"].mean()), float(sub["vision_share_gpu"].mean())]
        text = ["" if not np.isfinite(v) else f"{v:.0%}" for v in y]
        text[1] = text[1] or "no GPU events"
        fig.add_trace(
            go.Bar(
                x=x,
                y=[v if np.isfinite(v) else 0.0 for v in y],
                name=run,
                marker_color=colours[run],
                text=text,
                textposition="outside",
                cliponaxis=False,
                hovertemplate="vision %{y:.1%} of vision+LLM<extra>" + html.escape(run) + "</extra>",
            )
        )
    fig.update_yaxes(tickformat=".0%", range=[0, 1.12], title="vision share of (vision + LLM)")
    return _layout(fig, height=380, barmode="group")


def token_latency_figure(
    tokens: pd.DataFrame, samples: pd.DataFrame, run_ids: Sequence[str], colours: dict[str, str]
) -> go.Figure:
    """Per-token latency by decode step (median, p10-p90 band), its distribution, and TTFT."""
    fig = make_subplots(
        rows=1,
        cols=3,
        column_widths=[0.46, 0.30, 0.24],
        horizontal_spacing=0.07,
        subplot_titles=(
            "per-token latency by decode step (median, p10–p90)",
            "decode-token latency distribution",
            "time to first token",
        ),
    )
    bands = token_latency_bands(tokens.loc[tokens["run_id"].isin(run_ids)])
    decode = tokens.loc[tokens["run_id"].isin(run_ids) & (tokens["step"] >= 1), "latency_ms"]
    lo, hi = (float(decode.min()), float(decode.max())) if len(decode) else (0.0, 1.0)
    bins = dict(
        start=lo, end=hi + (hi - lo) / 30 + 1e-9, size=max((hi - lo) / 30, 1e-6)
    )  # shared by the runs
    for run in run_ids:
        colour = colours[run]
        band = bands.loc[bands["run_id"] == run]
        steps = band["step"].tolist()
        fig.add_trace(
            go.Scatter(
                x=steps + steps[::-1],
                y=band["p90_ms"].tolist() + band["p10_ms"].tolist()[::-1],
                fill="toself",
                fillcolor=colour,
                opacity=0.18,
                line=dict(width=0),
                mode="lines",
                name=f"{run} p10–p90",
                legendgroup=run,
                showlegend=False,
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=band["median_ms"],
                mode="lines+markers",
                name=run,
                legendgroup=run,
                line=dict(color=colour, width=2),
                marker=dict(size=5),
                hovertemplate="step %{x}: %{y:.2f} ms (median)<extra>" + html.escape(run) + "</extra>",
            ),
            row=1,
            col=1,
        )
        dec = tokens.loc[(tokens["run_id"] == run) & (tokens["step"] >= 1), "latency_ms"]
        fig.add_trace(
            go.Histogram(
                x=dec,
                name=run,
                legendgroup=run,
                showlegend=False,
                marker_color=colour,
                opacity=0.6,
                xbins=bins,
                hovertemplate="%{x} ms: %{y} tokens<extra>" + html.escape(run) + "</extra>",
            ),
            row=1,
            col=2,
        )
        ttft = samples.loc[samples["run_id"] == run, "ttft_ms"].dropna()
        fig.add_trace(
            go.Box(
                y=ttft,
                name=run,
                legendgroup=run,
                showlegend=False,
                marker_color=colour,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                boxmean=False,
                hovertemplate="%{y:.2f} ms<extra>" + html.escape(run) + "</extra>",
            ),
            row=1,
            col=3,
        )
    fig.update_xaxes(title_text="decode step", row=1, col=1)
    fig.update_yaxes(title_text="ms per token", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title_text="ms per token", row=1, col=2)
    fig.update_yaxes(title_text="tokens", row=1, col=2)
    fig.update_xaxes(showticklabels=False, row=1, col=3)
    fig.update_yaxes(title_text="TTFT ms", rangemode="tozero", row=1, col=3)
    fig.update_annotations(font=dict(size=12))
    _layout(fig, height=400, barmode="overlay")
    # the legend sits above the subplot titles
    return fig.update_layout(margin=dict(t=90), legend=dict(y=1.1))


def top_ops_figure(table: pd.DataFrame, kind: str) -> go.Figure:
    """Horizontal bars of top_ops(): one panel per stage."""
    stages = list(dict.fromkeys(table["stage"]))
    fig = make_subplots(rows=len(stages), cols=1, subplot_titles=stages, vertical_spacing=0.35 / len(stages))
    for i, stage in enumerate(stages, start=1):
        rows = table.loc[table["stage"] == stage].iloc[::-1]
        colour = STAGE_COLOURS.get(vocab.VISION if vocab.is_vision_stage(stage) else stage, FALLBACK_COLOUR)
        fig.add_trace(
            go.Bar(
                x=rows["per_sample_ms"],
                y=[_short(n) for n in rows["name"]],
                orientation="h",
                marker_color=colour,
                showlegend=False,
                name=stage,
                customdata=np.stack([rows["name"], rows["count_per_sample"], rows["share"]], axis=-1),
                hovertemplate="%{customdata[0]}<br>%{x:.3f} ms per sample, %{customdata[1]:.1f} calls, "
                "%{customdata[2]:.0%} of the stage's " + kind + " time<extra></extra>",
            ),
            row=i,
            col=1,
        )
    fig.update_xaxes(title_text=f"{kind} ms per sample", row=len(stages), col=1)
    fig.update_yaxes(automargin=True, tickfont=dict(size=11))
    fig.update_annotations(font=dict(size=12), x=0.0, xanchor="left")
    return _layout(fig, height=90 + 150 * len(stages))


def hta_temporal_figure(temporal: pd.DataFrame) -> go.Figure:
    """HTA temporal breakdown per sample: idle, compute and non-compute shares of the GPU span."""
    fig = go.Figure()
    x = temporal["sample_id"].astype(str).tolist()
    for part, label in (
        ("compute", "compute"),
        ("non_compute", "non-compute (memory, comms)"),
        ("idle", "idle"),
    ):
        fig.add_trace(
            go.Bar(
                x=x,
                y=temporal[f"{part}_share"],
                name=label,
                marker_color=TEMPORAL_COLOURS[part],
                customdata=temporal[f"{part}_us"] / 1000.0,
                hovertemplate=label + ": %{y:.1%} (%{customdata:.2f} ms)<extra>%{x}</extra>",
            )
        )
    fig.update_yaxes(tickformat=".0%", range=[0, 1], title="share of GPU span")
    fig.update_xaxes(type="category", title="sample")
    return _layout(fig, height=340, barmode="stack", title="HTA temporal breakdown")


def hta_kernel_type_figure(kernel_types: pd.DataFrame) -> go.Figure:
    """HTA kernel-type breakdown: share of kernel time per type."""
    rows = kernel_types.iloc[::-1]
    fig = go.Figure(
        go.Bar(
            x=rows["share"],
            y=rows["kernel_type"],
            orientation="h",
            marker_color="#4e79a7",
            text=[f"{s:.0%}" for s in rows["share"]],
            textposition="auto",
            customdata=rows["total_us"] / 1000.0,
            showlegend=False,
            name="kernel type",
            hovertemplate="%{y}: %{x:.1%} (%{customdata:.2f} ms)<extra></extra>",
        )
    )
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title="share of kernel time")
    fig.update_yaxes(automargin=True)
    return _layout(fig, height=340, title="HTA kernel types")


def hta_kernels_figure(summary: pd.DataFrame) -> go.Figure:
    """HTA's top kernels by time per sample, coloured by kernel type."""
    rows = summary.iloc[::-1]
    types = list(dict.fromkeys(summary["kernel_type"]))
    palette = {t: RUN_COLOURS[(i + 3) % len(RUN_COLOURS)] for i, t in enumerate(types)}
    fig = go.Figure()
    for kernel_type in types:
        sub = rows.loc[rows["kernel_type"] == kernel_type]
        fig.add_trace(
            go.Bar(
                x=sub["per_sample_ms"],
                y=[_short(n, 60) for n in sub["name"]],
                orientation="h",
                name=kernel_type,
                marker_color=palette[kernel_type],
                customdata=np.stack([sub["name"], sub["share"]], axis=-1),
                hovertemplate="%{customdata[0]}<br>%{x:.3f} ms per sample "
                "(%{customdata[1]:.0%} of kernel time)<extra></extra>",
            )
        )
    fig.update_xaxes(title="kernel ms per sample")
    fig.update_yaxes(automargin=True, tickfont=dict(size=11), categoryorder="total ascending")
    return _layout(fig, height=max(340, 120 + 26 * len(summary)), title="HTA top kernels", barmode="stack")


def hta_idle_figure(idle: pd.DataFrame) -> go.Figure:
    """HTA idle-time breakdown per stream: host wait, kernel wait, other (ms, summed over samples)."""
    fig = go.Figure()
    for category in dict.fromkeys(idle["idle_category"]):
        sub = idle.loc[idle["idle_category"] == category]
        fig.add_trace(
            go.Bar(
                x=[f"stream {s}" for s in sub["stream"]],
                y=sub["idle_ms"],
                name=category,
                marker_color=IDLE_COLOURS.get(category, "#bab0ac"),
                showlegend=True,
                hovertemplate=category + ": %{y:.2f} ms<extra>%{x}</extra>",
            )
        )
    fig.update_yaxes(title="idle ms (summed over samples)")
    return _layout(fig, height=340, barmode="stack", title="HTA idle time by stream")


# ---------------------------------------------------------------- HTML


_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
main { max-width: 1400px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 8px;
  padding-top: 12px; border-top: 2px solid var(--line); } h3 { font-size: 15px; margin: 20px 0 6px; }
.sub { color: var(--muted); margin: 0 0 16px; }
nav { margin: 8px 0 16px; } nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: var(--bg); padding: 1px 4px; border-radius: 4px; font-size: 12px; word-break: break-all; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 600; }
.unk { color: var(--muted); }
.note { border-left: 4px solid #0969da; background: #ddf4ff; padding: 8px 12px; margin: 10px 0; }
.note.warn { border-color: #bf8700; background: #fff8c5; }
.caption { color: var(--muted); font-size: 12.5px; margin: 2px 0 14px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid12 { display: grid; grid-template-columns: 1fr 2fr; gap: 16px; }
.fig { min-width: 0; }
@media (max-width: 900px) { .grid2, .grid12 { grid-template-columns: 1fr; } main { padding: 12px; } }
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _text(value: object) -> str:
    """Escaped text, or a dash for a missing value (None, NaN, NA, "")."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or value == "":
        return "–"
    return _esc(value)


def _num(value: object, fmt: str = "{:.2f}", dash: str = "–") -> str:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return dash
    return fmt.format(v) if np.isfinite(v) else dash


def _flag(value: object, yes: str, no: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return '<span class="unk">not checked</span>'
    return f'<span class="ok">✓ {yes}</span>' if bool(value) else f'<span class="bad">✗ {no}</span>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str, *, warn: bool = False) -> str:
    return f'<div class="note{" warn" if warn else ""}">{text}</div>'


@dataclass(frozen=True)
class Report:
    """A rendered report: the page, its figures by div id, and which of them compare runs."""

    html: str
    figures: dict[str, go.Figure] = field(default_factory=dict)
    comparison_ids: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass
class _Page:
    parts: list[str] = field(default_factory=list)
    figures: dict[str, go.Figure] = field(default_factory=dict)
    comparison_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def figure(self, div_id: str, fig: go.Figure, caption: str = "", *, comparison: bool = False) -> str:
        """The figure's div (plotly.js is in the page head once), registered under ``div_id``."""
        self.figures[div_id] = fig
        if comparison:
            self.comparison_ids.append(div_id)
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
        cap = f'<p class="caption">{caption}</p>' if caption else ""
        return f'<div class="fig">{div}{cap}</div>'

    def note(self, text: str, *, warn: bool = False) -> None:
        self.notes.append(text)
        self.add(_note(_esc(text), warn=warn))


def _header(page: _Page, runs: pd.DataFrame, samples: pd.DataFrame) -> None:
    hta_v = hta_breakdown.hta_version() or "not installed"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page.add(
        "<h1>stagetrace report</h1>"
        f'<p class="sub">{len(runs)} run(s), {len(samples)} sample(s) · generated {now} · '
        f"stagetrace {_esc(package_version())} · pandas {_esc(pd.__version__)} · "
        f"plotly {_esc(plotly.__version__)} · "
        f"HolisticTraceAnalysis {_esc(hta_v)}</p>"
    )
    links = ['<a href="#glance">at a glance</a>']
    if len(runs) > 1:
        links.append('<a href="#compare">comparison</a>')
    links += [f'<a href="#run-{i}">{_esc(r)}</a>' for i, r in enumerate(runs["run_id"])]
    page.add("<nav>" + " ".join(links) + "</nav>")
    rows = []
    for r in runs.itertuples(index=False):
        rows.append(
            [
                f"<b>{_esc(r.run_id)}</b>",
                _text(r.model),
                _text(r.mode),
                _text(r.device),
                _text(r.gpu_name),
                _text(r.torch_version),
                _text(r.transformers_version),
                f"{int(r.n_samples)}"
                + (f' <span class="bad">({int(r.n_skipped)} unreadable)</span>' if int(r.n_skipped) else ""),
                _flag(r.identity_ok, "identical", "differs"),
                _flag(r.accounting_ok, "adds up", "does not add up"),
                _num(r.overhead_ratio, "{:.2f}×"),
            ]
        )
    page.add(
        "<h3>Runs</h3>"
        + _table(
            [
                "run",
                "model",
                "mode",
                "device",
                "GPU",
                "torch",
                "transformers",
                "samples",
                "greedy outputs with profiler",
                "stage accounting",
                "profiler overhead",
            ],
            rows,
            numeric=(7, 10),
        )
    )
    page.add(
        '<p class="caption">Greedy outputs with labels and profiler on are checked against outputs with both '
        "off; stage accounting checks that each sample's stages add up to its wall time; profiler overhead "
        "is profiled / unprofiled wall time. “not checked”: the run folder has no run.json verification.</p>"
    )


def _glance(page: _Page, table: pd.DataFrame) -> None:
    multi = len(table) > 1
    rows = []
    for r in table.itertuples(index=False):
        row = [
            f"<b>{_esc(r.run_id)}</b>",
            f"{int(r.n_samples)}",
            _num(r.total_ms),
            _num(r.ttft_ms),
            _num(r.tpot_ms),
            _num(r.tokens_per_s, "{:.1f}"),
            _num(r.vision_ms),
            _num(r.vision_share_host, "{:.0%}"),
            _num(r.vision_share_gpu, "{:.0%}"),
            _text(r.largest_stage),
        ]
        if multi:
            row += [
                _num(r.ttft_ratio, "{:.2f}×"),
                _num(r.tpot_ratio, "{:.2f}×"),
                _num(r.vision_ratio, "{:.2f}×"),
                _num(r.tokens_per_s_ratio, "{:.2f}×"),
            ]
        rows.append(row)
    header = [
        "run",
        "samples",
        "wall ms",
        "TTFT ms",
        "TPOT ms",
        "tokens/s",
        "vision ms",
        "vision share (host)",
        "vision share (GPU)",
        "largest stage",
    ]
    if multi:
        header += ["TTFT ÷ first", "TPOT ÷ first", "vision ÷ first", "tokens/s ÷ first"]
    page.add(
        '<h2 id="glance">At a glance</h2>'
        + _table(header, rows, numeric=tuple(range(1, 9)) + tuple(range(10, len(header))))
    )
    page.add(
        '<p class="caption">Medians over samples (shares: means). '
        "TTFT: start of generate() to the first token; TPOT: mean time per decode token; "
        "vision share: of vision + LLM time, host self time and GPU kernel time."
        + (f" Ratios are to the first run, <b>{_esc(table['run_id'].iloc[0])}</b>." if multi else "")
        + "</p>"
    )


def _compare(page: _Page, tables: Tables, run_ids: Sequence[str], colours: dict[str, str]) -> None:
    page.add('<h2 id="compare">Comparison</h2>')
    page.add(
        page.figure(
            "cmp-stages",
            stage_time_figure(tables.samples, run_ids, colours),
            "Median host self time per stage and sample, one bar per run.",
            comparison=True,
        )
    )
    page.add(
        page.figure(
            "cmp-tokens",
            token_latency_figure(tables.tokens, tables.samples, run_ids, colours),
            "Per-token latency: a token is emitted when its step's last device event ends (host "
            "end without device events).",
            comparison=True,
        )
    )
    page.add(
        page.figure(
            "cmp-vision",
            vision_llm_figure(tables.samples, run_ids, colours),
            "Vision's share of vision + LLM time per run (mean over samples).",
            comparison=True,
        )
    )


def _perfetto(run: pd.Series, samples: pd.DataFrame) -> str:
    sub = samples.loc[samples["run_id"] == run["run_id"]].sort_values(["sample_index", "sample_id"])
    if sub.empty:
        return ""
    path = Path(str(run["trace_dir"])) / str(sub["trace_file"].iloc[0])
    return _note(
        'See one sample\'s timeline: open <a href="https://ui.perfetto.dev">ui.perfetto.dev</a> → '
        f"<i>Open trace file</i> → <code>{_esc(path)}</code> (any <code>sample-NNNNN.pt.trace.json.gz</code> "
        "of the run folder; the stage labels appear as slices on the host thread)."
    )


def _hta_section(page: _Page, tables: Tables, run: pd.Series, index: int, hta: bool) -> None:
    page.add("<h3>HolisticTraceAnalysis: GPU temporal, kernel and idle-time breakdown</h3>")
    if not bool(run["has_gpu"]):
        page.note("CPU-only run: HTA's GPU breakdowns (temporal, kernel, idle time) do not apply.")
        return
    if not hta:
        page.note("HTA breakdowns were not computed for this report (HTA turned off).")
        return
    try:
        traces = hta_breakdown.select_traces(tables.runs, tables.samples, str(run["run_id"]))
        result = hta_breakdown.run_hta(str(run["run_id"]), traces)
    except AnalyzeError as exc:
        page.note(
            f"HTA could not analyse this run: {exc}. stagetrace's own figures above are unaffected.",
            warn=True,
        )
        return
    n_run = int((tables.samples["run_id"] == run["run_id"]).sum())
    page.add(
        f'<p class="caption">Computed by HolisticTraceAnalysis on {len(result.sample_ids)} of {n_run} '
        "sample trace(s), each analysed on its own; the GPU span runs from a sample's first kernel to its "
        "last, so host-only stages (load, preprocess) before the first kernel are not in it.</p>"
    )
    if result.failures:
        page.note(
            f"HTA failed on {len(result.failures)} sample(s), left out: {result.failures[0]}", warn=True
        )
    kernels = hta_breakdown.kernel_summary(result.kernels, len(result.sample_ids))
    idle = hta_breakdown.idle_by_stream(result.idle)
    page.add(
        '<div class="grid12">'
        + page.figure(f"run-{index}-hta-types", hta_kernel_type_figure(result.kernel_types))
        + page.figure(f"run-{index}-hta-kernels", hta_kernels_figure(kernels))
        + "</div>"
    )
    page.add(
        '<div class="grid2">'
        + page.figure(f"run-{index}-hta-temporal", hta_temporal_figure(result.temporal))
        + page.figure(
            f"run-{index}-hta-idle",
            hta_idle_figure(idle),
            "host_wait: the stream waits for the CPU to launch work (launch-bound); "
            "kernel_wait: short gaps between back-to-back kernels; other: the rest.",
        )
        + "</div>"
    )


def _run_section(
    page: _Page, tables: Tables, run: pd.Series, index: int, colours: dict[str, str], hta: bool
) -> None:
    run_id = str(run["run_id"])
    samples = tables.samples.loc[tables.samples["run_id"] == run_id]
    page.add(
        f'<h2 id="run-{index}">{_esc(run_id)} <span class="sub">· model {_text(run["model"])} '
        f"· device {_text(run['device'])}</span></h2>"
    )
    page.add(_perfetto(run, tables.samples))
    if samples.empty:
        page.note(f"No readable sample traces in run {run_id}.", warn=True)
        return
    page.add(
        page.figure(
            f"run-{index}-stages",
            stage_share_figure(tables.samples, run_id),
            "Each stage's host self time as a share of the sample's wall time; the seven stages "
            "add up to it. Hover for milliseconds.",
        )
    )
    tokens = tables.tokens.loc[tables.tokens["run_id"] == run_id]
    page.add(
        '<div class="grid2">'
        + page.figure(
            f"run-{index}-vision",
            vision_llm_figure(tables.samples, [run_id], colours),
            "Vision's share of vision + LLM time, mean over samples.",
        )
        + page.figure(
            f"run-{index}-stage-ms",
            stage_time_figure(tables.samples, [run_id], colours),
            "Median host self time per stage.",
        )
        + "</div>"
    )
    if tokens.empty:
        page.note("No generation steps in these traces: no per-token latency.")
    else:
        page.add(
            page.figure(
                f"run-{index}-tokens", token_latency_figure(tokens, tables.samples, [run_id], colours)
            )
        )
    kind = ops_kind(tables.ops, run)
    top = top_ops(tables.ops, run_id, kind, len(samples))
    page.add(f"<h3>Top {'GPU kernels' if kind == 'kernel' else 'CPU ops'} per stage</h3>")
    if top.empty:
        page.note(f"No {kind} events in this run's traces.")
    else:
        caption = (
            "Kernel time per sample, each kernel in the stage that launched it."
            if kind == "kernel"
            else "CPU op time per sample; op times are inclusive, so an op and the ops it calls "
            "(aten::linear and aten::addmm) both count the same time."
        )
        page.add(page.figure(f"run-{index}-ops", top_ops_figure(top, kind), caption))
    _hta_section(page, tables, run, index, hta)


def render_report(tables: Tables, *, hta: bool = True) -> Report:
    """Build the report page (HTML string) and its figures from the tables."""
    runs = tables.runs.reset_index(drop=True)
    if runs.empty:
        raise AnalyzeError("no runs in the tables; analyse at least one run folder or trace before --html")
    run_ids = [str(r) for r in runs["run_id"]]
    colours = run_colours(run_ids)
    page = _Page()
    _header(page, runs, tables.samples)
    _glance(page, comparison_table(tables.samples, run_ids))
    if len(run_ids) > 1:
        _compare(page, tables, run_ids, colours)
    for i, (_, run) in enumerate(runs.iterrows()):
        _run_section(page, tables, run, i, colours, hta)
    body = "\n".join(page.parts)
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>stagetrace report · {_esc(', '.join(run_ids))}</title>"
        f"<style>{_CSS}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        f"</head><body><main>\n{body}\n</main></body></html>\n"
    )
    return Report(
        html=doc, figures=page.figures, comparison_ids=tuple(page.comparison_ids), notes=tuple(page.notes)
    )


def write_report(tables: Tables, out_path: Path, *, hta: bool = True) -> Path:
    """Write the self-contained report.html to ``out_path`` atomically; returns the path."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    page = render_report(tables, hta=hta).html
    write_atomic(out_path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return out_path
