"""The report's plotly figures, one builder per figure; the notebook reuses them.

Each builder takes DataFrames (the tables for distributions, or a summary from
:mod:`analyze.summary` or :mod:`analyze.hta_breakdown`) and returns a ``go.Figure``; none reads
files, and the medians, means and bands they draw are the summaries' numbers. Colours are
fixed per stage and per run, so a run keeps its colour on the whole page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from analyze import vocabulary as vocab
from analyze.summary import STAGE_COLUMNS

# samples.parquet's stage columns (summary.STAGE_COLUMNS) -> colour.
STAGE_COLUMN_COLOURS: dict[str, str] = {
    "load_ms": "#8c9fb7",
    "preprocess_ms": "#5fb3b3",
    "vision_ms": "#f28e2b",
    "prefill_ms": "#4e79a7",
    "decode_ms": "#59a14f",
    "other_ms": "#b07aa1",
    "unlabelled_ms": "#cfcfcf",
}
# vocabulary stage -> colour (the stage columns' colours; vision's parts share vision's); stage-map
# names get the fallback colour.
STAGE_COLOURS: dict[str, str] = {
    vocab.LOAD: STAGE_COLUMN_COLOURS["load_ms"],
    vocab.PREPROCESS: STAGE_COLUMN_COLOURS["preprocess_ms"],
    vocab.VISION: STAGE_COLUMN_COLOURS["vision_ms"],
    vocab.PREFILL: STAGE_COLUMN_COLOURS["prefill_ms"],
    vocab.DECODE: STAGE_COLUMN_COLOURS["decode_ms"],
    vocab.OTHER: STAGE_COLUMN_COLOURS["other_ms"],
    vocab.UNLABELLED: "#a0a0a0",
    vocab.UNATTRIBUTED: "#e15759",
}
FALLBACK_COLOUR = "#76b7b2"
RUN_COLOURS: tuple[str, ...] = tuple(qualitative.D3)
TEMPORAL_COLOURS = {"idle": "#c7c7c7", "compute": "#59a14f", "non_compute": "#f28e2b"}
IDLE_COLOURS = {"host_wait": "#e15759", "kernel_wait": "#f1ce63", "other": "#bab0ac"}
_FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12)


def run_colours(run_ids: Sequence[str]) -> dict[str, str]:
    """One colour per run, in the order given (the runs table's order), reused on every figure."""
    return {r: RUN_COLOURS[i % len(RUN_COLOURS)] for i, r in enumerate(run_ids)}


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
    for col, label in STAGE_COLUMNS:
        fig.add_trace(
            go.Bar(
                x=x,
                y=(sub[col] / total).to_numpy(),
                name=label,
                marker_color=STAGE_COLUMN_COLOURS[col],
                customdata=sub[col].to_numpy(),
                hovertemplate=f"{label}: %{{y:.1%}} (%{{customdata:.2f}} ms)<extra>%{{x}}</extra>",
            )
        )
    fig.update_yaxes(tickformat=".0%", range=[0, 1], title="share of wall time")
    fig.update_xaxes(title="sample", type="category")
    return _layout(fig, height=360, barmode="stack", bargap=0.25)


def stage_time_figure(medians: pd.DataFrame, colours: dict[str, str]) -> go.Figure:
    """Median ms per stage, one bar trace per run (``medians``: summary.stage_medians)."""
    fig = go.Figure()
    labels = [str(c) for c in medians.columns]
    for run, row in medians.iterrows():
        fig.add_trace(
            go.Bar(
                x=labels,
                y=row.tolist(),
                name=run,
                marker_color=colours[run],
                hovertemplate="%{x}: %{y:.2f} ms<extra>" + html.escape(str(run)) + "</extra>",
            )
        )
    fig.update_yaxes(title="median ms per sample (host self time)")
    return _layout(fig, height=380, barmode="group")


def vision_llm_figure(metrics: pd.DataFrame, colours: dict[str, str]) -> go.Figure:
    """Vision's share of vision+LLM time on the host and on the device, one bar trace per run.

    ``metrics``: rows of summary.run_metrics (vision_share_host, vision_share_gpu: means over samples).
    """
    x = ["host (self time)", "device (kernel time)"]
    fig = go.Figure()
    for row in metrics.itertuples(index=False):
        y = [float(row.vision_share_host), float(row.vision_share_gpu)]
        text = ["" if not np.isfinite(v) else f"{v:.0%}" for v in y]
        text[1] = text[1] or "no GPU events"
        fig.add_trace(
            go.Bar(
                x=x,
                y=[v if np.isfinite(v) else 0.0 for v in y],
                name=row.run_id,
                marker_color=colours[row.run_id],
                text=text,
                textposition="outside",
                cliponaxis=False,
                hovertemplate="vision %{y:.1%} of vision+LLM<extra>" + html.escape(row.run_id) + "</extra>",
            )
        )
    fig.update_yaxes(tickformat=".0%", range=[0, 1.12], title="vision share of (vision + LLM)")
    return _layout(fig, height=380, barmode="group")


def token_latency_figure(
    bands: pd.DataFrame,
    tokens: pd.DataFrame,
    samples: pd.DataFrame,
    run_ids: Sequence[str],
    colours: dict[str, str],
) -> go.Figure:
    """Per-token latency by decode step (median, p10-p90 band), its distribution, and TTFT.

    ``bands``: summary.token_latency_bands; ``tokens`` and ``samples`` give the distributions.
    """
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


def busy_strip_figure(tokens: pd.DataFrame) -> go.Figure:
    """Per-step strip of GPU-busy share: one row per sample, one cell per generation step, coloured
    by ``gpu_busy_share`` (0 white to 1 dark), the step's verdict written in the cell and its
    evidence on hover (``tokens``: one run's rows of the tokens table)."""
    rows = tokens.sort_values(["sample_id", "step"])
    grid = rows.pivot_table(index="sample_id", columns="step", values="gpu_busy_share", aggfunc="first")
    keys = ["sample_id", "step"]
    extra = rows.set_index(keys)[["bound", "bound_span_ms", "n_launches", "sync_ms"]]

    def cells(column: str) -> np.ndarray:
        wide = extra[column].unstack("step").reindex(index=grid.index, columns=grid.columns)
        return wide.to_numpy(dtype=object)

    bound = cells("bound")
    custom = np.stack([bound, cells("bound_span_ms"), cells("n_launches"), cells("sync_ms")], axis=-1)
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(dtype=float),
            x=[str(s) for s in grid.columns],
            y=[str(s) for s in grid.index],
            zmin=0.0,
            zmax=1.0,
            colorscale="Blues",
            colorbar=dict(title="GPU busy", tickformat=".0%"),
            text=np.where(pd.isna(bound), "", bound),
            texttemplate="%{text}",
            textfont=dict(size=10),
            customdata=custom,
            xgap=1,
            ygap=1,
            hovertemplate="%{y}, step %{x}: GPU busy %{z:.0%} of %{customdata[1]:.3f} ms, "
            "%{customdata[0]}<br>%{customdata[2]} launches, %{customdata[3]:.3f} ms in sync calls"
            "<extra></extra>",
        )
    )
    fig.update_xaxes(title="generation step (0 = prefill)", type="category")
    fig.update_yaxes(title="sample", type="category", autorange="reversed")
    return _layout(fig, height=max(220, 120 + 26 * len(grid)))
