"""parse: Kineto JSON -> NumPy columns; unreadable files are AnalyzeErrors naming the file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from kineto_builders import vlm_trace

from analyze.errors import AnalyzeError
from analyze.parse import read_trace
from benchmarks.kineto import KinetoTrace

DATA = Path(__file__).parent / "data" / "kineto-gpu"


def _small() -> KinetoTrace:
    t = KinetoTrace()
    t.label("stage4:generate", 0, 100)
    t.op("aten::mm", 10, 20, external_id=7)
    t.launch(30, 40, 60, stream=7)  # correlation-linked
    t.launch(35, 45, 50, stream=8, link="flow")
    return t


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_columns_of_a_small_trace(tmp_path: Path, suffix: str) -> None:
    trace = read_trace(_small().write(tmp_path / f"t{suffix}"))
    # 2 metadata events dropped; label, op, 2 runtime calls, 2 kernels, 2 flow ends, span.
    assert len(trace) == 9
    kernels = trace.cat.isin("kernel")
    assert kernels.sum() == 2
    assert trace.ph.isin("s").sum() == 1 and trace.ph.isin("f").sum() == 1
    assert sorted(trace.dur_us[kernels].tolist()) == [5.0, 20.0]
    start = trace.ts_us[trace.name.values() == "stage4:generate"][0]
    assert trace.ts_us[kernels].min() - start == 40.0
    # Only the correlation-linked kernel carries a correlation; the flow-linked one has -1.
    assert sorted(trace.correlation[kernels].tolist())[0] == -1
    runtime = trace.cat.isin("cuda_runtime")
    assert (trace.correlation[runtime] > 0).all()
    assert trace.external_id[trace.name.values() == "aten::mm"].tolist() == [7]
    # The two flow events share one id; nothing else has one.
    flows = trace.flow_id >= 0
    assert flows.sum() == 2 and len(set(trace.flow_id[flows].tolist())) == 1
    # Streams are device threads, the host thread is not.
    assert trace.gpu_thread[trace.thread[kernels]].all()
    assert not trace.gpu_thread[trace.thread[runtime]].any()
    assert trace.gpu_name == "Synthetic GPU"


def test_threads_code_pid_and_tid_pairs(tmp_path: Path) -> None:
    t = KinetoTrace()
    t.op("a", 0, 1, tid=1)
    t.op("b", 0, 1, tid=2)
    t.op("c", 0, 1, tid="2")  # a string tid is a different thread than the int 2
    trace = read_trace(t.write(tmp_path / "t.json"))
    names = trace.name.values()
    threads = {n: int(trace.thread[names == n][0]) for n in "abc"}
    assert len(set(threads.values())) == 3


def test_bare_event_list_and_missing_fields(tmp_path: Path) -> None:
    events = [
        {"ph": "X", "name": "no-cat", "pid": 1, "tid": 1, "ts": 5.0},  # no cat, no dur, no args
        {"ph": "X", "cat": "cpu_op", "name": "op", "pid": 1, "tid": 1, "ts": 6, "dur": 2},
    ]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(events))
    trace = read_trace(path)
    assert trace.name.values().tolist() == ["no-cat", "op"]
    assert trace.dur_us.tolist() == [0.0, 2.0]
    assert trace.cat.values().tolist() == ["", "cpu_op"]
    assert trace.correlation.tolist() == [-1, -1]


def test_unexpected_field_types_take_the_lenient_path(tmp_path: Path) -> None:
    doc = {
        "traceEvents": [
            {"ph": "X", "cat": "cuda_runtime", "name": "l", "pid": 1, "tid": 1, "ts": 1, "dur": 1,
             "args": {"correlation": "12"}},
            {"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 2, "dur": None,
             "args": {"correlation": 12, "External id": None}},
        ]
    }  # fmt: skip
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(doc))
    trace = read_trace(path)
    assert trace.correlation.tolist() == [12, 12]
    assert trace.dur_us.tolist() == [1.0, 0.0]
    assert trace.external_id.tolist() == [-1, -1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b'{"traceEvents": [{"ph": "X", "name": "a"', "truncated"),
        (b'{"hello": 1}', "no traceEvents"),
        (b"[1, 2, 3]", "no traceEvents"),
        (b'{"traceEvents": []}', "no events"),
    ],
)
def test_unreadable_json_names_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(AnalyzeError, match=message) as err:
        read_trace(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_gzip_is_an_analyze_error(tmp_path: Path) -> None:
    whole = vlm_trace().write(tmp_path / "whole.json.gz").read_bytes()
    path = tmp_path / "cut.json.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(AnalyzeError, match="truncated or corrupt gzip"):
        read_trace(path)


def test_gzip_of_truncated_json_is_an_analyze_error(tmp_path: Path) -> None:
    text = vlm_trace().write(tmp_path / "whole.json").read_bytes()
    path = tmp_path / "cut.json.gz"
    path.write_bytes(gzip.compress(text[: len(text) - 40]))
    with pytest.raises(AnalyzeError, match="truncated"):
        read_trace(path)


def test_real_gpu_trace_totals() -> None:
    """Kernel and memcpy+memset totals of the real trace match the data README."""
    trace = read_trace(DATA / "encoder_decoder_rank0.json.gz")
    kernel = trace.cat.isin("kernel")
    copies = trace.cat.isin("gpu_memcpy", "gpu_memset")
    assert kernel.sum() == 1154
    assert trace.dur_us[kernel].sum() == pytest.approx(606_519)
    assert trace.dur_us[copies].sum() == pytest.approx(1_325)
    assert trace.cat.isin("cuda_runtime").sum() == 1204
    # Host pid 4037 and GPU pid 0: all kernels on device threads.
    assert trace.gpu_thread[trace.thread[kernel]].all()
    assert not trace.gpu_thread[trace.thread[trace.cat.isin("cpu_op")]].any()


def test_alexnet_flows_are_read() -> None:
    trace = read_trace(DATA / "alexnet.json.gz")
    assert trace.gpu_name == "NVIDIA A100-PG509-200"
    assert (trace.flow_id >= 0).sum() == 345 + 155
    assert trace.ph.isin("s").sum() == 155 and trace.ph.isin("f").sum() == 345
