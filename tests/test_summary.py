"""summary: per-run metrics and the terminal text, from tables with known values."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kineto_builders import manifest, vlm_trace, write_run

from analyze import vocabulary as voc
from analyze.summary import format_summary, run_metrics, stage_summary, summary_warnings
from analyze.tables import Tables, analyze_paths, conform
from benchmarks.kineto import KinetoTrace


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("traces")
    write_run(
        root / "gpu",
        [vlm_trace("4.x", sample=0), vlm_trace("5.x", sample=1)],
        manifest("gpu", identity_ok=False),
    )
    write_run(root / "cpu", [vlm_trace("5.x", gpu=False)])
    plain = KinetoTrace(device=None)
    plain.op("aten::mm", 0, 10)
    write_run(root / "foreign", [plain])
    return analyze_paths([root])[0]


def test_run_metrics(tables: Tables) -> None:
    m = run_metrics(tables).set_index("run_id")
    gpu = m.loc["gpu"]
    assert gpu["n_samples"] == 2 and gpu["tokens"] == 6
    assert gpu["ttft_ms"] == pytest.approx(0.32) and gpu["ttft_p90_ms"] == pytest.approx(0.32)
    # Decode latencies 0.09, 0.15 in both samples.
    assert gpu["tpot_ms"] == pytest.approx(0.12) and gpu["tpot_p50_ms"] == pytest.approx(0.12)
    assert gpu["tokens_per_s"] == pytest.approx(6 / 1.4 * 1000)
    assert gpu["vision_share_gpu"] == pytest.approx(0.170 / 0.365)
    assert gpu["gpu_busy_ms"] == pytest.approx(0.33)
    assert gpu["unattributed_gpu_ms"] == pytest.approx(0.04)
    cpu = m.loc["cpu"]
    assert math.isnan(cpu["vision_share_gpu"]) and cpu["ttft_ms"] == pytest.approx(0.31)
    assert math.isnan(m.loc["foreign", "tpot_ms"]) and m.loc["foreign", "tokens"] == 0


def test_tpot_percentiles_pool_every_decode_token(tables: Tables) -> None:
    latencies = np.arange(1.0, 11.0)  # decode steps 1..10 of one sample: 1, 2, ..., 10 ms
    tokens = pd.DataFrame(
        {
            "run_id": "cpu",
            "sample_id": "sample-00000",
            "step": np.arange(0, 11),
            "phase": ["prefill"] + ["decode"] * 10,
            "start_ms": 0.0,
            "emitted_ms": 0.0,
            "latency_ms": np.concatenate([[50.0], latencies]),
            "host_ms": 0.0,
            "gpu_kernel_ms": 0.0,
            "n_kernels": 0,
            "model": "",
        }
    )
    m = run_metrics(dataclasses.replace(tables, tokens=conform(tokens, "tokens"))).set_index("run_id")
    assert m.loc["cpu", "tpot_ms"] == pytest.approx(5.5)
    assert m.loc["cpu", "tpot_p50_ms"] == pytest.approx(5.5)
    assert m.loc["cpu", "tpot_p90_ms"] == pytest.approx(9.1)
    assert m.loc["cpu", "tpot_p99_ms"] == pytest.approx(9.91)


def test_stage_summary_fills_missing_stages_with_zero(tables: Tables) -> None:
    st = stage_summary(tables, "gpu").set_index("stage")
    assert st.loc[voc.VISION, "host_self_ms"] == pytest.approx(0.08)
    assert st.loc[voc.VISION_TOWER, "gpu_kernel_ms"] == pytest.approx(0.13)
    assert st["share"].sum() == pytest.approx(1.0)
    assert st.loc[voc.DECODE, "share"] == pytest.approx(0.2)


def test_warnings(tables: Tables) -> None:
    text = "\n".join(summary_warnings(tables))
    assert "run gpu: 2 device events (0.040 ms) have no launcher (unattributed)" in text
    assert "run gpu: capture's identity check FAILED" in text
    assert "run foreign: 1 of 1 traces carry no stage labels" in text
    assert "run cpu" not in text


def test_format_summary_has_real_numbers(tables: Tables) -> None:
    text = format_summary(tables)
    assert "run gpu  model tiny-llava  fused  cuda  Synthetic GPU  (2 traces)" in text
    assert "TTFT 0.320 ms" in text and "TPOT 0.120 ms" in text
    assert "4,285.7 tokens/s" in text
    assert "vision vs LLM: host 25.7% / 74.3%, GPU kernels 46.6% / 53.4%" in text
    gpu_block = next(b for b in text.split("\n\n") if b.startswith("run gpu"))
    line = next(x for x in gpu_block.splitlines() if x.strip().startswith("stage4:decode "))
    assert line.split() == ["stage4:decode", "0.200", "0.200", "0.200", "0.125", "20.0%"]
    assert "host timeline" in text and "no generation steps" in text
    assert text.split("\n\n")[-1].startswith("warnings:\n  - run foreign")


def test_summary_does_no_io(tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    format_summary(tables)
    assert list(tmp_path.iterdir()) == []
