"""Smoke tests of the benchmarks' measuring cores at tiny sizes (the benchmarks themselves are not run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench_analyze, bench_capture, run_all
from benchmarks.gen_traces import TraceShape, generate_set


def test_run_child_sees_the_childs_peak_memory_and_output() -> None:
    code = "import json; b = bytearray(200_000_000); print(json.dumps({'work_s': 0.5}))"
    small = bench_analyze.run_child("small", [sys.executable, "-c", "print('{}')"])
    big = bench_analyze.run_child("big", [sys.executable, "-c", code])
    assert big.returncode == 0 and big.reported == {"work_s": 0.5}
    assert big.peak_rss_mb > 200 > small.peak_rss_mb  # measured per child, not the largest so far
    failed = bench_analyze.run_child("bad", [sys.executable, "-c", "raise SystemExit(3)"])
    assert failed.returncode == 3


def test_analyze_benchmark_core_on_one_small_trace(tmp_path: Path) -> None:
    truths = generate_set(tmp_path / "traces", 1, TraceShape.for_size(1.0), gz=True)
    res = bench_analyze.measure(truths, tmp_path / "work")
    readers = [r["reader"] for r in res["rows"]]
    expected = ["analyze --jobs 1", "analyze --jobs 2", "HTA TraceAnalysis", "json.loads", "orjson.loads"]
    assert readers == expected
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 5 for r in res["rows"])
    assert res["total_mb"] == pytest.approx(truths[0].size_bytes / 1e6)
    assert res["hta_traces_measured"] == 1 and not res["hta_scaled"]
    assert len(res["targets"]) == 3 and all(isinstance(t["pass"], bool) for t in res["targets"])
    assert res["table_problems"] == ""  # analyze's tables agree with the generator's truth
    text = bench_analyze.format_result(res)
    assert "HTA TraceAnalysis" in text and ("PASS" in text or "MISS" in text)
    rows = run_all.summarise({"analyze": res})
    assert len(rows) == 5 + 3 and {r["verdict"] for r in rows[5:]} <= {"PASS", "MISS"}


def test_capture_benchmark_core_with_a_tiny_model() -> None:
    size = bench_capture.ModelSize(
        text_hidden=64, text_layers=1, text_heads=4, vocab_size=300,
        vision_hidden=32, vision_layers=1, vision_heads=2, image_size=56, patch_size=14,
    )  # fmt: skip
    adapter = bench_capture.build_adapter(size, torch.device("cpu"), torch.float32)
    inputs = bench_capture.sample_inputs(adapter)
    res = bench_capture.measure_overhead(adapter, inputs, rounds=2, tokens=4, export_rounds=1)
    assert res["tokens_identical"]
    assert len(res["runs"]) == 6
    assert sorted(r["variant"] for r in res["runs"]) == sorted(bench_capture.VARIANTS * 2)
    med = res["medians"]
    assert all(med[v]["wall_ms"] > 0 and med[v]["per_token_ms"] > 0 for v in bench_capture.VARIANTS)
    assert med["off"]["export_ms"] is None and med["stagetrace"]["export_ms"] > 0
    assert med["stagetrace"]["trace_mb"] > 0
    ratio = res["ratios"]["stagetrace/off"]
    assert ratio["wall"] == pytest.approx(med["stagetrace"]["wall_ms"] / med["off"]["wall_ms"])
    by_round = {(r["round"], r["variant"]): r for r in res["runs"]}
    paired = sorted(by_round[(k, "stagetrace")]["wall_ms"] / by_round[(k, "off")]["wall_ms"] for k in (0, 1))
    assert ratio["wall_paired"] == pytest.approx(sum(paired) / 2)  # median of two rounds
    for t in res["targets"]:  # verdicts are judged on the paired ratios
        key, what = t["target"].split()[:2]
        assert t["value"] == res["ratios"][key][f"{what.replace('-', '_')}_paired"]
    assert {t["target"] for t in res["targets"]} == {
        "stagetrace/off wall <= 1.10x",
        "stagetrace/off per-token <= 1.05x",
        "stagetrace/bare wall <= 1.02x",
        "stagetrace/bare per-token <= 1.02x",
    }
    assert "stagetrace" in bench_capture.format_size(res, size.label)


def test_token_clock_stamps_once_per_new_token() -> None:
    size = bench_capture.ModelSize(
        text_hidden=32, text_layers=1, text_heads=2, vocab_size=300,
        vision_hidden=32, vision_layers=1, vision_heads=2, image_size=28, patch_size=14,
    )  # fmt: skip
    adapter = bench_capture.build_adapter(size, torch.device("cpu"), torch.float32)
    inputs = bench_capture.sample_inputs(adapter)
    clock = bench_capture.TokenClock(torch.device("cpu"))
    with torch.no_grad():
        ids = bench_capture._generate(adapter, inputs, clock, 5)
    assert len(ids) == 5 and len(clock.stamps) == 5
    assert clock.stamps == sorted(clock.stamps)


def test_build_benchmark_measures_a_meta_build_in_its_own_process() -> None:
    from benchmarks import bench_build

    res = bench_build.measure(["eventgpt"], ["meta"])
    (row,) = res["rows"]
    assert row["parameters"] == 7_079_684_096 and row["param_dtypes"] == ["torch.bfloat16"]
    assert row["inv_freq_dtype"] == "torch.float32"
    assert row["peak_rss_mb"] > 50 and row["build_s"] > 0 and row["weights_mb"] > 14_000
    assert res["targets"] == []  # needs the bf16 stage too
    rows = run_all.summarise({"build": res})
    assert rows[0]["benchmark"] == "build" and "7,079,684,096 params" in rows[0]["value"]


def test_single_trace_and_in_process_cores(tmp_path: Path) -> None:
    """Issue 14's analysis figures: one trace per fresh process against HTA, and memory/throughput."""
    (truth,) = generate_set(tmp_path / "traces", 1, TraceShape.for_size(0.5), gz=True)
    (warm,) = generate_set(tmp_path / "warm", 1, TraceShape.for_size(0.1), gz=True)
    trace = Path(truth.path)
    single = bench_analyze.measure_single([("gen", trace)], tmp_path / "work", rounds=2, cpus="0")
    (row,) = single
    assert set(row["seconds"]) == {"analyze", "analyze -q", "HTA"}
    assert all(len(v) == 2 and min(v) > 0 for v in row["all_seconds"].values())
    paired = [h / a for h, a in zip(row["all_seconds"]["HTA"], row["all_seconds"]["analyze"], strict=True)]
    assert row["hta_over_analyze"] == pytest.approx(sum(paired) / 2)
    assert row["hta_over_analyze_spread"] == [min(paired), max(paired)]
    assert row["mb"] == pytest.approx(truth.size_bytes / 1e6)
    inproc = bench_analyze.measure_inproc(
        [("gen", trace)], Path(warm.path), tmp_path / "work", repeats=2, cpus="0", judged={"gen"}
    )
    (mem,) = inproc
    assert mem["peak_rss_mb"] >= mem["ready_rss_mb"] >= mem["start_rss_mb"] > 20
    assert mem["peak_above_start_over_trace"] == pytest.approx(mem["peak_above_start_mb"] / mem["mb"])
    assert len(mem["cpu_s"]) == 2 and mem["mb_per_cpu_s"] == pytest.approx(mem["mb"] / min(mem["cpu_s"]))
    targets = bench_analyze.single_targets(single, inproc)
    assert [t["target"].split(" ")[0] for t in targets] == ["analyze", "peak", "in-process"]
    assert "HTA/analyze" in bench_analyze.format_single(single, inproc)
    rows = run_all.summarise({"analyze": {"targets": [], "single": single, "inproc": inproc}})
    assert [r["verdict"] in ("PASS", "MISS") for r in rows] == [True, True]


def test_throughput_benchmark_core_with_a_tiny_model() -> None:
    from benchmarks import bench_throughput

    size = bench_capture.ModelSize(
        text_hidden=64, text_layers=1, text_heads=4, vocab_size=300,
        vision_hidden=32, vision_layers=1, vision_heads=2, image_size=56, patch_size=14,
    )  # fmt: skip
    res = bench_throughput.measure_size(size, samples=3, tokens=2, device=torch.device("cpu"), seed=0)
    assert res["captured"] == 3 and res["accounting_ok"] is True
    assert res["wall_over_generate"] == pytest.approx(res["wall_s"] / res["generate_sum_s"])
    assert res["wall_over_generate"] > 1 and isinstance(res["pass"], bool)
    m = res["median_ms"]
    assert m["generate"] > 0 and m["export_background"] > 0 and m["check_background"] > 0
    assert res["old_path_ms"]["export_ms"] > 0 and res["old_path_ms"]["check_ms"] > 0
    text = bench_throughput.format_result({"sizes": {size.label: res}})
    assert "sum of profiled generate()" in text
    (row,) = run_all.summarise({"throughput": {"sizes": {size.label: res}}})
    assert row["benchmark"] == "throughput" and row["verdict"] in ("PASS", "MISS")


def test_analyze_cli_fresh_and_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """analyze_cli removes OUT unless fresh=False and passes --quiet unless quiet=False."""
    calls: list[list[str]] = []

    def fake_run_child(name: str, cmd: list[str], **kwargs: object) -> bench_analyze.Measured:
        calls.append(cmd)
        return bench_analyze.Measured(name, 1.0, 10.0, 0)

    monkeypatch.setattr(bench_analyze, "run_child", fake_run_child)
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept").touch()
    trace = tmp_path / "t.json.gz"
    bench_analyze.analyze_cli("kept", [trace], out, jobs=2, fresh=False, quiet=False)
    assert (out / "kept").exists()
    assert calls[-1][1:] == ["-m", "analyze", str(trace), "--out", str(out), "--jobs", "2"]
    bench_analyze.analyze_cli("fresh", [trace], out, jobs=1)
    assert not out.exists()
    assert calls[-1][1:] == ["-m", "analyze", str(trace), "--out", str(out), "--jobs", "1", "--quiet"]


def test_scaling_reuses_its_output_folder(tmp_path: Path) -> None:
    """bench_scaling's cell: a first analysis, a second into the same folder, then the summary."""
    from benchmarks import bench_scaling

    truths = generate_set(tmp_path / "traces", 2, TraceShape.for_size(0.1), gz=True)
    res = bench_scaling.measure_scaling(truths, tmp_path / "work", counts=[1, 2], jobs=[1])
    assert [(r["traces"], r["run"]) for r in res["rows"]] == [
        (n, run) for n in (1, 2) for run in ("first", "reuse", "summary")
    ]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in res["rows"])
    assert set(res["derived"]) == {"time_2_over_1_j1", "peak_2_over_1_j1", "reuse_speedup_at_2_j1"}
    assert any((tmp_path / "work/analysis-2-j1").iterdir())  # kept between the three runs

