"""attribute: innermost labels, launch points, unions; hand-computed synthetic traces and a real one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from kineto_builders import VLM_EXPECTED, vlm_trace

from analyze import vocabulary as voc
from analyze.attribute import (
    Attribution,
    attribute,
    innermost_label,
    label_breakpoints,
    launch_points,
    union_us,
)
from analyze.parse import Trace, read_trace
from analyze.stagemap import StageMap
from benchmarks.kineto import KinetoTrace

DATA = Path(__file__).parent / "data" / "kineto-gpu"


def _read(t: KinetoTrace, tmp_path: Path, name: str = "t.json") -> Trace:
    return read_trace(t.write(tmp_path / name))


def _dev_stages(trace: Trace, attr: Attribution) -> list[tuple[float, str]]:
    """(device start relative to the first host event, stage) of every device event, by start."""
    names = np.asarray(attr.stage_names, dtype=object)[attr.dev_stage]
    t0 = trace.ts_us[trace.cat.isin("user_annotation")].min()
    return sorted(zip((trace.ts_us[attr.dev_index] - t0).tolist(), names.tolist(), strict=True))


def test_breakpoints_of_nested_labels() -> None:
    # A [0,10) holds B [2,5) and C [5,8); D [8,8) is empty; E [12,14) stands alone.
    start = np.array([0.0, 2.0, 5.0, 8.0, 12.0])
    end = np.array([10.0, 5.0, 8.0, 8.0, 14.0])
    times, owner = label_breakpoints(start, end)
    segments = [(t, o) for t, o in zip(times.tolist(), owner.tolist(), strict=True)]
    assert segments == [
        (0.0, 0),
        (2.0, 1),
        (5.0, 0),  # B closes...
        (5.0, 2),  # ...and C opens at the same instant: C wins for points at 5
        (8.0, 0),
        (8.0, 3),
        (8.0, 0),  # D is empty: points at 8 are in A
        (10.0, -1),
        (12.0, 4),
        (14.0, -1),
    ]


def test_innermost_label_is_per_thread_and_half_open() -> None:
    l_thread = np.array([1, 1, 2])
    l_start = np.array([0.0, 2.0, 0.0])
    l_end = np.array([10.0, 5.0, 100.0])
    q_thread = np.array([1, 1, 1, 1, 1, 2, 3])
    q_ts = np.array([0.0, 2.0, 4.999, 5.0, 10.0, 50.0, 1.0])
    assert innermost_label(l_thread, l_start, l_end, q_thread, q_ts).tolist() == [0, 1, 1, 0, -1, 2, -1]


def test_union_counts_overlap_once_per_group() -> None:
    group = np.array([0, 0, 0, 1, 1, 2])
    start = np.array([0.0, 5.0, 20.0, 0.0, 1.0, 3.0])
    end = np.array([10.0, 12.0, 25.0, 10.0, 2.0, 3.0])
    # group 0: [0,12) + [20,25) = 17; group 1: [0,10) contains [1,2) = 10; group 2: empty = 0.
    assert union_us(group, start, end, 4).tolist() == [17.0, 10.0, 0.0, 0.0]


def test_launch_points_follow_correlation_then_flow_then_external_id(tmp_path: Path) -> None:
    t = KinetoTrace()
    t.op("aten::mm", 100, 120, external_id=500)
    t.launch(10, 20, 30, link="correlation")
    t.launch(40, 50, 60, link="flow")
    t.launch(0, 130, 140, link="external", external_id=500)
    t.launch(0, 150, 160, link="none")
    trace = _read(t, tmp_path)
    dev = np.flatnonzero(trace.cat.isin("kernel"))
    host = ~trace.gpu_thread[trace.thread] & trace.ph.isin("X")
    thread, ts = launch_points(trace, host, dev)
    rel = (ts - t.base_us).tolist()
    assert rel[:3] == [10.0, 40.0, 100.0]  # runtime call, flow start, cpu_op with the External id
    assert np.isnan(rel[3]) and thread[3] == -1
    assert (thread[:3] == trace.thread[trace.cat.isin("cpu_op")][0]).all()


@pytest.mark.parametrize("order", ["4.x", "5.x"])
def test_vlm_trace_stages_match_hand_computed(tmp_path: Path, order: str) -> None:
    trace = _read(vlm_trace(order), tmp_path)
    attr = attribute(trace)
    assert attr.window_us[1] - attr.window_us[0] == pytest.approx(1000.0)
    assert attr.sample_index == 0
    self_ms = {s: v / 1000 for s, v in attr.self_us.items() if v}
    assert self_ms == pytest.approx(VLM_EXPECTED["self_ms"])
    assert sum(attr.self_us.values()) == pytest.approx(1000.0)
    kernel_ms: dict[str, float] = {}
    is_kernel = trace.cat.isin("kernel")[attr.dev_index]
    for stage, dur in zip(attr.dev_stage[is_kernel], trace.dur_us[attr.dev_index][is_kernel], strict=True):
        name = attr.stage_names[stage]
        kernel_ms[name] = kernel_ms.get(name, 0.0) + dur / 1000
    assert kernel_ms == pytest.approx(VLM_EXPECTED["kernel_ms"])


def test_transformers_4_and_5_orders_attribute_vision_the_same(tmp_path: Path) -> None:
    a, b = _read(vlm_trace("4.x"), tmp_path, "a.json"), _read(vlm_trace("5.x"), tmp_path, "b.json")
    dev_a, dev_b = _dev_stages(a, attribute(a)), _dev_stages(b, attribute(b))
    assert dev_a == dev_b
    vision = [start for start, stage in dev_a if voc.is_vision_stage(stage)]
    assert vision == [250.0, 300.0, 345.0]
    # Vision work never lands in prefill: the prefill kernel and memcpy only.
    assert [start for start, stage in dev_a if stage == voc.PREFILL] == [455.0, 470.0]


def test_host_ops_on_another_thread_are_not_in_the_main_threads_labels(tmp_path: Path) -> None:
    trace = _read(vlm_trace(), tmp_path)
    attr = attribute(trace)
    names = trace.name.values(attr.op_index)
    stages = np.asarray(attr.stage_names, dtype=object)[attr.op_stage]
    assert stages[names == "aten::add"].tolist() == [voc.UNLABELLED]  # tid 200, during vision
    assert stages[names == "aten::to"].tolist() == [voc.PREPROCESS]
    assert "stage3:vision" not in names  # labels are not ops


def test_without_the_flow_the_kernel_is_unattributed(tmp_path: Path) -> None:
    trace = _read(vlm_trace(flows=False), tmp_path)
    attr = attribute(trace)
    stages = dict(_dev_stages(trace, attr))
    assert stages[725.0] == voc.UNATTRIBUTED
    with_flow = read_trace(vlm_trace().write(tmp_path / "f.json"))
    assert dict(_dev_stages(with_flow, attribute(with_flow)))[725.0] == voc.DECODE


def test_no_labels_gives_one_unlabelled_window(tmp_path: Path) -> None:
    t = KinetoTrace()
    t.op("aten::mm", 10, 30)
    t.op("aten::add", 50, 60, tid=7)
    attr = attribute(_read(t, tmp_path))
    assert attr.window_us[1] - attr.window_us[0] == 50.0
    assert attr.self_us == {voc.UNLABELLED: 50.0, voc.UNATTRIBUTED: 0.0}
    assert attr.sample_index is None


def test_stage_map_replaces_the_vocabulary(tmp_path: Path) -> None:
    trace = _read(vlm_trace(), tmp_path)
    attr = attribute(trace, StageMap((("steps", r"^stage4:(prefill|decode#\d+)$"),)))
    assert set(attr.labels["stage"]) == {"steps"}
    assert attr.self_us["steps"] == pytest.approx(110.0 + 200.0)  # 5.x prefill + two decode steps


def _independent_kernel_us(path: Path, names: dict[str, str]) -> dict[str, float]:
    """Kernel time per stage straight from the JSON: kernels whose correlation's runtime launch
    lies inside an annotation (on its thread); the innermost of the matching annotations wins."""
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    launches = {
        e["args"]["correlation"]: e for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver")
    }
    spans = [
        (e["pid"], e["tid"], e["ts"], e["ts"] + e["dur"], stage)
        for e in events
        if e.get("cat") == "user_annotation"
        for prefix, stage in names.items()
        if e["name"].startswith(prefix)
    ]
    totals = dict.fromkeys(names.values(), 0.0)
    for k in (e for e in events if e.get("cat") == "kernel"):
        launch = launches.get(k["args"].get("correlation"))
        if launch is None:
            continue
        inside = [
            s for s in spans if (s[0], s[1]) == (launch["pid"], launch["tid"]) and s[2] <= launch["ts"] < s[3]
        ]
        if inside:
            innermost = max(inside, key=lambda s: s[2])
            totals[innermost[4]] += k["dur"]
    return totals


def test_real_gpu_trace_kernels_per_annotation_match_an_independent_count() -> None:
    path = DATA / "encoder_decoder_rank0.json.gz"
    names = {"## encoder fp8": "encoder", "## decoder fp8": "decoder", "## forward ##": "forward"}
    expected = _independent_kernel_us(path, names)
    trace = read_trace(path)
    attr = attribute(trace, StageMap(tuple((stage, "^" + prefix) for prefix, stage in names.items())))
    is_kernel = trace.cat.isin("kernel")[attr.dev_index]
    got = dict.fromkeys(names.values(), 0.0)
    for stage, dur in zip(attr.dev_stage[is_kernel], trace.dur_us[attr.dev_index][is_kernel], strict=True):
        if attr.stage_names[stage] in got:
            got[attr.stage_names[stage]] += dur
    assert got == pytest.approx(expected)
    assert expected["encoder"] == 8864.0 and expected["decoder"] == 6467.0
    assert expected["forward"] > 100_000  # the forward pass's own kernels, encoder/decoder excluded
