"""trace_tables: one trace -> its stage, op and sample rows, checked against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from kineto_builders import VLM_EXPECTED, vlm_trace

from analyze import vocabulary as voc
from analyze.trace_tables import TraceTask, analyze_trace


def _task(path: Path, **kw: object) -> TraceTask:
    base = {
        "run_id": "r",
        "model": "m",
        "sample_id": "s",
        "order": 5,
        "manifest_index": None,
        "stage_map": None,
    }
    return TraceTask(path=path, **(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ["4.x", "5.x"])
def test_stage_rows(tmp_path: Path, order: str) -> None:
    out = analyze_trace(_task(vlm_trace(order).write(tmp_path / "t.json.gz")))
    st = out.stages.set_index("stage")
    assert list(st.index) == [
        voc.LOAD,
        voc.PREPROCESS,
        voc.VISION,
        voc.VISION_TOWER,
        voc.PREFILL,
        voc.DECODE,
        voc.OTHER,
        voc.UNLABELLED,
        voc.UNATTRIBUTED,
    ]
    assert (out.stages["run_id"] == "r").all() and (out.stages["model"] == "m").all()
    expected_self = VLM_EXPECTED["self_ms"] | {voc.UNATTRIBUTED: 0.0}
    assert st["host_self_ms"].to_dict() == pytest.approx(expected_self)
    assert st.loc[voc.PREFILL, "host_ms"] == pytest.approx(VLM_EXPECTED["host_ms"][order][voc.PREFILL])
    assert st.loc[voc.VISION, "host_ms"] == pytest.approx(0.18)
    assert st.loc[voc.DECODE, "host_ms"] == pytest.approx(0.20)
    assert st.loc[voc.OTHER, "host_ms"] == pytest.approx(0.21)  # residual: its self time
    assert st["gpu_kernel_ms"].to_dict() == pytest.approx(VLM_EXPECTED["kernel_ms"] | {voc.LOAD: 0.0})
    assert st.loc[voc.PREFILL, "gpu_memcpy_ms"] == pytest.approx(0.010)
    for stage, busy in VLM_EXPECTED["busy_ms"].items():
        assert st.loc[stage, "gpu_busy_ms"] == pytest.approx(busy), stage
    for stage, span in VLM_EXPECTED["span_ms"].items():
        assert st.loc[stage, "gpu_span_ms"] == pytest.approx(span), stage
    assert st["n_labels"].to_dict() == {
        voc.LOAD: 1,
        voc.PREPROCESS: 1,
        voc.VISION: 1,
        voc.VISION_TOWER: 1,
        voc.PREFILL: 1,
        voc.DECODE: 2,
        voc.OTHER: 1,
        voc.UNLABELLED: 1,
        voc.UNATTRIBUTED: 0,
    }
    assert st.loc[voc.DECODE, "n_kernels"] == 4 and st.loc[voc.PREFILL, "n_device_events"] == 2
    assert st.loc[voc.UNLABELLED, "n_host_ops"] == 2  # a launch outside labels + the other thread's op


def test_sample_row(tmp_path: Path) -> None:
    out = analyze_trace(_task(vlm_trace("4.x", sample=3).write(tmp_path / "t.json")))
    row = out.samples.iloc[0]
    assert row["sample_index"] == 3  # from the sample#3 label, not the file order
    parts = ["load_ms", "preprocess_ms", "vision_ms", "prefill_ms", "decode_ms", "other_ms", "unlabelled_ms"]
    assert row[parts].sum() == pytest.approx(row["total_ms"]) and row["total_ms"] == pytest.approx(1.0)
    assert row["vision_ms"] == pytest.approx(0.18)
    assert row["generate_ms"] == pytest.approx(0.7)
    for key in ("gpu_kernel_ms", "vision_gpu_ms", "llm_gpu_ms", "gpu_busy_ms", "ttft_ms", "tpot_ms"):
        assert row[key] == pytest.approx(VLM_EXPECTED[key]), key
    assert row["unattributed_gpu_ms"] == pytest.approx(0.020)
    assert row["tokens"] == 3 and row["tokens_per_s"] == pytest.approx(3 / 0.7 * 1000)
    assert row["vision_share_host"] == pytest.approx(0.18 / 0.70)
    assert row["vision_share_gpu"] == pytest.approx(0.170 / 0.365)
    assert row["llm_share_gpu"] == pytest.approx(0.195 / 0.365)
    assert row["timeline"] == "device"
    assert out.has_gpu and out.gpu_name == "Synthetic GPU"


def test_cpu_trace_sample_row_and_index_fallback(tmp_path: Path) -> None:
    t = vlm_trace("5.x", gpu=False, sample_label=False)
    out = analyze_trace(_task(t.write(tmp_path / "t.json"), manifest_index=7))
    row = out.samples.iloc[0]
    assert row["sample_index"] == 7  # no sample# label: run.json's index
    assert row["timeline"] == "host" and row["gpu_kernel_ms"] == 0.0
    assert row["ttft_ms"] == pytest.approx(0.31)  # prefill host end 510 - generate start 200
    # Without sample#, the wall is the span of all host events: 10 .. 900.
    assert row["total_ms"] == pytest.approx(0.89)
    assert row["unlabelled_ms"] == pytest.approx(0.89 - 0.05 - 0.10 - 0.70)
    assert math.isnan(row["vision_share_gpu"])
    out = analyze_trace(_task(t.write(tmp_path / "u.json")))
    assert out.samples.iloc[0]["sample_index"] == 5  # nor run.json: the file order


def test_op_rows(tmp_path: Path) -> None:
    out = analyze_trace(_task(vlm_trace().write(tmp_path / "t.json")))
    ops = out.ops.set_index(["stage", "kind", "name"])
    assert ops.loc[(voc.DECODE, "kernel", "gemm_kernel"), "count"] == 4
    assert ops.loc[(voc.DECODE, "kernel", "gemm_kernel"), "total_us"] == pytest.approx(125.0)
    assert ops.loc[(voc.DECODE, "kernel", "gemm_kernel"), "mean_us"] == pytest.approx(31.25)
    assert ops.loc[(voc.VISION_TOWER, "cuda_runtime", "cudaLaunchKernel"), "count"] == 2
    assert ops.loc[(voc.PREFILL, "gpu_memcpy", "Memcpy HtoD (Pageable -> Device)"), "total_us"] == 10.0
    assert ops.loc[(voc.PREPROCESS, "cpu_op", "aten::to"), "total_us"] == 20.0
    assert not out.ops["kind"].eq("user_annotation").any()  # every annotation here is a label
    assert out.ops["kind"].isin(["cpu_op", "cuda_runtime", "kernel", "gpu_memcpy"]).all()
    # Display order: stages in pipeline order.
    stages = list(dict.fromkeys(out.ops["stage"]))
    assert stages == [voc.PREPROCESS, voc.VISION, voc.VISION_TOWER, voc.PREFILL, voc.DECODE, voc.OTHER,
                      voc.UNLABELLED, voc.UNATTRIBUTED]  # fmt: skip
