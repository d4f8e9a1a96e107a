"""bound: the verdict per generation step and per stage, with its evidence, on traces with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kineto_builders import verdict_trace, vlm_trace

from analyze import bound
from analyze import vocabulary as voc
from analyze.attribute import attribute
from analyze.parse import read_trace
from analyze.stagemap import StageMap
from analyze.tokens import token_steps
from analyze.trace_tables import stage_rows
from benchmarks.kineto import KinetoTrace

DATA = Path(__file__).parent / "data" / "kineto-inference"


def _tables(
    t: KinetoTrace, tmp_path: Path, stage_map: StageMap | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    trace = read_trace(t.write(tmp_path / "t.json"))
    attr = attribute(trace, stage_map)
    return stage_rows(trace, attr).set_index("stage"), token_steps(trace, attr)[0]


def _real(name: str, stage_map: StageMap) -> pd.DataFrame:
    trace = read_trace(DATA / name)
    return stage_rows(trace, attribute(trace, stage_map)).set_index("stage")


# ------------------------------------------------------------------------------------- the rules


def test_verdict_thresholds_at_their_edges() -> None:
    share = np.array([0.7, 0.6999, 0.3, 0.2999, 0.2999, 0.29, 0.1, 1.0, 0.9, 0.1, np.nan])
    sync = np.array([0.9, 0.0, 0.9, 0.0, 0.0, 0.5, 0.4999, 0.0, 0.9, 0.9, 0.0])
    launches = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    has_dev = np.array([True] * 7 + [False] * 4)
    got = bound.verdict(has_dev, share, sync, launches).tolist()
    assert got == [
        "device",  # 0.7 is device, however long the host waited
        "mixed",
        "mixed",  # 0.3 is not idle
        "launch",
        "mixed",  # idle, but nothing launched and no sync
        "sync",  # sync at exactly half the span
        "mixed",
        "host",  # no device work of its own, even with the GPU busy
        "device",  # no own work, but blocked in sync while the GPU ran: waiting on the device
        "sync",  # no own work, blocked while the GPU idled
        "host",  # no GPU at all
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("cudaLaunchKernel", bound.KERNEL_LAUNCH),
        ("cudaLaunchKernelExC", bound.KERNEL_LAUNCH),
        ("cuLaunchKernelEx", bound.KERNEL_LAUNCH),
        ("cudaLaunchKernel_v7000", bound.KERNEL_LAUNCH),
        ("cudaLaunchCooperativeKernel", bound.KERNEL_LAUNCH),
        ("hipLaunchKernel", bound.KERNEL_LAUNCH),
        ("hipExtLaunchKernel", bound.KERNEL_LAUNCH),
        ("hipModuleLaunchKernel", bound.KERNEL_LAUNCH),
        ("hipExtModuleLaunchKernel", bound.KERNEL_LAUNCH),
        ("cudaGraphLaunch", bound.GRAPH_LAUNCH),
        ("hipGraphLaunch", bound.GRAPH_LAUNCH),
        ("cudaMemcpyAsync", bound.COPY_LAUNCH),
        ("cudaMemsetAsync", bound.COPY_LAUNCH),
        ("hipMemcpyAsync", bound.COPY_LAUNCH),
        ("cudaMemcpy", bound.SYNC_CALL),
        ("cuMemcpyDtoH_v2", bound.SYNC_CALL),
        ("hipMemcpyWithStream", bound.SYNC_CALL),
        ("cudaStreamSynchronize", bound.SYNC_CALL),
        ("cudaDeviceSynchronize", bound.SYNC_CALL),
        ("cudaEventSynchronize", bound.SYNC_CALL),
        ("hipEventSynchronize", bound.SYNC_CALL),
        ("cudaStreamWaitEvent", bound.NOT_A_CALL),  # the stream waits, not the host
        ("cudaStreamIsCapturing", bound.NOT_A_CALL),
        ("aten::mm", bound.NOT_A_CALL),
    ],
)
def test_call_kinds(name: str, kind: int) -> None:
    assert bound.call_kind(name) == kind


def test_median_by_group() -> None:
    group = np.array([2, 0, 0, 2, 2, 0, 0])
    values = np.array([5.0, 4.0, 1.0, 1.0, 3.0, 3.0, 2.0])
    med = bound.median_by_group(group, values, 4)
    assert med[0] == 2.5 and med[2] == 3.0 and math.isnan(med[1]) and math.isnan(med[3])


# ------------------------------------------------------------------- the two quoted cases


def test_prefill_of_ten_5ms_kernels_is_device_and_200_tiny_launches_are_launch(tmp_path: Path) -> None:
    stages, tokens = _tables(verdict_trace("launch"), tmp_path)
    prefill, decode = tokens.iloc[0], tokens.iloc[1:]
    # Prefill: launched from 11010, ten 5 ms kernels back to back end at 61100.
    assert prefill["bound"] == "device"
    assert prefill["bound_span_ms"] == pytest.approx(50.09)
    assert prefill["gpu_busy_share"] == pytest.approx(50_000 / 50_090)
    assert (prefill["n_launches"], prefill["n_graph_launches"]) == (10, 0)
    assert prefill["launch_ms"] == pytest.approx(0.05)
    assert prefill["kernel_mean_us"] == pytest.approx(5000.0) and prefill[
        "kernel_median_us"
    ] == pytest.approx(5000.0)
    # Decode: 200 launches of 2 us kernels over 10 ms each step.
    assert decode["bound"].tolist() == ["launch"] * 3
    assert decode["bound_span_ms"].tolist() == pytest.approx([9.962] * 3)
    assert decode["gpu_busy_share"].tolist() == pytest.approx([400 / 9962] * 3)
    assert decode["n_launches"].tolist() == [200] * 3
    assert decode["launch_ms"].tolist() == pytest.approx([1.0] * 3)
    assert decode["kernel_median_us"].tolist() == pytest.approx([2.0] * 3)
    assert decode["sync_ms"].tolist() == [0.0] * 3
    # The stage row sums its three steps' spans.
    row = stages.loc[voc.DECODE]
    assert row["bound"] == "launch" and row["bound_span_ms"] == pytest.approx(3 * 9.962)
    assert row["gpu_busy_share"] == pytest.approx(1200 / (3 * 9962))
    assert row["n_launches"] == 600 and row["launch_ms"] == pytest.approx(3.0)
    assert stages.loc[voc.PREFILL, "bound"] == "device"


def test_host_only_stages_are_host_and_a_waiting_residual_is_device(tmp_path: Path) -> None:
    stages, _ = _tables(verdict_trace("launch"), tmp_path)
    for stage in (voc.LOAD, voc.PREPROCESS):
        assert stages.loc[stage, "bound"] == "host"
        assert stages.loc[stage, "gpu_busy_share"] == 0.0
        assert stages.loc[stage, "n_launches"] == 0 and math.isnan(stages.loc[stage, "kernel_mean_us"])
    assert stages.loc[voc.PREPROCESS, "bound_span_ms"] == pytest.approx(10.0)
    # stage4:other launched nothing but waited in cudaStreamSynchronize while the prefill's kernels
    # ran: its span is its self time (50 ms after prefill + 3 gaps of 0.2 ms).
    other = stages.loc[voc.OTHER]
    assert other["bound_span_ms"] == pytest.approx(other["host_self_ms"]) == pytest.approx(50.6)
    assert other["sync_ms"] == pytest.approx(49.9)
    assert other["gpu_busy_share"] == pytest.approx(49.9 / 50.6)
    assert other["bound"] == "device"


@pytest.mark.parametrize(
    ("shape", "verdict", "span_ms", "busy_share", "n_launches", "sync_ms"),
    [
        ("graph", "device", 9.04, 9000 / 9040, 1, 8.94),  # the sync in stage4:other overlaps it
        ("sync", "sync", 9.06, 30 / 9060, 2, 9.0),
        ("mixed", "mixed", 0.84, 500 / 840, 2, 0.0),
        ("host", "host", 1.0, 0.0, 0, 0.0),
    ],
)
def test_each_verdict_per_step(
    tmp_path: Path,
    shape: str,
    verdict: str,
    span_ms: float,
    busy_share: float,
    n_launches: int,
    sync_ms: float,
) -> None:
    _, tokens = _tables(verdict_trace(shape), tmp_path)
    decode = tokens.iloc[1:]
    assert decode["bound"].tolist() == [verdict] * 3
    assert decode["bound_span_ms"].tolist() == pytest.approx([span_ms] * 3)
    assert decode["gpu_busy_share"].tolist() == pytest.approx([busy_share] * 3)
    assert decode["n_launches"].tolist() == [n_launches] * 3
    assert decode["sync_ms"].tolist() == pytest.approx([sync_ms] * 3)


def test_a_graph_launch_counts_once_for_its_300_kernels(tmp_path: Path) -> None:
    stages, tokens = _tables(verdict_trace("graph"), tmp_path)
    decode = tokens.iloc[1:]
    assert decode["n_kernels"].tolist() == [300] * 3
    assert decode["n_launches"].tolist() == [1] * 3 and decode["n_graph_launches"].tolist() == [1] * 3
    assert decode["launch_ms"].tolist() == pytest.approx([0.03] * 3)
    assert decode["kernel_mean_us"].tolist() == pytest.approx([30.0] * 3)
    row = stages.loc[voc.DECODE]
    assert (row["n_kernels"], row["n_launches"], row["n_graph_launches"]) == (900, 3, 3)


def test_a_blocking_copy_is_a_sync_call_not_a_launch(tmp_path: Path) -> None:
    _, tokens = _tables(verdict_trace("sync"), tmp_path)
    step = tokens.iloc[1]
    # two kernels launched, one cudaMemcpy that blocked 9 ms and launched the copy
    assert step["n_launches"] == 2 and step["launch_ms"] == pytest.approx(0.01)
    assert step["sync_ms"] == pytest.approx(9.0)
    assert step["kernel_mean_us"] == pytest.approx(10.0)


def test_cpu_only_trace_is_host_with_no_gpu_evidence(tmp_path: Path) -> None:
    stages, tokens = _tables(vlm_trace("4.x", gpu=False), tmp_path)
    for frame in (stages, tokens):
        assert set(frame["bound"]) == {"host"}
        assert frame["gpu_busy_share"].isna().all()
        assert (frame["n_launches"] == 0).all() and (frame["launch_ms"] == 0).all()
        assert frame["kernel_mean_us"].isna().all() and (frame["sync_ms"] == 0).all()
    # a step without device work: its label's host span
    assert tokens["bound_span_ms"].tolist() == pytest.approx([0.29, 0.1, 0.1])
    assert stages.loc[voc.OTHER, "bound_span_ms"] == pytest.approx(0.21)  # its self time


def test_vlm_trace_stages_and_unattributed(tmp_path: Path) -> None:
    stages, _ = _tables(vlm_trace("5.x"), tmp_path)
    # tower: two occurrences' work launched at 240 and 250, ending at 330 and 350: span 110 us,
    # busy 250-350 (100 us) -> device.
    tower = stages.loc[voc.VISION_TOWER]
    assert tower["bound_span_ms"] == pytest.approx(0.110) and tower["gpu_busy_share"] == pytest.approx(
        100 / 110
    )
    assert tower["bound"] == "device" and tower["n_launches"] == 2
    # preprocess: launched through External id by a cpu_op (no runtime call): 10 us busy of 40.
    pre = stages.loc[voc.PREPROCESS]
    assert pre["gpu_busy_share"] == pytest.approx(0.25) and pre["n_launches"] == 0 and pre["bound"] == "mixed"
    un = stages.loc[voc.UNATTRIBUTED]
    assert un["bound"] == bound.NO_VERDICT and math.isnan(un["bound_span_ms"])
    assert un["kernel_mean_us"] == pytest.approx(20.0)


def test_decode_step_kernels_queued_behind_other_work_count_the_busy_gpu(tmp_path: Path) -> None:
    """A step whose launches wait behind earlier kernels: the span starts at its first launch and
    the GPU is busy (with the earlier work) all along, so it is device-bound, not launch-bound."""
    t = KinetoTrace()
    t.label("stage4:generate", 0, 3000)
    t.label("stage4:prefill", 0, 100)
    t.launch(10, 20, 1020)
    t.label("stage4:decode#1", 100, 200)
    t.launch(110, 1020, 2020)  # queued behind the prefill's kernel
    _, tokens = _tables(t, tmp_path)
    step = tokens.iloc[1]
    assert step["bound_span_ms"] == pytest.approx(1.91)
    assert step["gpu_busy_share"] == pytest.approx(1.0) and step["bound"] == "device"


# ---------------------------------------------------------------- the shared real graph traces


def test_vllm_graph_decode_step() -> None:
    row = _real("vllm_decode_cudagraph.json.gz", StageMap((("decode", "^execute_"),))).loc["decode"]
    assert row["n_kernels"] == 425
    assert row["gpu_kernel_ms"] * 1000 == pytest.approx(10_674.5, abs=0.1)
    assert row["gpu_memcpy_ms"] * 1000 == pytest.approx(43.2, abs=0.1)
    # 9 hipMemcpyAsync + 3 hipLaunchKernel + 1 hipExtModuleLaunchKernel + ONE hipGraphLaunch (421 kernels)
    assert (row["n_launches"], row["n_graph_launches"]) == (14, 1)
    assert row["launch_ms"] == pytest.approx(0.5795, abs=1e-4)
    # first launch 854021.960 (a hipMemcpyAsync) .. last kernel end 872601.742; the GPU is busy
    # 10.72 ms of it (its work starts 7.8 ms after the first launch): neither mostly busy nor idle.
    assert row["bound_span_ms"] == pytest.approx(18.5798, abs=1e-3)
    assert row["gpu_busy_share"] == pytest.approx(0.5768, abs=1e-3)
    assert row["kernel_median_us"] == pytest.approx(6.239, abs=1e-3)
    assert row["bound"] == "mixed"


def test_sglang_graph_decode_step() -> None:
    stages = _real("sglang_decode_cudagraph.json.gz", StageMap((("execute", "^execute_"),)))
    row = stages.loc["execute"]
    assert row["n_kernels"] == 555
    assert row["gpu_kernel_ms"] * 1000 == pytest.approx(9_765.4, abs=0.1)
    assert row["gpu_memcpy_ms"] * 1000 == pytest.approx(13.2, abs=0.1)
    # 10 hipLaunchKernel + 2 hipMemcpyAsync + 1 hipModuleLaunchKernel + ONE hipGraphLaunch (544 kernels);
    # the blocking hipMemcpyWithStream is a sync call, not a launch.
    assert (row["n_launches"], row["n_graph_launches"]) == (14, 1)
    # The host sat 463 ms in hipMemcpyWithStream while the GPU ran 9.8 ms of kernels.
    assert row["sync_ms"] == pytest.approx(463.064, abs=1e-3)
    assert row["gpu_busy_share"] == pytest.approx(0.0206, abs=1e-3)
    assert row["bound"] == "sync"
    # Naming the inner step label instead: the 5 kernels launched before it are not the step's.
    inner = _real("sglang_decode_cudagraph.json.gz", StageMap((("decode", r"^step\[DECODE"),)))
    assert inner.loc["decode", "n_kernels"] == 550 and inner.loc["decode", "n_graph_launches"] == 1
    assert inner.loc["decode", "bound"] == "sync"


def test_graph_kernels_hang_off_one_launch_call() -> None:
    for name, behind_graph in (
        ("vllm_decode_cudagraph.json.gz", 421),
        ("sglang_decode_cudagraph.json.gz", 544),
    ):
        trace = read_trace(DATA / name)
        attr = attribute(trace)
        graph = np.flatnonzero(trace.name.isin("hipGraphLaunch"))
        assert len(graph) == 1
        assert int((attr.dev_launch_ts_us == trace.ts_us[graph[0]]).sum()) == behind_graph
