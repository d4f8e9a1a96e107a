"""tokens: per-step emission on the device timeline (host end without device work), TTFT, TPOT."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from kineto_builders import VLM_EXPECTED, vlm_trace

from analyze.attribute import attribute
from analyze.parse import read_trace
from analyze.tokens import TOKEN_COLUMNS, token_steps
from benchmarks.kineto import KinetoTrace


def _steps(t: KinetoTrace, tmp_path: Path):
    trace = read_trace(t.write(tmp_path / "t.json"))
    return token_steps(trace, attribute(trace))


@pytest.mark.parametrize("order", ["4.x", "5.x"])
def test_device_emission_and_latency(tmp_path: Path, order: str) -> None:
    table, on_device = _steps(vlm_trace(order), tmp_path)
    assert on_device
    assert list(table.columns) == list(TOKEN_COLUMNS)
    assert table["step"].tolist() == [0, 1, 2]
    assert table["phase"].tolist() == ["prefill", "decode", "decode"]
    assert table["emitted_ms"].tolist() == pytest.approx(VLM_EXPECTED["emitted_ms"])
    assert table["latency_ms"].tolist() == pytest.approx(VLM_EXPECTED["latency_ms"])
    # Step 0 counts the vision kernels launched inside prefill only in the 4.x order.
    assert table["gpu_kernel_ms"].tolist() == pytest.approx(VLM_EXPECTED["step_kernel_ms"][order])
    assert table["n_kernels"].tolist() == ([4, 2, 2] if order == "4.x" else [1, 2, 2])
    assert table["start_ms"].tolist() == pytest.approx([0.01 if order == "4.x" else 0.2, 0.35, 0.5])


def test_cpu_trace_emits_at_the_host_end_of_each_step(tmp_path: Path) -> None:
    table, on_device = _steps(vlm_trace("4.x", gpu=False), tmp_path)
    assert not on_device
    # prefill ends at 500, decode#1 at 650, decode#2 at 800; generate starts at 200.
    assert table["emitted_ms"].tolist() == pytest.approx([0.30, 0.45, 0.60])
    assert table["latency_ms"].tolist() == pytest.approx([0.30, 0.15, 0.15])
    assert table["gpu_kernel_ms"].tolist() == [0.0, 0.0, 0.0]


def test_without_generate_label_there_is_no_ttft(tmp_path: Path) -> None:
    t = KinetoTrace(device=None)
    t.label("stage4:prefill", 100, 150)
    t.label("stage4:decode#1", 160, 170)
    table, _ = _steps(t, tmp_path)
    assert table["emitted_ms"].tolist() == pytest.approx([0.05, 0.07])  # relative to prefill start
    assert math.isnan(table["latency_ms"].iloc[0])
    assert table["latency_ms"].iloc[1] == pytest.approx(0.02)


def test_no_step_labels_gives_an_empty_table(tmp_path: Path) -> None:
    t = KinetoTrace()
    t.label("stage4:generate", 0, 10)
    table, on_device = _steps(t, tmp_path)
    assert table.empty and list(table.columns) == list(TOKEN_COLUMNS) and not on_device


def test_kernels_launched_on_another_thread_do_not_count(tmp_path: Path) -> None:
    t = KinetoTrace()
    t.label("stage4:generate", 0, 100)
    t.label("stage4:prefill", 10, 50)
    t.launch(20, 25, 40)  # main thread, inside prefill
    t.launch(30, 35, 90, tid=999)  # another thread at the same time
    table, _ = _steps(t, tmp_path)
    assert table["emitted_ms"].tolist() == pytest.approx([0.04])
    assert table["n_kernels"].tolist() == [1]
