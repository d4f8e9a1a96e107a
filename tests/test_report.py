"""report.html: sections, notes, comparison numbers by hand, escaping, and a real headless-browser render."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.offline
import pytest
from kineto_builders import write_verdict_runs
from markupsafe import escape
from report_fixtures import RUN_CPU, RUN_GPU, make_tables

from analyze import figures, hta_breakdown, report, summary
from analyze.errors import AnalyzeError
from analyze.tables import Tables, analyze_paths

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def gpu_report(tmp_path_factory: pytest.TempPathFactory) -> report.Report:
    """Two runs (CPU and GPU with real-format traces), HTA's results computed first."""
    tables = make_tables(tmp_path_factory.mktemp("traces"), gpu=True, gpu_traces=True)
    return report.render_report(tables, hta_breakdown.compute_hta(tables))


def _render_with_hta(tables: Tables) -> report.Report:
    """Compute HTA's results as the CLI does, then render."""
    return report.render_report(tables, hta_breakdown.compute_hta(tables))


def _plot_json(page: str, div_id: str) -> str:
    """The Plotly.newPlot(...) call of one figure div in the page."""
    m = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",(.*?)\)\s*};', page, flags=re.S)
    assert m, f"no Plotly.newPlot for {div_id}"
    return m.group(1)


# ---------------------------------------------------------------- numbers


def test_comparison_table_by_hand(tmp_path: Path) -> None:
    tables = make_tables(tmp_path)
    t = summary.comparison_table(summary.run_metrics(tables, [RUN_CPU, RUN_GPU])).set_index("run_id")
    assert list(t.index) == [RUN_CPU, RUN_GPU]
    assert t.loc[RUN_CPU, "ttft_ms"] == 13.0 and t.loc[RUN_GPU, "ttft_ms"] == 26.0
    assert t.loc[RUN_GPU, "ttft_ratio"] == pytest.approx(2.0)
    assert t.loc[RUN_GPU, "tpot_ratio"] == pytest.approx(6.5 / 4.5)
    assert t.loc[RUN_GPU, "vision_ratio"] == pytest.approx(41.5 / 21.5)
    # tokens/s = 8000 / generate_ms: medians (8000/110 + 8000/120) / 2 and half of that
    cpu_tps = (8000 / 110 + 8000 / 120) / 2
    assert t.loc[RUN_CPU, "tokens_per_s"] == pytest.approx(cpu_tps)
    assert t.loc[RUN_GPU, "tokens_per_s_ratio"] == pytest.approx(0.5)
    assert t.loc[RUN_CPU, "ttft_ratio"] == 1.0
    assert t.loc[RUN_CPU, "largest_stage"] == "decode"
    assert np.isnan(t.loc[RUN_CPU, "vision_share_gpu"])
    # the order given decides the baseline
    flipped = summary.comparison_table(summary.run_metrics(tables, [RUN_GPU, RUN_CPU])).set_index("run_id")
    assert flipped.loc[RUN_CPU, "ttft_ratio"] == pytest.approx(0.5)


def test_token_latency_bands_by_hand(tmp_path: Path) -> None:
    tokens = make_tables(tmp_path).tokens
    bands = summary.token_latency_bands(tokens).set_index(["run_id", "step"])
    # step 1 of the CPU run: tpot + 0.1 * (1 - 4) = 3.7, 3.7, 4.7, 4.7
    row = bands.loc[(RUN_CPU, 1)]
    assert row["median_ms"] == pytest.approx(4.2)
    assert row["p10_ms"] == pytest.approx(3.7)
    assert row["p90_ms"] == pytest.approx(4.7)
    assert 0 not in bands.index.get_level_values("step")  # step 0 (TTFT) is not a decode step


def test_top_ops_picks_kernels_on_gpu_runs(tmp_path: Path) -> None:
    tables = make_tables(tmp_path, gpu=True)
    runs = tables.runs.set_index("run_id", drop=False)
    assert summary.ops_kind(tables.ops, runs.loc[RUN_GPU]) == "kernel"
    assert summary.ops_kind(tables.ops, runs.loc[RUN_CPU]) == "cpu_op"
    top = summary.top_ops(tables.ops, RUN_CPU, "cpu_op", 4)
    assert list(dict.fromkeys(top["stage"])) == ["stage3:vision", "stage4:prefill", "stage4:decode"]
    decode = top.loc[top["stage"] == "stage4:decode"].iloc[0]
    assert decode["name"] == "aten::linear"
    assert decode["per_sample_ms"] == pytest.approx(4 * 40 * 5 / 1000)  # 4 calls x 200 us per sample
    assert decode["share"] == pytest.approx(40 / (40 + 30 + 5 + 3))


# ---------------------------------------------------------------- page content


def test_sections_header_and_verification(tmp_path: Path) -> None:
    rep = report.render_report(make_tables(tmp_path), None)
    page = rep.html
    for text in (
        "stagetrace report",
        'id="glance"',
        'id="compare"',
        'id="run-0"',
        'id="run-1"',
        "tiny-llava",
        "tiny-eventgpt",
        "2.13.0",
        "5.23.0",
        "ui.perfetto.dev",
        "Open trace file",
        "✓ identical",
        "not checked",
        "✗ does not add up",
        "1.07×",
        "TTFT ÷ first",
        "<th>prefill tokens</th><th>KV cache MB</th>",
        '<td class="num">639</td><td class="num">25.00</td>',
    ):
        assert text in page, text
    trace = tmp_path / RUN_CPU / "sample-00000.pt.trace.json.gz"
    assert str(trace) in page
    # plotly.js inline exactly once, and every figure without its own copy
    bundle = plotly.offline.get_plotlyjs()
    assert page.count(bundle[:300]) == 1
    assert len(page) < len(bundle) + 2_000_000
    assert set(rep.figures) >= {
        "cmp-stages",
        "cmp-tokens",
        "cmp-vision",
        "run-0-stages",
        "run-0-tokens",
        "run-0-ops",
        "run-1-stages",
        "run-1-vision",
    }
    for div_id in rep.figures:
        assert f'id="{div_id}"' in page


def test_two_models_appear_in_every_comparison_figure(gpu_report: report.Report) -> None:
    assert set(gpu_report.comparison_ids) == {"cmp-stages", "cmp-tokens", "cmp-vision"}
    for div_id in gpu_report.comparison_ids:
        names = {trace.name for trace in gpu_report.figures[div_id].data}
        assert {RUN_CPU, RUN_GPU} <= names, div_id
        plot = _plot_json(gpu_report.html, div_id)
        for run in (RUN_CPU, RUN_GPU):
            assert f'"name":"{run}"' in plot, (div_id, run)
    # consistent colours: a run has the same colour in every comparison figure
    colours = figures.run_colours([RUN_CPU, RUN_GPU])
    for div_id in gpu_report.comparison_ids:
        for trace in gpu_report.figures[div_id].data:
            if trace.name in colours and trace.type == "bar":
                assert trace.marker.color == colours[trace.name]


def test_single_run_has_no_comparison(tmp_path: Path) -> None:
    rep = report.render_report(make_tables(tmp_path, runs=[RUN_CPU]), None)
    assert 'id="compare"' not in rep.html
    assert "TTFT ÷ first" not in rep.html
    assert rep.comparison_ids == ()


def test_cpu_only_runs_say_hta_does_not_apply(tmp_path: Path) -> None:
    rep = _render_with_hta(make_tables(tmp_path, gpu=False))
    msg = "CPU-only run: HTA's GPU breakdowns (temporal, kernel, idle time) do not apply."
    assert rep.notes.count(msg) == 2
    assert rep.html.count(str(escape(msg))) == 2
    assert not any("hta" in div_id for div_id in rep.figures)


def test_hta_figures_for_gpu_run(gpu_report: report.Report) -> None:
    for name in ("temporal", "types", "kernels", "idle"):
        assert f"run-1-hta-{name}" in gpu_report.figures
    assert not any(k.startswith("run-0-hta") for k in gpu_report.figures)
    temporal = gpu_report.figures["run-1-hta-temporal"]
    compute = next(t for t in temporal.data if t.name == "compute")
    assert list(compute.y) == pytest.approx([150 / 350] * 4)
    assert "Computed by HolisticTraceAnalysis on 4 of 4" in gpu_report.html


def test_hta_failure_is_a_visible_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hta.trace_analysis

    class Broken:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("boom: odd trace")

    monkeypatch.setattr(hta.trace_analysis, "TraceAnalysis", Broken)
    rep = _render_with_hta(make_tables(tmp_path, gpu=True, gpu_traces=True))
    note = next(n for n in rep.notes if n.startswith("HTA could not analyse this run"))
    assert "RuntimeError: boom: odd trace" in note
    assert RUN_GPU in note
    assert 'class="note warn"' in rep.html and "boom: odd trace" in rep.html
    assert "run-1-stages" in rep.figures and "run-1-tokens" in rep.figures  # the rest still renders
    assert not any("hta" in div_id for div_id in rep.figures)


def test_a_sample_hta_fails_on_is_named_and_the_rest_shown(tmp_path: Path) -> None:
    tables = make_tables(tmp_path, gpu=True, gpu_traces=True)
    (tmp_path / RUN_GPU / "sample-00002.pt.trace.json.gz").write_bytes(b"garbage")
    rep = _render_with_hta(tables)
    assert any(n.startswith("HTA failed on 1 sample(s), left out: sample-00002: ") for n in rep.notes)
    assert "Computed by HolisticTraceAnalysis on 3 of 4" in rep.html
    assert len(rep.figures["run-1-hta-temporal"].data[0].x) == 3


def test_foreign_run_without_tokens_ops_or_metadata_still_renders(tmp_path: Path) -> None:
    t = make_tables(tmp_path, runs=[RUN_CPU])
    runs = t.runs.assign(
        model="",
        mode="",
        device="",
        torch_version="",
        transformers_version="",
        has_manifest=False,
        overhead_ratio=float("nan"),
    )
    runs["identity_ok"] = pd.array([pd.NA], dtype="boolean")
    runs["accounting_ok"] = pd.array([pd.NA], dtype="boolean")
    samples = t.samples.assign(ttft_ms=float("nan"), tpot_ms=float("nan"), total_ms=0.0)
    tables = Tables(
        runs=runs, samples=samples, stages=t.stages, tokens=t.tokens.iloc[0:0], ops=t.ops.iloc[0:0]
    )
    rep = _render_with_hta(tables)
    assert "No generation steps in these traces: no per-token latency." in rep.notes
    assert "No cpu_op events in this run's traces." in rep.notes
    assert rep.html.count("not checked") >= 2
    glance = rep.html[rep.html.index('id="glance"') : rep.html.index('id="run-0"')]
    assert ">nan<" not in glance.lower() and "–" in glance
    assert "run-0-tokens" not in rep.figures and "run-0-stages" in rep.figures


def test_hta_not_installed_is_a_visible_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hta.trace_analysis", None)
    rep = _render_with_hta(make_tables(tmp_path, gpu=True, gpu_traces=True))
    assert any("HolisticTraceAnalysis is not installed" in n for n in rep.notes)


def test_hta_off_is_said(tmp_path: Path) -> None:
    rep = report.render_report(make_tables(tmp_path, gpu=True), None)
    assert rep.notes.count("HTA breakdowns were not computed for this report (HTA turned off).") == 1
    assert "HolisticTraceAnalysis turned off" in rep.html  # the header says so too


def test_hta_results_are_drawn_without_reading_the_traces_again(tmp_path: Path) -> None:
    tables = make_tables(tmp_path, gpu=True, gpu_traces=True)
    hta = hta_breakdown.compute_hta(tables)
    assert set(hta.runs) == {RUN_GPU}  # CPU-only runs have no entry
    shutil.rmtree(tmp_path / RUN_GPU)  # rendering must not need the trace files any more
    rep = report.render_report(tables, hta)
    temporal = rep.figures["run-1-hta-temporal"]
    compute = next(t for t in temporal.data if t.name == "compute")
    assert list(compute.y) == pytest.approx([150 / 350] * 4)
    assert "Computed by HolisticTraceAnalysis on 4 of 4" in rep.html
    assert f"HolisticTraceAnalysis {hta.version}" in rep.html


def test_a_run_id_with_markup_is_escaped(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script><b>run'
    t = make_tables(tmp_path)
    renamed = {
        f.name: getattr(t, f.name).assign(run_id=getattr(t, f.name)["run_id"].replace(RUN_CPU, evil))
        for f in dataclasses.fields(t)
    }
    rep = report.render_report(Tables(**renamed), None)
    assert "<script>alert" not in rep.html and "<b>run" not in rep.html
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;run"
    # title, nav link, runs table, glance table, glance caption (the first run), run heading
    assert rep.html.count(escaped) >= 6
    glance = rep.html[rep.html.index('id="glance"') : rep.html.index('id="compare"')]
    assert f"<td><b>{escaped}</b></td>" in glance
    assert f'<a href="#run-0">{escaped}</a>' in rep.html


def test_no_rendering_module_imports_hta() -> None:
    code = (
        "import sys; import analyze.report, analyze.figures, analyze.terminal, analyze.summary; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'hta' or m == 'analyze.hta_breakdown']; "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_write_report_is_atomic_and_returns_the_path(tmp_path: Path) -> None:
    out = tmp_path / "analysis" / "report.html"
    got = report.write_report(make_tables(tmp_path), None, out)
    assert got == out and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert out.stat().st_mode == plain.stat().st_mode  # the umask's mode, not mkstemp's 0600


def test_no_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AnalyzeError, match="no runs"):
        report.render_report(make_tables(tmp_path, runs=[]), None)


# ---------------------------------------------------------------- real browser


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path: Path, gpu_report: report.Report) -> None:
    chromium = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium not found (apt-get install -y chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    page_path = tmp_path / "report.html"
    page_path.write_text(gpu_report.html, encoding="utf-8")
    url = page_path.as_uri()
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.route(
                "**/*", lambda route: route.continue_() if route.request.url == url else route.abort()
            )
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on(
                "console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None
            )
            page.on("request", lambda req: requests.append(req.url))
            page.goto(url)
            page.wait_for_function(
                "() => { const divs = document.querySelectorAll('.plotly-graph-div');"
                " return divs.length > 0 && Array.from(divs).every(d => d.querySelector('.main-svg')); }",
                timeout=60_000,
            )
            ids = page.eval_on_selector_all(".plotly-graph-div", "divs => divs.map(d => d.id)")
            rendered = page.eval_on_selector_all(".plotly .main-svg", "svgs => svgs.length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests == [url]
    assert sorted(ids) == sorted(gpu_report.figures)
    assert rendered >= len(ids)
    assert (tmp_path / "report.png").stat().st_size > 10_000


# ---------------------------------------------------------------- why it is slow


def _why(page: str, index: int) -> str:
    """The "Why it is slow" part of run section ``index``."""
    start = page.index(f'<h3 id="why-{index}">Why it is slow</h3>')
    return page[start : page.index("<h3>Top ", start)]


@pytest.fixture(scope="module")
def verdict_report(tmp_path_factory: pytest.TempPathFactory) -> report.Report:
    """Two runs of one model that differ in cache and compile: launch-bound vs graph decode."""
    tables = analyze_paths(write_verdict_runs(tmp_path_factory.mktemp("verdicts")))[0]
    return report.render_report(tables, None)


def test_why_section_has_verdicts_strip_and_evidence(verdict_report: report.Report) -> None:
    rep = verdict_report
    eager = _why(rep.html, 0)
    row = next(r for r in eager.split("<tr>") if r.startswith("<td>decode</td><td><b>"))
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells == [
        "decode",
        "<b>launch-bound</b>",
        "3/3 steps",
        "–",
        "4%",
        "try --cache static --compile (CUDA graphs: one launch per step)",
    ]
    assert "<td>stage2:preprocess</td><td><b>host-bound</b></td>" in eager
    # the evidence table: decode per step
    ev = next(r for r in eager.split("<tr>") if r.startswith("<td>decode</td><td>step</td>"))
    assert re.findall(r"<td[^>]*>(.*?)</td>", ev)[2:7] == ["launch-bound", "9.962", "4%", "200.0", "0.0"]
    # the per-step strip: one cell per step, coloured by GPU-busy share, the verdict written in it
    strip = rep.figures["run-0-busy"].data[0]
    assert list(strip.x) == ["0", "1", "2", "3"] and list(strip.y) == ["sample-00000"]
    assert np.asarray(strip.z, dtype=float)[0].tolist() == pytest.approx([50_000 / 50_090] + [400 / 9962] * 3)
    assert np.asarray(strip.text)[0].tolist() == ["device", "launch", "launch", "launch"]
    assert 'id="run-0-busy"' in rep.html and 'id="run-1-busy"' in rep.html
    assert "<td><b>device-bound</b></td><td>3/3 steps</td>" in _why(rep.html, 1)


def test_runs_that_differ_in_settings_are_compared_per_stage(verdict_report: report.Report) -> None:
    page = verdict_report.html
    runs = page[page.index("<h3>Runs</h3>") : page.index('id="glance"')]
    graphs = next(r for r in runs.split("<tr>") if "<b>graphs</b>" in r)
    # dtype, attention, cache, compile, load in, weights
    assert re.findall(r"<td[^>]*>(.*?)</td>", graphs)[5:11] == [
        "–",
        "sdpa",
        "static",
        "on",
        "–",
        "pretrained",
    ]
    cmp = page[page.index("What the settings changed") : page.index('id="run-0"')]
    assert "What the settings changed: graphs vs eager" in cmp
    assert "cache dynamic → static; compile off → on" in cmp
    decode = next(r for r in cmp.split("<tr>") if r.startswith("<td>stage4:decode</td>"))
    cells = re.findall(r"<td[^>]*>(.*?)</td>", decode)
    assert cells[1:4] == ["30.00", "0.30", "0.01×"]  # host self ms: the waiting moved to stage4:other
    assert cells[4:7] == ["29.89", "27.12", "0.91×"]  # span: first launch to last kernel end
    assert cells[7] == "launch-bound → <b>device-bound</b>"
    pre = next(r for r in cmp.split("<tr>") if r.startswith("<td>stage2:preprocess</td>"))
    assert pre.endswith("<td>host-bound (same)</td></tr>\n")


def test_cpu_only_run_says_gpu_verdicts_do_not_apply(tmp_path: Path) -> None:
    rep = report.render_report(make_tables(tmp_path, gpu=False), None)
    why = _why(rep.html, 0)
    assert "CPU-only run: every stage and step is host-bound" in why
    assert "<b>host-bound</b>" in why and "launch-bound" not in why
    assert 'class="evidence"' not in why and "run-0-busy" not in rep.figures


def test_fixture_gpu_run_strip_marks_launch_bound_steps(gpu_report: report.Report) -> None:
    strip = gpu_report.figures["run-1-busy"].data[0]
    assert list(strip.x) == [str(k) for k in range(8)] and len(strip.y) == 4
    assert np.asarray(strip.text)[:, 1:4].tolist() == [["launch"] * 3] * 4
    assert "run-0-busy" not in gpu_report.figures  # the CPU run


def test_random_weight_runs_are_marked(tmp_path: Path) -> None:
    tables = make_tables(tmp_path)
    runs = tables.runs.copy()
    runs["weights"] = ["pretrained", "random"]
    runs["model"] = ["llava-1.5", "llava-1.5"]
    rep = report.render_report(dataclasses.replace(tables, runs=runs), None)
    marked = [n for n in rep.notes if n.startswith("Random weights: the published architecture at full size")]
    assert len(marked) == 1  # the random run only
    section = rep.html.split(f'id="run-1">{RUN_GPU}')[1]
    assert "the generated text is meaningless" in section.split("<h2")[0]
    plain = report.render_report(tables, None)
    assert not any("Random weights" in n for n in plain.notes)
    runs["weights"], runs["model"] = ["random", "random"], ["tiny-llava", "llava-1.5"]
    notes = report.render_report(dataclasses.replace(tables, runs=runs), None).notes
    toy = [n for n in notes if n.startswith("Random weights: a toy-sized model")]
    assert len(toy) == 1 and "say little about the real one" in toy[0]
