"""summary: the one per-run metrics function and the other summaries, from tables with known values."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kineto_builders import write_mixed_runs, write_verdict_runs
from report_fixtures import RUN_CPU, RUN_GPU, evidence_columns, make_tables

from analyze import summary
from analyze import vocabulary as voc
from analyze.summary import (
    RUN_METRIC_COLUMNS,
    comparison_table,
    run_metrics,
    stage_medians,
    stage_summary,
    summary_warnings,
)
from analyze.tables import Tables, analyze_paths, conform


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("traces")
    write_mixed_runs(root)
    return analyze_paths([root])[0]


def test_run_metrics(tables: Tables) -> None:
    m = run_metrics(tables).set_index("run_id")
    gpu = m.loc["gpu"]
    assert gpu["n_samples"] == 2 and gpu["tokens"] == 6
    assert gpu["ttft_ms"] == pytest.approx(0.32) and gpu["ttft_p90_ms"] == pytest.approx(0.32)
    # Decode latencies 0.09, 0.15 in both samples.
    assert gpu["tpot_ms"] == pytest.approx(0.12) and gpu["tpot_mean_ms"] == pytest.approx(0.12)
    assert gpu["n_decode_tokens"] == 4
    assert gpu["tokens_per_s"] == pytest.approx(6 / 1.4 * 1000)
    assert gpu["vision_share_gpu"] == pytest.approx(0.170 / 0.365)
    assert gpu["gpu_busy_mean_ms"] == pytest.approx(0.33)
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
            **evidence_columns(run_gpu=False, span_ms=0.0, busy_share=np.nan),
            "model": "",
        }
    )
    m = run_metrics(dataclasses.replace(tables, tokens=conform(tokens, "tokens"))).set_index("run_id")
    assert m.loc["cpu", "tpot_mean_ms"] == pytest.approx(5.5)
    assert m.loc["cpu", "tpot_p90_ms"] == pytest.approx(9.1)
    assert m.loc["cpu", "tpot_p99_ms"] == pytest.approx(9.91)
    assert m.loc["cpu", "n_decode_tokens"] == 10
    # the headline stays the median of the samples' own TPOT (samples.tpot_ms), not the pooled tokens
    assert m.loc["cpu", "tpot_ms"] == pytest.approx(tables.samples.set_index("run_id").loc["cpu", "tpot_ms"])


def test_headline_is_the_median_and_the_mean_is_the_spread(tmp_path: Path) -> None:
    t = make_tables(tmp_path)
    samples = t.samples.copy()
    cpu = samples["run_id"] == RUN_CPU
    samples.loc[cpu, "ttft_ms"] = [10.0, 12.0, 14.0, 40.0]  # median 13, mean 19, p90 32.2
    samples.loc[cpu, "tpot_ms"] = [4.0, 4.0, 5.0, 9.0]  # median 4.5
    m = run_metrics(dataclasses.replace(t, samples=samples)).set_index("run_id")
    assert list(m.reset_index().columns) == list(RUN_METRIC_COLUMNS)
    assert m.loc[RUN_CPU, "ttft_ms"] == 13.0 and m.loc[RUN_CPU, "ttft_mean_ms"] == 19.0
    assert m.loc[RUN_CPU, "ttft_p90_ms"] == pytest.approx(32.2)
    assert m.loc[RUN_CPU, "tpot_ms"] == 4.5
    # wall time: stages 5+i, 10, 20+i, 30, 60+10i, 6, 4 -> 135 + 12i ms: 135, 147, 159, 171
    assert m.loc[RUN_CPU, "total_ms"] == 153.0 and m.loc[RUN_CPU, "total_mean_ms"] == 153.0
    assert m.loc[RUN_CPU, "total_p90_ms"] == pytest.approx(167.4)
    assert m.loc[RUN_CPU, "vision_ms"] == 21.5 and m.loc[RUN_CPU, "largest_stage"] == "decode"
    assert m.loc[RUN_CPU, "tokens"] == 32 and m.loc[RUN_CPU, "n_decode_tokens"] == 28
    assert m.loc[RUN_GPU, "ttft_ms"] == 26.0  # the other run is untouched


def test_a_run_without_samples_has_a_row_of_missing_values(tmp_path: Path) -> None:
    t = make_tables(tmp_path)
    only_gpu = dataclasses.replace(t, samples=t.samples.loc[t.samples["run_id"] == RUN_GPU])
    m = run_metrics(only_gpu).set_index("run_id")
    assert list(m.index) == [RUN_CPU, RUN_GPU]  # the runs table's order
    assert m.loc[RUN_CPU, "n_samples"] == 0 and m.loc[RUN_CPU, "tokens"] == 0
    assert math.isnan(m.loc[RUN_CPU, "ttft_ms"]) and pd.isna(m.loc[RUN_CPU, "largest_stage"])
    ratios = comparison_table(run_metrics(only_gpu, [RUN_CPU, RUN_GPU])).set_index("run_id")
    assert math.isnan(ratios.loc[RUN_GPU, "ttft_ratio"])  # no baseline


def test_stage_medians_per_run(tmp_path: Path) -> None:
    samples = make_tables(tmp_path).samples
    medians = stage_medians(samples, [RUN_GPU, RUN_CPU])
    assert list(medians.index) == [RUN_GPU, RUN_CPU]
    assert list(medians.columns)[:3] == ["load", "preprocess", "vision"]
    assert medians.loc[RUN_CPU, "vision"] == 21.5 and medians.loc[RUN_GPU, "vision"] == 41.5
    assert medians.loc[RUN_GPU, "decode"] == 190.0  # generate 200..260 minus 40


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


def test_spread_out_generate_times_are_a_warning(tmp_path: Path) -> None:
    """Issue 10: on a busy 2-core machine one generate() took 1,600 ms, the others ~25 ms."""
    t = make_tables(tmp_path)
    assert not [w for w in summary_warnings(t) if "varies" in w]  # 100..130 ms: 1.1x
    samples = t.samples.copy()
    samples.loc[samples["run_id"] == RUN_CPU, "generate_ms"] = [100.0, 110.0, 120.0, 1000.0]
    warnings = summary_warnings(dataclasses.replace(t, samples=samples))
    (spread,) = [w for w in warnings if "varies" in w]
    # max/median = 1000 / 115
    assert spread.startswith(f"run {RUN_CPU}: per-sample generate() time varies 8.7x (max/median)")
    assert "--threads 1" in spread


# ------------------------------------------------------------------------------------- verdicts


@pytest.fixture(scope="module")
def verdict_tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    return analyze_paths(write_verdict_runs(tmp_path_factory.mktemp("verdicts")))[0]


def test_verdict_summary_counts_steps_and_names_the_remedy(verdict_tables: Tables) -> None:
    v = summary.verdict_summary(verdict_tables, "eager").set_index("what")
    # load (1.1% of the wall) and unlabelled (0.1%) do not matter; prefill and decode come from the steps
    assert list(v.index) == ["stage2:preprocess", "prefill", "decode", "stage4:other"]
    decode = v.loc["decode"]
    assert (decode["bound"], decode["n_bound"], decode["n"], decode["unit"]) == ("launch", 3, 3, "steps")
    assert decode["counts"] == {"launch": 3}
    assert decode["gpu_busy_share"] == pytest.approx(400 / 9962)
    assert "--cache static --compile" in decode["remedy"]
    assert v.loc["prefill", "bound"] == "device" and "--attn-implementation" in v.loc["prefill", "remedy"]
    pre = v.loc["stage2:preprocess"]
    assert (pre["bound"], pre["unit"]) == ("host", "samples") and "--frames" in pre["remedy"]
    assert v.loc["stage4:other", "bound"] == "device" and v.loc["stage4:other", "remedy"] == ""
    graphs = summary.verdict_summary(verdict_tables, "graphs").set_index("what")
    assert graphs.loc["decode", "bound"] == "device" and "--load-in" in graphs.loc["decode", "remedy"]


def test_launch_bound_decode_that_already_uses_graphs_gets_no_compile_advice(verdict_tables: Tables) -> None:
    tokens = verdict_tables.tokens.copy()
    graphs = (tokens["run_id"] == "graphs") & (tokens["step"] > 0)
    tokens.loc[graphs, "bound"] = "launch"
    v = summary.verdict_summary(dataclasses.replace(verdict_tables, tokens=tokens), "graphs").set_index(
        "what"
    )
    assert v.loc["decode", "remedy"] == summary.GRAPHS_REMEDY


def test_mixed_verdicts_are_counted_most_first(verdict_tables: Tables) -> None:
    tokens = verdict_tables.tokens.copy()
    first_decode = (tokens["run_id"] == "eager") & (tokens["step"] == 1)
    tokens.loc[first_decode, "bound"] = "mixed"
    v = summary.verdict_summary(dataclasses.replace(verdict_tables, tokens=tokens), "eager").set_index("what")
    assert v.loc["decode", "counts"] == {"launch": 2, "mixed": 1}
    assert (v.loc["decode", "bound"], v.loc["decode", "n_bound"]) == ("launch", 2)


def test_evidence_table_per_step_and_per_stage(verdict_tables: Tables) -> None:
    e = summary.evidence_table(verdict_tables, "eager").set_index("what")
    assert list(e.index) == [
        "stage1:load",
        "stage2:preprocess",
        "prefill",
        "decode",
        "stage4:other",
        "unlabelled",
    ]
    assert e.loc["decode", "unit"] == "step" and e.loc["stage1:load", "unit"] == "sample"
    assert e.loc["decode", "n_launches"] == 200 and e.loc["decode", "bound_span_ms"] == pytest.approx(9.962)
    assert e.loc["prefill", "kernel_median_us"] == pytest.approx(5000.0)
    assert e.loc["stage4:other", "sync_ms"] == pytest.approx(49.9)


def test_setting_comparisons_per_stage(verdict_tables: Tables) -> None:
    (c,) = summary.setting_comparisons(verdict_tables)
    assert (c.base, c.other) == ("eager", "graphs")
    assert c.settings == {"cache": ("dynamic", "static"), "compile": (False, True)}
    s = c.stages.set_index("stage")
    assert list(c.stages.columns) == list(summary.SETTING_CHANGE_COLUMNS)
    assert (s.loc["stage4:decode", "base_bound"], s.loc["stage4:decode", "other_bound"]) == (
        "launch",
        "device",
    )
    assert s.loc["stage4:decode", "base_span_ms"] == pytest.approx(3 * 9.962)
    assert s.loc["stage4:decode", "other_span_ms"] == pytest.approx(3 * 9.04)
    assert s.loc["stage4:decode", "span_ratio"] == pytest.approx(9.04 / 9.962)
    assert s.loc["stage4:decode", "ratio"] == pytest.approx(0.3 / 30.0)
    assert s.loc["stage2:preprocess", "ratio"] == pytest.approx(1.0)
    assert "unattributed" not in s.index


def test_runs_of_different_models_are_not_compared(tables: Tables) -> None:
    assert summary.setting_comparisons(tables) == []


def test_run_metrics_has_prefill_tokens_and_kv_cache_medians(tmp_path: Path) -> None:
    m = run_metrics(make_tables(tmp_path)).set_index("run_id")
    assert m.loc[RUN_CPU, "prefill_tokens"] == 29 and m.loc[RUN_GPU, "prefill_tokens"] == 639
    assert m.loc[RUN_CPU, "kv_cache_mb"] == 2.5 and m.loc[RUN_GPU, "kv_cache_mb"] == 25.0
    assert math.isnan(m.loc[RUN_CPU, "peak_mem_mb"]) and m.loc[RUN_GPU, "peak_mem_mb"] == 115.0
    assert m.loc[RUN_GPU, "new_tokens"] == 8
