"""HTA glue: known answers on hand-made Kineto traces, a real GPU trace, and failures."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from kineto_builders import breakdown_trace
from report_fixtures import RUN_CPU, RUN_GPU, make_tables

from analyze import hta_breakdown as hb
from analyze.errors import AnalyzeError

KINETO_GPU = Path("/work/shared/data/kineto-gpu")


@pytest.fixture(scope="module")
def two_traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hta")
    return {
        f"sample-0000{i}": breakdown_trace(i).write(d / f"sample-0000{i}.pt.trace.json.gz")
        for i in range(2)
    }


@pytest.fixture(scope="module")
def result(two_traces: dict[str, Path]) -> hb.HtaTables:
    return hb.run_hta("run-a", two_traces)


def test_temporal_breakdown_matches_hand_computed_values(result: hb.HtaTables) -> None:
    # kineto_builders.DEVICE_EVENTS: span 0..350 us; gemm 100 + gelu 50 compute, memcpy 50: idle 150.
    t = result.temporal
    assert list(t["sample_id"]) == ["sample-00000", "sample-00001"]
    assert (t["run_id"] == "run-a").all()
    assert t["gpu_span_us"].tolist() == [350.0, 350.0]
    assert t["idle_us"].tolist() == [150.0, 150.0]
    assert t["compute_us"].tolist() == [150.0, 150.0]
    assert t["non_compute_us"].tolist() == [50.0, 50.0]
    assert t["idle_share"].iloc[0] == pytest.approx(150 / 350)
    assert list(t.columns) == list(hb.TEMPORAL_COLUMNS)


def test_kernel_breakdowns_are_summed_over_samples(result: hb.HtaTables) -> None:
    types = result.kernel_types.set_index("kernel_type")
    assert types.loc["COMPUTATION", "total_us"] == 300.0  # 150 us per sample, two samples
    assert types.loc["MEMORY", "total_us"] == 100.0
    assert types.loc["COMPUTATION", "share"] == pytest.approx(0.75)
    k = result.kernels
    gemm = k.loc[k["name"] == "ampere_sgemm_128x64_tn"]
    assert gemm["total_us"].tolist() == [100.0, 100.0]
    assert set(gemm["sample_id"]) == {"sample-00000", "sample-00001"}
    summary = hb.kernel_summary(k, n_samples=2)
    assert summary.iloc[0]["name"] == "ampere_sgemm_128x64_tn"
    assert summary.iloc[0]["per_sample_ms"] == pytest.approx(0.1)
    assert summary.iloc[0]["share"] == pytest.approx(200 / 400)
    pd.testing.assert_frame_equal(result.top_kernels, summary)  # computed once, with the breakdowns


def test_idle_breakdown_per_stream(result: hb.HtaTables) -> None:
    idle = result.idle
    assert set(idle["stream"]) == {7}
    assert idle.groupby("sample_id")["idle_us"].sum().tolist() == [150.0, 150.0]
    by_stream = hb.idle_by_stream(idle)
    assert by_stream["idle_ms"].sum() == pytest.approx(0.3)
    pd.testing.assert_frame_equal(result.stream_idle, by_stream)
    assert result.failures == ()
    assert result.sample_ids == ("sample-00000", "sample-00001")


def test_real_kineto_gpu_trace_memory_time_matches_the_trace() -> None:
    trace = KINETO_GPU / "alexnet.json.gz"
    if not trace.is_file():
        pytest.skip(f"{trace} not present")
    with gzip.open(trace, "rt") as f:
        events = json.load(f)["traceEvents"]
    memory_us = sum(
        e["dur"] for e in events if e.get("ph") == "X" and e.get("cat") in ("gpu_memcpy", "gpu_memset")
    )
    device_us = memory_us + sum(e["dur"] for e in events if e.get("ph") == "X" and e.get("cat") == "kernel")
    out = hb.run_hta("alexnet", {"s0": trace})
    types = out.kernel_types.set_index("kernel_type")
    assert types.loc["MEMORY", "total_us"] == pytest.approx(memory_us)
    assert out.kernel_types["total_us"].sum() == pytest.approx(device_us, rel=0.01)
    assert out.temporal["gpu_span_us"].iloc[0] > 0


def test_a_bad_trace_is_left_out_with_its_reason(tmp_path: Path, two_traces: dict[str, Path]) -> None:
    bad = tmp_path / "sample-00009.pt.trace.json.gz"
    bad.write_bytes(b"not gzip at all")
    out = hb.run_hta("run-a", {"sample-00000": two_traces["sample-00000"], "sample-00009": bad})
    assert out.sample_ids == ("sample-00000",)
    assert len(out.failures) == 1 and out.failures[0].startswith("sample-00009: ")
    assert list(out.temporal["sample_id"]) == ["sample-00000"]


def test_all_traces_failing_raises_one_line_reason(tmp_path: Path) -> None:
    bad = tmp_path / "sample-00000.pt.trace.json.gz"
    bad.write_bytes(b"\x1f\x8b broken")
    with pytest.raises(AnalyzeError, match=r"HTA failed on every trace of run 'r' \(sample-00000: ") as info:
        hb.run_hta("r", {"sample-00000": bad})
    assert "\n" not in str(info.value)


def test_missing_hta_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, two_traces: dict[str, Path]) -> None:
    monkeypatch.setitem(sys.modules, "hta.trace_analysis", None)
    with pytest.raises(AnalyzeError, match="HolisticTraceAnalysis is not installed"):
        hb.run_hta("r", two_traces)


def test_select_traces_spaces_samples_evenly_and_skips_missing(tmp_path: Path) -> None:
    n = 40
    runs = pd.DataFrame({"run_id": ["r"], "trace_dir": [str(tmp_path)]})
    samples = pd.DataFrame(
        {
            "run_id": ["r"] * n,
            "sample_id": [f"sample-{i:05d}" for i in range(n)],
            "sample_index": list(range(n)),
            "trace_file": [f"sample-{i:05d}.pt.trace.json.gz" for i in range(n)],
        }
    )
    for i in range(n):
        if i != 39:
            (tmp_path / f"sample-{i:05d}.pt.trace.json.gz").write_bytes(b"")
    picked = hb.select_traces(runs, samples, "r", max_samples=16)
    assert len(picked) == 15  # 16 evenly spaced picks, the last (sample 39) has no file
    assert "sample-00000" in picked and "sample-00039" not in picked
    assert picked["sample-00000"] == tmp_path / "sample-00000.pt.trace.json.gz"
    assert len(hb.select_traces(runs, samples, "r", max_samples=100)) == 39
    with pytest.raises(AnalyzeError, match="not in the runs table"):
        hb.select_traces(runs, samples, "nope")


def test_select_traces_without_any_file_is_an_error(tmp_path: Path) -> None:
    tables = make_tables(tmp_path, gpu=True, gpu_traces=False)
    with pytest.raises(AnalyzeError, match="no trace file of run"):
        hb.select_traces(tables.runs, tables.samples, RUN_GPU)


def test_compute_hta_covers_every_gpu_run_and_keeps_each_reason(tmp_path: Path) -> None:
    tables = make_tables(tmp_path, gpu=True, gpu_traces=True)
    out = hb.compute_hta(tables, max_samples=2)
    assert out.version == hb.hta_version() and out.version
    assert set(out.runs) == {RUN_GPU}  # the CPU-only run is left out
    result = out.runs[RUN_GPU]
    assert isinstance(result, hb.HtaTables)
    assert result.sample_ids == ("sample-00000", "sample-00003")  # evenly spaced, at most 2
    assert result.temporal["idle_us"].tolist() == [150.0, 150.0]
    # a GPU run whose traces are gone gets its one-line reason instead of tables
    bare = make_tables(tmp_path / "bare", gpu=True, gpu_traces=False)
    reason = hb.compute_hta(bare).runs[RUN_GPU]
    assert isinstance(reason, str) and reason.startswith(f"no trace file of run {RUN_GPU!r} found in ")
    assert RUN_CPU not in hb.compute_hta(bare).runs
