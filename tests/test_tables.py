"""tables: runs -> the five Parquet tables; real CPU and GPU traces; skips; atomic writes."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from kineto_builders import VLM_EXPECTED, manifest, vlm_trace, write_run

from analyze import vocabulary as voc
from analyze.contract import TABLE_SCHEMAS
from analyze.errors import AnalyzeError
from analyze.stagemap import StageMap
from analyze.tables import Tables, analyze_paths, read_tables, write_tables

DATA = Path(__file__).parent / "data" / "kineto-gpu"
TABLES = ("runs", "samples", "stages", "tokens", "ops")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """traces/a: run.json + 4.x and 5.x samples (GPU); traces/b: no run.json, one CPU sample."""
    root = tmp_path_factory.mktemp("traces")
    write_run(
        root / "a",
        [vlm_trace("4.x", sample=0), vlm_trace("5.x", sample=1)],
        manifest("run-a", identity_ok=False),
    )
    write_run(root / "b", [vlm_trace("5.x", gpu=False)])
    return root


@pytest.fixture(scope="module")
def tables(two_runs: Path) -> Tables:
    tables, warnings = analyze_paths([two_runs])
    assert warnings == []
    return tables


def test_every_table_has_its_schema(tables: Tables) -> None:
    for name in TABLES:
        frame = getattr(tables, name)
        assert list(frame.columns) == list(TABLE_SCHEMAS[name]), name
        assert [str(t) for t in frame.dtypes] == [
            str(pd.Series(dtype=t).dtype) for t in TABLE_SCHEMAS[name].values()
        ]
        assert list(frame.columns[:2]) == ["run_id", "sample_id"] or name == "runs"


def test_runs_table_reads_the_manifest(tables: Tables, two_runs: Path) -> None:
    runs = tables.runs.set_index("run_id")
    assert list(runs.index) == ["run-a", "b"]
    a, b = runs.loc["run-a"], runs.loc["b"]
    assert (a["model"], a["mode"], a["device"], a["gpu_name"]) == (
        "tiny-llava",
        "fused",
        "cuda",
        "Synthetic GPU",
    )
    assert (a["torch_version"], a["transformers_version"]) == ("2.13.0", "5.23.0")
    assert a["n_samples"] == 2 and a["n_skipped"] == 0 and a["has_manifest"] and a["has_gpu"]
    assert pd.notna(a["identity_ok"]) and not a["identity_ok"]
    assert pd.notna(a["accounting_ok"]) and a["accounting_ok"] and a["overhead_ratio"] == 1.07
    assert a["trace_dir"] == str((two_runs / "a").resolve())
    # Without run.json: the folder name, the device from the trace, unknown checks.
    assert (b["model"], b["device"], b["has_manifest"], b["has_gpu"]) == ("", "cpu", False, False)
    assert pd.isna(b["identity_ok"]) and pd.isna(b["overhead_ratio"])


def test_samples_of_both_orders_agree(tables: Tables) -> None:
    s = tables.samples.set_index(["run_id", "sample_id"])
    assert s.loc[("run-a", "sample-00000"), "sample_index"] == 0
    assert s.loc[("run-a", "sample-00001"), "sample_index"] == 1
    a = s.loc["run-a"]
    assert (a["model"] == "tiny-llava").all()
    for key in ("vision_ms", "prefill_ms", "decode_ms", "other_ms", "vision_gpu_ms", "ttft_ms", "tpot_ms"):
        assert a[key].nunique() == 1, key
    assert a["ttft_ms"].iloc[0] == pytest.approx(VLM_EXPECTED["ttft_ms"])
    b = s.loc[("b", "sample-00000")]
    assert b["timeline"] == "host" and b["ttft_ms"] == pytest.approx(0.31)


def test_stages_tokens_ops_carry_run_and_model(tables: Tables) -> None:
    for name in ("stages", "tokens", "ops"):
        frame = getattr(tables, name)
        assert set(frame["run_id"]) == {"run-a", "b"}
        assert set(frame.loc[frame["run_id"] == "run-a", "model"]) == {"tiny-llava"}
    tokens = tables.tokens[tables.tokens["run_id"] == "run-a"]
    assert tokens["latency_ms"].tolist() == pytest.approx(VLM_EXPECTED["latency_ms"] * 2)


def test_per_sample_self_times_add_up_to_the_wall(tables: Tables) -> None:
    self_ms = tables.stages.groupby(["run_id", "sample_id"])["host_self_ms"].sum()
    total = tables.samples.set_index(["run_id", "sample_id"])["total_ms"]
    assert self_ms.sort_index().to_numpy() == pytest.approx(total.sort_index().to_numpy())


def test_unreadable_traces_are_skipped_with_a_warning(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", [vlm_trace(), vlm_trace()])
    good = (run / "sample-00001.pt.trace.json.gz").read_bytes()
    (run / "sample-00001.pt.trace.json.gz").write_bytes(good[: len(good) // 3])
    (run / "sample-00002.pt.trace.json").write_text("")
    (run / "config.json").write_text('{"a": 1}')
    tables, warnings = analyze_paths([run])
    assert len(warnings) == 3
    assert all("skipped" in w for w in warnings)
    assert any("sample-00001.pt.trace.json.gz" in w and "gzip" in w for w in warnings)
    assert any("config.json" in w and "not a Kineto trace" in w for w in warnings)
    assert tables.runs["n_samples"].tolist() == [1] and tables.runs["n_skipped"].tolist() == [3]


def test_nothing_readable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x.json").write_text("[")
    with pytest.raises(AnalyzeError, match="none of the 1 trace files could be read"):
        analyze_paths([tmp_path / "r"])


def test_write_and_read_back_atomically(tables: Tables, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    paths = write_tables(tables, out)
    assert paths == [out / "tables" / n for n in TABLES]
    again = write_tables(tables, out)  # a new snapshot replaces the first one
    assert again == paths
    assert sorted(p.name for p in out.iterdir()) == ["snapshots", "tables"]  # no temp files
    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(
        ["_index.parquet", "_snapshot.json", *TABLES]
    )
    back = read_tables(out)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(back, name), getattr(tables, name), check_dtype=False)
        assert list(getattr(back, name).dtypes.astype(str)) == list(getattr(tables, name).dtypes.astype(str))
    only = read_tables(out, only=("runs",))
    assert len(only.runs) == 2 and only.ops.empty and list(only.ops.columns) == list(TABLE_SCHEMAS["ops"])
    with pytest.raises(AnalyzeError, match=r"tables: missing; run `analyze`"):
        read_tables(tmp_path / "elsewhere")


def test_flat_tables_of_earlier_versions_still_read(tables: Tables, tmp_path: Path) -> None:
    for name in TABLES:
        getattr(tables, name).to_parquet(tmp_path / f"{name}.parquet", index=False)
    back = read_tables(tmp_path)
    pd.testing.assert_frame_equal(back.samples, tables.samples)
    write_tables(tables, tmp_path)  # the new layout replaces the flat files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshots", "tables"]


def test_real_cpu_trace_from_torch_profiler(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile, record_function

    x = torch.ones(32, 32)
    with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("sample#0"):
        with record_function("stage2:preprocess"):
            y = x * 2
        with record_function("stage4:generate"):
            with record_function("stage3:vision"):
                y = y @ x
            with record_function("stage4:prefill"):
                y = y + 1
            for k in (1, 2):
                with record_function(f"stage4:decode#{k}"):
                    y = y - 1
            y.sum()
    path = tmp_path / "run" / "sample-00000.pt.trace.json"
    path.parent.mkdir()
    prof.export_chrome_trace(str(path))
    events = json.loads(path.read_text())["traceEvents"]
    span = {e["name"]: (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "user_annotation"}

    tables, warnings = analyze_paths([path.parent])
    assert warnings == []
    s = tables.samples.iloc[0]
    assert s["total_ms"] == pytest.approx((span["sample#0"][1] - span["sample#0"][0]) / 1000)
    assert s["generate_ms"] == pytest.approx((span["stage4:generate"][1] - span["stage4:generate"][0]) / 1000)
    assert s["ttft_ms"] == pytest.approx((span["stage4:prefill"][1] - span["stage4:generate"][0]) / 1000)
    assert s["tokens"] == 3 and s["timeline"] == "host" and s["gpu_kernel_ms"] == 0.0
    st = tables.stages.set_index("stage")
    assert st["host_self_ms"].sum() == pytest.approx(s["total_ms"])
    assert st.loc[voc.VISION, "host_ms"] == pytest.approx(
        (span["stage3:vision"][1] - span["stage3:vision"][0]) / 1000
    )
    ops = tables.ops[tables.ops["kind"] == "cpu_op"]
    where = ops.groupby("name")["stage"].agg(set)
    assert where["aten::mm"] == {voc.VISION}
    assert where["aten::add"] == {voc.PREFILL}
    assert where["aten::sub"] == {voc.DECODE}
    assert voc.OTHER in where["aten::sum"]  # y.sum() runs in generate, outside every forward


@pytest.fixture(scope="module")
def gpu_tables() -> Tables:
    stage_map = StageMap((("encoder", "## encoder fp8"), ("decoder", "## decoder fp8")))
    tables, warnings = analyze_paths([DATA], stage_map=stage_map)
    assert warnings == []
    return tables


@pytest.mark.parametrize(
    ("sample", "kernel_us", "copy_us"),
    [("encoder_decoder_rank0", 606_519, 1_325), ("alexnet", 10_692, 55_511), ("triton_example", 1.76, 0.0)],
)
def test_real_gpu_traces_keep_every_device_microsecond(
    gpu_tables: Tables, sample: str, kernel_us: float, copy_us: float
) -> None:
    st = gpu_tables.stages[gpu_tables.stages["sample_id"] == sample]
    assert st["gpu_kernel_ms"].sum() == pytest.approx(kernel_us / 1000)
    assert st["gpu_memcpy_ms"].sum() == pytest.approx(copy_us / 1000)
    assert voc.UNATTRIBUTED not in set(st["stage"])  # every device event has a launcher
    s = gpu_tables.samples.set_index("sample_id").loc[sample]
    assert s["gpu_kernel_ms"] == pytest.approx(kernel_us / 1000)
    assert st["host_self_ms"].sum() == pytest.approx(s["total_ms"])


def test_real_gpu_trace_agrees_with_holistic_trace_analysis(gpu_tables: Tables, tmp_path: Path) -> None:
    pytest.importorskip("hta")
    from hta.trace_analysis import TraceAnalysis

    shutil.copy(DATA / "encoder_decoder_rank0.json.gz", tmp_path)
    analysis = TraceAnalysis(trace_dir=str(tmp_path), include_last_profiler_step=True)
    _, per_kernel = analysis.get_gpu_kernel_breakdown(
        visualize=False, num_kernels=100_000, duration_ratio=1.0, include_memory_kernels=True
    )
    hta_us = float(per_kernel["sum (us)"].sum())
    assert hta_us == 607_844
    st = gpu_tables.stages[gpu_tables.stages["sample_id"] == "encoder_decoder_rank0"]
    ours_us = 1000 * (st["gpu_kernel_ms"].sum() + st["gpu_memcpy_ms"].sum())
    assert ours_us == pytest.approx(hta_us)
    ops = gpu_tables.ops[gpu_tables.ops["sample_id"] == "encoder_decoder_rank0"]
    device = ops[ops["kind"].isin(["kernel", "gpu_memcpy", "gpu_memset"])]
    assert device["total_us"].sum() == pytest.approx(hta_us)
    assert device["count"].sum() == 1154 + 50


def test_gzip_and_plain_json_give_the_same_tables(tmp_path: Path) -> None:
    plain = tmp_path / "p" / "sample-00000.pt.trace.json"
    plain.parent.mkdir()
    vlm_trace().write(plain)
    zipped = tmp_path / "z" / "sample-00000.pt.trace.json.gz"
    zipped.parent.mkdir()
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    a, _ = analyze_paths([plain.parent])
    b, _ = analyze_paths([zipped.parent])
    pd.testing.assert_frame_equal(a.stages.drop(columns="run_id"), b.stages.drop(columns="run_id"))


def test_runs_table_settings_from_run_json(tables: Tables, tmp_path: Path) -> None:
    runs = tables.runs.set_index("run_id")
    settings = ["dtype", "attn_implementation", "cache", "compile", "load_in", "weights"]
    # An older run.json without the settings: the defaults a run before them had.
    assert runs.loc["run-a", settings].tolist() == ["", "", "dynamic", False, "", "pretrained"]
    # No run.json: nothing known.
    assert runs.loc["b", settings].tolist() == ["", "", "", False, "", ""]
    newer = manifest("new")
    newer["dtype"] = "bfloat16"
    newer["config"].update(
        attn_implementation="flash_attention_2",
        cache="static",
        compile=True,
        load_in="4bit",
        weights="random",
    )
    older_random = manifest("old-random")
    older_random["model"]["weights"] = "random init (tiny config, seed 0)"
    write_run(tmp_path / "new", [vlm_trace()], newer)
    write_run(tmp_path / "old", [vlm_trace()], older_random)
    got = analyze_paths([tmp_path / "new", tmp_path / "old"])[0].runs.set_index("run_id")
    assert got.loc["new", settings].tolist() == [
        "bfloat16",
        "flash_attention_2",
        "static",
        True,
        "4bit",
        "random",
    ]
    assert got.loc["old-random", "weights"] == "random"


def test_stages_and_tokens_carry_verdicts(tables: Tables) -> None:
    st = tables.stages.set_index(["run_id", "sample_id", "stage"]).sort_index()
    assert st.loc[("run-a", "sample-00000", voc.VISION_TOWER), "bound"] == "device"
    assert st.loc[("run-a", "sample-00000", voc.UNATTRIBUTED), "bound"] == ""
    assert set(st.loc["b", "bound"]) == {"host"}
    tokens = tables.tokens.set_index(["run_id", "step"]).sort_index()
    assert tokens.loc[("b", 1), "bound"] == "host" and pd.isna(tokens.loc[("b", 1), "gpu_busy_share"])
    assert set(tokens.loc["run-a", "bound"]) == {"device"}


def test_samples_carry_run_json_outcomes_matched_by_trace_name(tmp_path: Path) -> None:
    """prompt, prefill_tokens, new_tokens, kv_cache_mb, peak_mem_mb come from run.json's
    sample outcomes (matched on the trace file, not on order); NA/NaN/"" without run.json."""
    run_json = manifest("with")
    # Listed in reverse order, and sample 1 without the memory figures (as on a failed read).
    run_json["samples"] = [
        {**run_json["samples"][1], "prompt": "USER: <image>\nB ASSISTANT:", "prefill_tokens": 641,
         "new_tokens": 3, "kv_cache_mb": 12.5},
        {**run_json["samples"][0], "prompt": "USER: <image>\nA ASSISTANT:", "prefill_tokens": 637,
         "new_tokens": 2, "kv_cache_mb": 10.25, "peak_mem_mb": 300.0},
    ]  # fmt: skip
    write_run(tmp_path / "with", [vlm_trace("5.x", sample=0), vlm_trace("5.x", sample=1)], run_json)
    write_run(tmp_path / "without", [vlm_trace("5.x", gpu=False)])
    tables, _ = analyze_paths([tmp_path])
    s = tables.samples.set_index(["run_id", "trace_file"])
    a = s.loc[("with", "sample-00000.pt.trace.json.gz")]
    b = s.loc[("with", "sample-00001.pt.trace.json.gz")]
    assert (a["prompt"], a["prefill_tokens"], a["new_tokens"]) == ("USER: <image>\nA ASSISTANT:", 637, 2)
    assert (a["kv_cache_mb"], a["peak_mem_mb"]) == (10.25, 300.0)
    assert (b["prefill_tokens"], b["kv_cache_mb"]) == (641, 12.5) and pd.isna(b["peak_mem_mb"])
    alone = s.loc[("without", "sample-00000.pt.trace.json.gz")]
    assert alone["prompt"] == "" and pd.isna(alone["prefill_tokens"]) and pd.isna(alone["kv_cache_mb"])
    assert str(tables.samples["prefill_tokens"].dtype) == "Int64"
    # The Parquet round trip keeps them.
    write_tables(tables, tmp_path / "out")
    back = read_tables(tmp_path / "out").samples
    assert back["prefill_tokens"].tolist()[:2] == tables.samples["prefill_tokens"].tolist()[:2]
