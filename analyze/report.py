"""report.html: the answer at a glance, one self-contained page (plotly.js inline, no network).

Layout: a header (versions, runs, verification, how to open a trace in Perfetto), an
"at a glance" table, then, where several runs are given, comparison figures with one trace per
run (each run keeps its colour on the whole page) and, for runs that differ only in their
settings, what each setting changed per stage; then one section per run: stage shares per
sample, vision vs LLM share, per-token latency, "Why it is slow" (verdicts per stage, a per-step
strip of GPU-busy share, the evidence table), top ops or kernels per stage, and, for GPU runs,
HolisticTraceAnalysis's temporal, kernel and idle-time breakdowns.

HTML assembly only: the numbers come from :mod:`analyze.summary`, the figures from
:mod:`analyze.figures`, HTA's breakdowns are computed beforehand (``hta_breakdown.compute_hta``)
and passed in. The page is a Jinja2 template (``analyze/templates/report.html.j2``) with
autoescaping on, so every value is escaped unless it is marked safe (the figure divs and
plotly.js).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
import plotly
import plotly.graph_objects as go
import plotly.offline
from markupsafe import Markup

from analyze import figures, package_version
from analyze import summary as numbers
from analyze.errors import AnalyzeError, first_line
from analyze.files import write_atomic

if TYPE_CHECKING:
    from analyze.hta_breakdown import HtaResults, HtaTables
    from analyze.tables import Tables

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
TEMPLATE = "report.html.j2"


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _text(value: object) -> str:
    """The value as text, or a dash for a missing value (None, NaN, NA, "")."""
    return "–" if _missing(value) or value == "" else str(value)


def _num(value: object, fmt: str = "{:.2f}") -> str:
    """The number formatted with ``fmt``, or a dash where it is missing or not finite."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    return fmt.format(v) if math.isfinite(v) else "–"


def _check(value: object) -> bool | None:
    """A verification flag for the template: True, False, or None when it was not checked."""
    return None if _missing(value) else bool(value)


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("analyze", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters["num"] = _num
_ENV.filters["text"] = _text


@dataclass(frozen=True)
class Report:
    """A rendered report: the page, its figures by div id, and which of them compare runs."""

    html: str
    figures: dict[str, go.Figure] = field(default_factory=dict)
    comparison_ids: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Note:
    """A boxed note on the page (warn: yellow, something is missing or failed)."""

    text: str
    warn: bool = False


@dataclass(frozen=True)
class Figure:
    """A figure's div (plotly.js is in the page head once) and its caption."""

    div: Markup
    caption: str = ""


@dataclass
class _Collected:
    """What the page holds besides its HTML: the figures by div id and the notes, in page order."""

    figures: dict[str, go.Figure] = field(default_factory=dict)
    comparison_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, div_id: str, fig: go.Figure, caption: str = "", *, comparison: bool = False) -> Figure:
        self.figures[div_id] = fig
        if comparison:
            self.comparison_ids.append(div_id)
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
        return Figure(Markup(div), caption)

    def note(self, text: str, *, warn: bool = False) -> Note:
        self.notes.append(text)
        return Note(text, warn)


def _runs_rows(runs: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "run_id": r.run_id,
            "model": r.model,
            "mode": r.mode,
            "device": r.device,
            "gpu_name": r.gpu_name,
            "torch_version": r.torch_version,
            "transformers_version": r.transformers_version,
            "n_samples": int(r.n_samples),
            "n_skipped": int(r.n_skipped),
            "identity_ok": _check(r.identity_ok),
            "accounting_ok": _check(r.accounting_ok),
            "overhead_ratio": r.overhead_ratio,
            "settings": {c: _setting(getattr(r, c)) for c in numbers.SETTING_COLUMNS if c != "mode"},
        }
        for r in runs.itertuples(index=False)
    ]


def _setting(value: object) -> str:
    """A setting as the run table shows it (compile: on/off; "" -> a dash)."""
    if isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    return _text(value)


def _verdict_rows(verdicts: pd.DataFrame) -> list[dict[str, Any]]:
    """summary.verdict_summary rows for the template: the verdict as words, the other verdicts."""
    return [
        {
            "what": r["what"],
            "verdict": numbers.verdict_name(str(r["bound"])) if r["bound"] else "no verdict",
            "bound": r["bound"],
            "in": f"{r['n_bound']}/{r['n']} {r['unit']}",
            "others": ", ".join(numbers.other_verdicts(r)),
            "gpu_busy_share": r["gpu_busy_share"],
            "remedy": r["remedy"],
        }
        for _, r in verdicts.iterrows()
    ]


def _why_section(page: _Collected, tables: Tables, run: pd.Series, index: int) -> dict[str, Any]:
    """A run's "Why it is slow": verdicts per phase and stage, the per-step GPU-busy strip and the
    evidence table; a CPU-only run gets a note instead of the strip."""
    run_id = str(run["run_id"])
    evidence = numbers.evidence_table(tables, run_id)
    evidence["bound"] = evidence["bound"].map(numbers.verdict_name)
    why: dict[str, Any] = {
        "verdicts": _verdict_rows(numbers.verdict_summary(tables, run_id)),
        "evidence": evidence.to_dict("records") if bool(run["has_gpu"]) else [],
        "note": None,
        "strip": None,
    }
    tokens = tables.tokens.loc[tables.tokens["run_id"] == run_id]
    if not bool(run["has_gpu"]):
        why["note"] = page.note(
            "CPU-only run: every stage and step is host-bound; the GPU verdicts (device, launch, "
            "sync) do not apply."
        )
    elif tokens.empty:
        why["note"] = page.note("No generation steps in these traces: no per-step strip.")
    else:
        why["strip"] = page.figure(
            f"run-{index}-busy",
            figures.busy_strip_figure(tokens),
            "GPU-busy share of each generation step's span (first launch to last kernel end), "
            "with the step's verdict. Hover for the span, launches and time in sync calls.",
        )
    return why


def _setting_comparisons(tables: Tables) -> list[dict[str, Any]]:
    """Runs that differ only in their settings: what changed, and per stage time and verdict."""
    return [
        {
            "base": c.base,
            "other": c.other,
            "settings": [
                {"name": k, "base": _setting(b), "other": _setting(o)} for k, (b, o) in c.settings.items()
            ],
            "stages": [
                {
                    **r,
                    "base_bound": numbers.verdict_name(r["base_bound"]),
                    "other_bound": numbers.verdict_name(r["other_bound"]),
                }
                for r in c.stages.to_dict("records")
            ],
        }
        for c in numbers.setting_comparisons(tables)
    ]


def _comparison(
    page: _Collected, tables: Tables, metrics: pd.DataFrame, colours: dict[str, str]
) -> list[Figure]:
    run_ids = list(metrics["run_id"])
    bands = numbers.token_latency_bands(tables.tokens.loc[tables.tokens["run_id"].isin(run_ids)])
    return [
        page.figure(
            "cmp-stages",
            figures.stage_time_figure(numbers.stage_medians(tables.samples, run_ids), colours),
            "Median host self time per stage and sample, one bar per run.",
            comparison=True,
        ),
        page.figure(
            "cmp-tokens",
            figures.token_latency_figure(bands, tables.tokens, tables.samples, run_ids, colours),
            "Per-token latency: a token is emitted when its step's last device event ends (host "
            "end without device events).",
            comparison=True,
        ),
        page.figure(
            "cmp-vision",
            figures.vision_llm_figure(metrics, colours),
            "Vision's share of vision + LLM time per run (mean over samples).",
            comparison=True,
        ),
    ]


def _hta_section(
    page: _Collected, run: pd.Series, index: int, n_samples: int, hta: HtaResults | None
) -> dict[str, Any]:
    """The HTA part of a run section: a note, or HTA's figures with their caption."""
    if not bool(run["has_gpu"]):
        text = "CPU-only run: HTA's GPU breakdowns (temporal, kernel, idle time) do not apply."
        return {"note": page.note(text)}
    result: HtaTables | str | None = None if hta is None else hta.runs.get(str(run["run_id"]))
    if result is None:
        return {"note": page.note("HTA breakdowns were not computed for this report (HTA turned off).")}
    if isinstance(result, str):
        return {
            "note": page.note(
                f"HTA could not analyse this run: {result}. stagetrace's own figures above are unaffected.",
                warn=True,
            )
        }
    failures = None
    if result.failures:
        text = f"HTA failed on {len(result.failures)} sample(s), left out: {result.failures[0]}"
        failures = page.note(text, warn=True)
    return {
        "note": None,
        "n_analysed": len(result.sample_ids),
        "n_samples": n_samples,
        "failures": failures,
        "types": page.figure(f"run-{index}-hta-types", figures.hta_kernel_type_figure(result.kernel_types)),
        "kernels": page.figure(f"run-{index}-hta-kernels", figures.hta_kernels_figure(result.top_kernels)),
        "temporal": page.figure(f"run-{index}-hta-temporal", figures.hta_temporal_figure(result.temporal)),
        "idle": page.figure(
            f"run-{index}-hta-idle",
            figures.hta_idle_figure(result.stream_idle),
            "host_wait: the stream waits for the CPU to launch work (launch-bound); "
            "kernel_wait: short gaps between back-to-back kernels; other: the rest.",
        ),
    }


def _first_trace(run: pd.Series, samples: pd.DataFrame) -> str | None:
    """The path of the run's first sample trace, to open in Perfetto (None without samples)."""
    if samples.empty:
        return None
    return str(Path(str(run["trace_dir"])) / str(samples["trace_file"].iloc[0]))


def _random_weights_note(page: _Collected, run: pd.Series) -> Note | None:
    """Runs captured with --weights random: their text means nothing, only their timings do."""
    if str(run.get("weights", "")) != "random":
        return None
    what = (
        "a toy-sized model built for demos and tests, so the timings say little about the real one"
        if str(run.get("model", "")).startswith("tiny-")
        else "the published architecture at full size (capture --weights random), so the timings are real"
    )
    return page.note(
        f"Random weights: {what}, but the generated text is meaningless; generation lengths are fixed "
        "only where the run used --min-new-tokens.",
        warn=True,
    )


def _run_section(
    page: _Collected,
    tables: Tables,
    run: pd.Series,
    index: int,
    colours: dict[str, str],
    metrics: pd.DataFrame,
    hta: HtaResults | None,
) -> dict[str, Any]:
    """Everything one run's section shows, figures rendered to divs, notes collected."""
    run_id = str(run["run_id"])
    samples = tables.samples.loc[tables.samples["run_id"] == run_id]
    samples = samples.sort_values(["sample_index", "sample_id"])
    section: dict[str, Any] = {
        "index": index,
        "run_id": run_id,
        "model": run["model"],
        "device": run["device"],
        "trace": _first_trace(run, samples),
        "empty": None,
        "random_weights": _random_weights_note(page, run),
    }
    if samples.empty:
        section["empty"] = page.note(f"No readable sample traces in run {run_id}.", warn=True)
        return section
    section["stages"] = page.figure(
        f"run-{index}-stages",
        figures.stage_share_figure(tables.samples, run_id),
        "Each stage's host self time as a share of the sample's wall time; the seven stages "
        "add up to it. Hover for milliseconds.",
    )
    section["vision"] = page.figure(
        f"run-{index}-vision",
        figures.vision_llm_figure(metrics.loc[metrics["run_id"] == run_id], colours),
        "Vision's share of vision + LLM time, mean over samples.",
    )
    section["stage_ms"] = page.figure(
        f"run-{index}-stage-ms",
        figures.stage_time_figure(numbers.stage_medians(tables.samples, [run_id]), colours),
        "Median host self time per stage.",
    )
    tokens = tables.tokens.loc[tables.tokens["run_id"] == run_id]
    section["tokens_note"] = (
        page.note("No generation steps in these traces: no per-token latency.") if tokens.empty else None
    )
    if not tokens.empty:
        bands = numbers.token_latency_bands(tokens)
        section["tokens"] = page.figure(
            f"run-{index}-tokens",
            figures.token_latency_figure(bands, tokens, tables.samples, [run_id], colours),
        )
    section["why"] = _why_section(page, tables, run, index)
    kind = numbers.ops_kind(tables.ops, run)
    top = numbers.top_ops(tables.ops, run_id, kind, len(samples))
    section["ops_kind"] = kind
    section["ops_note"] = page.note(f"No {kind} events in this run's traces.") if top.empty else None
    if not top.empty:
        section["ops"] = page.figure(
            f"run-{index}-ops",
            figures.top_ops_figure(top, kind),
            "Kernel time per sample, each kernel in the stage that launched it."
            if kind == "kernel"
            else "CPU op time per sample; op times are inclusive, so an op and the ops it calls "
            "(aten::linear and aten::addmm) both count the same time.",
        )
    section["hta"] = _hta_section(page, run, index, len(samples), hta)
    return section


def render_report(tables: Tables, hta: HtaResults | None) -> Report:
    """The report page (HTML string) and its figures, from the tables and HTA's results.

    ``hta`` is ``hta_breakdown.compute_hta(tables)``, or None where HTA was turned off (the
    GPU runs then say so). Nothing here reads a file.
    """
    runs = tables.runs.reset_index(drop=True)
    if runs.empty:
        raise AnalyzeError("no runs in the tables; analyse at least one run folder or trace before --html")
    run_ids = [str(r) for r in runs["run_id"]]
    colours = figures.run_colours(run_ids)
    metrics = numbers.run_metrics(tables, run_ids)
    page = _Collected()
    comparison = _comparison(page, tables, metrics, colours) if len(run_ids) > 1 else []
    sections = [
        _run_section(page, tables, run, i, colours, metrics, hta)
        for i, (_, run) in enumerate(runs.iterrows())
    ]
    hta_version = "turned off" if hta is None else hta.version or "not installed"
    html = _ENV.get_template(TEMPLATE).render(
        run_ids=run_ids,
        n_samples=len(tables.samples),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        versions={
            "stagetrace": package_version(),
            "pandas": pd.__version__,
            "plotly": plotly.__version__,
            "HolisticTraceAnalysis": hta_version,
        },
        runs=_runs_rows(runs),
        glance=numbers.comparison_table(metrics).to_dict("records"),
        comparison=comparison,
        settings=_setting_comparisons(tables) if len(run_ids) > 1 else [],
        sections=sections,
        plotly_js=Markup(plotly.offline.get_plotlyjs()),
    )
    return Report(
        html=html, figures=page.figures, comparison_ids=tuple(page.comparison_ids), notes=tuple(page.notes)
    )


def write_report(tables: Tables, hta: HtaResults | None, out_path: Path) -> Path:
    """Write the self-contained report.html to ``out_path`` atomically; returns the path."""
    out_path = Path(out_path)
    page = render_report(tables, hta).html
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out_path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    except OSError as exc:
        raise AnalyzeError(
            f"{out_path}: cannot write the report ({first_line(exc)}); the tables beside it are written"
        ) from None
    return out_path
