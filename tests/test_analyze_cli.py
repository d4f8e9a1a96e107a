"""The ``analyze`` command, in-process with click's CliRunner: exit codes, outputs, options."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from kineto_builders import manifest, vlm_trace, write_run, write_verdict_runs

from analyze import hta_breakdown
from analyze.cli import main
from analyze.tables import read_tables

DATA = Path(__file__).parent / "data" / "kineto-gpu"
TABLES = ("runs", "samples", "stages", "tokens", "ops")


def _table(out: Path, name: str) -> pd.DataFrame:
    return getattr(read_tables(out), name)


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result: Result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], result.stderr


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(
        tmp_path / "traces" / "r1", [vlm_trace("4.x"), vlm_trace("5.x", sample=1)], manifest("r1")
    )


def test_version_comes_from_the_package_metadata() -> None:
    from importlib import metadata

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"analyze, version {metadata.version('stagetrace')}"


def test_help_has_examples() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--stage-map" in result.output and "--jobs" in result.output


def test_run_folder_writes_tables_and_prints_the_summary(run_dir: Path) -> None:
    result = _run(run_dir)
    assert result.exit_code == 0, result.output
    out = run_dir / "analysis"
    assert sorted(p.name for p in out.iterdir()) == ["snapshots", "tables"]
    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(
        ["_index.parquet", "_snapshot.json", *TABLES]
    )
    assert "run r1  model tiny-llava" in result.stdout
    assert "TTFT 0.320 ms" in result.stdout and "TPOT 0.120 ms" in result.stdout
    assert "stage3:vision/tower" in result.stdout
    assert "tables: " in result.stdout and "traces: 2 analysed, 0 reused" in result.stdout
    samples = _table(out, "samples")
    assert samples["ttft_ms"].tolist() == pytest.approx([0.32, 0.32])
    # Running again overwrites cleanly and reads no output as input.
    again = _run(run_dir.parent)
    assert again.exit_code == 0
    assert sorted(p.name for p in (run_dir.parent / "analysis").iterdir()) == ["snapshots", "tables"]
    assert _table(run_dir.parent / "analysis", "runs")["run_id"].tolist() == ["r1"]


def test_out_and_quiet(run_dir: Path, tmp_path: Path) -> None:
    result = _run(run_dir, "--out", tmp_path / "o", "-q")
    assert result.exit_code == 0 and result.stdout == ""
    assert len(_table(tmp_path / "o", "stages")) > 0


def test_single_trace_file(run_dir: Path) -> None:
    result = _run(run_dir / "sample-00001.pt.trace.json.gz")
    assert result.exit_code == 0, result.output
    samples = _table(run_dir / "analysis", "samples")
    assert samples["sample_id"].tolist() == ["sample-00001"] and samples["run_id"].tolist() == ["r1"]


def test_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    _one_line_error(_run(tmp_path / "nope"), "no such file or folder")


def test_empty_folder_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line_error(_run(tmp_path / "empty"), "no trace files")


def test_nothing_readable_is_a_one_line_error_after_the_warnings(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.json").write_text('{"traceEvents": [')
    (d / "b.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    result = _run(d)
    assert result.exit_code == 2 and "Traceback" not in result.output
    err = result.stderr.strip().splitlines()
    assert err[-1].startswith("Error: none of the 2 trace files could be read")
    assert any("a.json" in line and line.startswith("warning: ") for line in err)
    assert any("b.json.gz" in line and "gzip" in line for line in err)


def test_a_bad_trace_is_skipped_and_the_rest_analysed(run_dir: Path) -> None:
    (run_dir / "sample-00002.pt.trace.json.gz").write_bytes(b"")
    result = _run(run_dir)
    assert result.exit_code == 0
    assert "warning: " in result.stderr and "sample-00002.pt.trace.json.gz" in result.stderr
    assert "(2 traces, 1 skipped)" in result.stdout


def test_stage_options_attribute_a_foreign_trace(tmp_path: Path) -> None:
    d = tmp_path / "foreign"
    d.mkdir()
    shutil.copy(DATA / "encoder_decoder_rank0.json.gz", d)
    result = _run(d, "--stage", "encoder=## encoder fp8", "--stage", "decoder=## decoder fp8")
    assert result.exit_code == 0, result.output
    stages = _table(d / "analysis", "stages").set_index("stage")
    assert stages.loc["encoder", "gpu_kernel_ms"] == pytest.approx(8.864)
    assert stages.loc["decoder", "gpu_kernel_ms"] == pytest.approx(6.467)
    assert "encoder" in result.stdout and "8.864" in result.stdout

    toml = tmp_path / "stages.toml"
    toml.write_text('[stages]\nforward = "^## forward ##$"\n')
    result = _run(d, "--stage-map", toml)
    assert result.exit_code == 0, result.output
    stages = _table(d / "analysis", "stages")
    assert set(stages["stage"]) == {"forward", "unlabelled"}


def test_bad_stage_option_and_map_are_one_line_errors(run_dir: Path, tmp_path: Path) -> None:
    _one_line_error(_run(run_dir, "--stage", "no-equals-sign"), "NAME=REGEX")
    _one_line_error(_run(run_dir, "--stage", "x=(unclosed"), "bad regex")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stages\n")
    _one_line_error(_run(run_dir, "--stage-map", bad), "not valid TOML")


def test_jobs_2_gives_the_same_tables_as_jobs_1(run_dir: Path, tmp_path: Path) -> None:
    write_run(run_dir.parent / "r2", [vlm_trace("5.x", gpu=False), vlm_trace("4.x", flows=False)])
    assert _run(run_dir.parent, "--out", tmp_path / "one", "-j", "1", "-q").exit_code == 0
    assert _run(run_dir.parent, "--out", tmp_path / "two", "--jobs", "2", "-q").exit_code == 0
    for table in TABLES:
        one = _table(tmp_path / "one", table)
        two = _table(tmp_path / "two", table)
        pd.testing.assert_frame_equal(one, two)
        assert len(one) > 0


def test_html_and_open_call_the_report(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object, Path]] = []
    computed = object()

    def write_report(tables: object, hta: object, out_path: Path) -> Path:
        calls.append((tables, hta, out_path))
        out_path.write_text("<html></html>")
        return out_path

    fake = types.ModuleType("analyze.report")
    fake.write_report = write_report  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "analyze.report", fake)
    monkeypatch.setattr(hta_breakdown, "compute_hta", lambda tables: computed)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)

    result = _run(run_dir, "--html")
    assert result.exit_code == 0, result.output
    assert calls[-1][2] == run_dir / "analysis" / "report.html"
    assert calls[-1][1] is computed  # HTA's results are computed by the CLI and passed in
    assert f"report: {run_dir / 'analysis' / 'report.html'}" in result.stdout
    assert opened == []
    assert _run(run_dir, "--open").exit_code == 0
    assert len(calls) == 2 and opened == [(run_dir / "analysis" / "report.html").resolve().as_uri()]


def test_no_hta_renders_the_report_without_calling_hta(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hta(tables: object) -> None:
        raise AssertionError("HTA was called despite --no-hta")

    monkeypatch.setattr(hta_breakdown, "compute_hta", no_hta)
    monkeypatch.setattr(hta_breakdown, "run_hta", no_hta)
    result = _run(run_dir, "--html", "--no-hta", "-q")
    assert result.exit_code == 0, result.output
    page = (run_dir / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "HTA breakdowns were not computed for this report (HTA turned off)." in page
    assert "HolisticTraceAnalysis turned off" in page
    assert 'id="run-0-stages"' in page and "run-0-hta" not in page


def test_html_passes_the_cli_hta_results_to_the_report(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    def fake_hta(tables: object) -> hta_breakdown.HtaResults:
        seen.append(tables)
        return hta_breakdown.HtaResults(version="9.9.9", runs={"r1": "HTA says no"})

    monkeypatch.setattr(hta_breakdown, "compute_hta", fake_hta)
    result = _run(run_dir, "--html", "-q")
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    page = (run_dir / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "HTA could not analyse this run: HTA says no." in page
    assert "HolisticTraceAnalysis 9.9.9" in page


def test_analyze_does_not_import_torch() -> None:
    code = (
        "import sys; import analyze.cli, analyze.tables, analyze.parse, analyze.attribute, analyze.tokens, "
        "analyze.trace_tables, analyze.summary, analyze.stagemap, analyze.discover, analyze.report, "
        "analyze.figures, analyze.terminal, analyze.hta_breakdown, hta.trace_analysis, "
        "analyze.store, analyze.incremental, analyze.cluster, importlib.util; "
        "importlib.util.find_spec('distributed') and __import__('distributed'); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_run_with_nothing_readable_beside_a_good_one(run_dir: Path) -> None:
    bad = run_dir.parent / "bad"
    bad.mkdir()
    (bad / "x.json").write_text("{")
    result = _run(run_dir.parent)
    assert result.exit_code == 0, result.output
    assert "run bad  (0 traces, 1 skipped)\n  no trace of this run could be read" in result.stdout
    runs = _table(run_dir.parent / "analysis", "runs").set_index("run_id")
    assert runs.loc["bad", "n_samples"] == 0 and runs.loc["bad", "n_skipped"] == 1
    assert runs.loc["r1", "n_samples"] == 2


@pytest.mark.parametrize("block", ["folder", "disk_full"])
def test_an_unwritable_report_is_one_line_and_the_tables_are_kept(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: str
) -> None:
    """Issue 10.5: `mkdir -p o/report.html` (or a full disk) gave a traceback, exit 1."""
    out = tmp_path / "o"
    if block == "folder":
        (out / "report.html").mkdir(parents=True)
    else:
        import analyze.report

        def full(path: Path, write: object, **kw: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(analyze.report, "write_atomic", full)
    result = _run(run_dir, "--out", out, "--html", "--no-hta", "-q")
    _one_line_error(result, f"{out / 'report.html'}: cannot write the report")
    assert len(read_tables(out).samples) == 2  # the tables were written before the report


def test_traces_from_different_gpus_say_so_per_sample_and_per_run(tmp_path: Path) -> None:
    """Issue 10: B200, MI300X and H100 traces in one folder used to be one run named after the first."""
    names = ("NVIDIA B200", "AMD Instinct MI300X", "NVIDIA H100 80GB HBM3")
    traces = []
    for i, name in enumerate(names):
        t = vlm_trace(sample=i)
        t.device = {**t.device, "name": name}
        traces.append(t)
    folder = write_run(tmp_path / "mixed", traces)
    result = _run(folder, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    samples = _table(tmp_path / "o", "samples")
    runs = _table(tmp_path / "o", "runs")
    assert list(samples["gpu_name"]) == list(names)
    assert bool(runs["mixed_devices"].iloc[0]) and runs["gpu_name"].iloc[0] == " | ".join(sorted(names))
    assert "its traces come from different devices" in result.stderr + result.output
    assert "NVIDIA B200 (1)" in result.stderr + result.output


def test_cli_prints_the_verdicts(tmp_path: Path) -> None:
    eager, graphs = write_verdict_runs(tmp_path)
    result = _run(eager, graphs, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (
        "    decode: launch-bound in 3/3 steps (GPU busy 4% of each step, median) -> try --cache static "
        "--compile (CUDA graphs: one launch per step)\n"
    ) in result.stdout
    assert "    decode: device-bound in 3/3 steps" in result.stdout
    tokens = _table(tmp_path / "out", "tokens")
    decode = tokens[(tokens["run_id"] == "graphs") & (tokens["step"] > 0)]
    assert decode["n_launches"].tolist() == [1, 1, 1] and decode["n_kernels"].tolist() == [300] * 3


# -- issue 10 (items 6, 9, 13) and issue 14 (start-up) ---------------------------------------------
@pytest.mark.parametrize(
    "content", ['[{"a": 1}]', '{"traceEvents": [{"ph": 3}]}', '{"traceEvents": [{"ph": "i", "ts": 1}]}']
)
def test_json_that_is_no_trace_given_alone_is_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    _one_line_error(_run(path), 'not a trace: no complete ("ph": "X") event')


def test_json_that_is_no_trace_in_a_run_folder_is_skipped_with_a_warning(run_dir: Path) -> None:
    """A dataset's instruction JSON copied into a run folder is no 3rd sample (issue 10, item 6)."""
    turn = {"from": "human", "value": "?"}
    instructions = [{"id": "c1", "event_data": "seq/0.npy", "conversations": [turn]}]
    (run_dir / "instructions.json").write_text(json.dumps(instructions))
    result = _run(run_dir)
    assert result.exit_code == 0, result.output
    assert "instructions.json: not a trace" in result.stderr and "skipped" in result.stderr
    samples = _table(run_dir / "analysis", "samples")
    assert samples["sample_id"].tolist() == ["sample-00000", "sample-00001"]


def test_events_with_bad_numbers_are_dropped_with_a_warning(run_dir: Path) -> None:
    """A negative label dur no longer gives a negative total_ms (issue 10, item 9)."""
    path = run_dir / "sample-00001.pt.trace.json.gz"
    doc = json.loads(gzip.decompress(path.read_bytes()))
    load = next(e for e in doc["traceEvents"] if e.get("name") == "stage1:load")
    load["dur"] = -50.0
    op = next(e for e in doc["traceEvents"] if e.get("name") == "aten::to")
    op["ts"] = "late"
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    result = _run(run_dir)
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: 2 event(s) dropped: ts missing or not a number" in result.stderr
    samples = _table(run_dir / "analysis", "samples").set_index("sample_id")
    assert (samples["total_ms"] > 0).all() and (samples["load_ms"] >= 0).all()
    assert samples.loc["sample-00001", "load_ms"] == 0.0  # the label was dropped
    assert samples.loc["sample-00000", "load_ms"] == pytest.approx(0.05)


def test_a_trace_past_max_trace_mb_is_refused(run_dir: Path, tmp_path: Path) -> None:
    """A gzip bomb is refused once it inflates past --max-trace-mb (issue 10, item 13)."""
    bomb = run_dir / "sample-00002.pt.trace.json.gz"
    bomb.write_bytes(gzip.compress(b'{"traceEvents": [' + b" " * (3 << 20), compresslevel=9))
    result = _run(run_dir, "--max-trace-mb", "2")
    assert result.exit_code == 0, result.output
    assert f"warning: {bomb}: larger than 2 MB uncompressed (--max-trace-mb); not read" in result.stderr
    assert "(2 traces, 1 skipped)" in result.stdout
    _one_line_error(_run(bomb, "--max-trace-mb", "2"), "larger than 2 MB uncompressed")
    zero = _run(bomb, "--max-trace-mb", "0")  # click's own usage error, like --jobs 0
    assert zero.exit_code == 2 and "Invalid value for '--max-trace-mb'" in zero.stderr


def test_start_up_imports_only_what_the_path_needs(tmp_path: Path) -> None:
    """--help and --version import no numbers library; a --quiet run imports neither the summary's
    rich tables nor plotly, HTA or tqdm (issue 14: start-up counts on single traces)."""
    trace = vlm_trace().write(tmp_path / "t.json.gz")
    code = (
        "import sys; from analyze.cli import main; "
        "sys.argv = ['analyze'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = sorted(m for m in ('pandas', 'numpy', 'plotly', 'hta', 'tqdm', 'rich', 'jinja2', 'torch', "
        "'importlib.metadata') if m in sys.modules)\n"
        "print('imported:', *bad)"
    )
    def imported(*args: str) -> set[str]:
        cmd = [sys.executable, "-c", code, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return set(done.stdout.rpartition("imported:")[2].split())
    assert imported("--help") == set()
    assert imported(str(trace), "--out", str(tmp_path / "o"), "-q") == {"numpy", "pandas"}
