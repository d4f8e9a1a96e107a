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
