"""parse: Kineto JSON -> NumPy columns; unreadable files are AnalyzeErrors naming the file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from kineto_builders import vlm_trace

from analyze import parse
from analyze.errors import AnalyzeError
from analyze.parse import Trace, read_trace
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
    # The string correlation is used; the kernel's null dur is no number: it is dropped, and said.
    assert trace.correlation.tolist() == [12]
    assert trace.dur_us.tolist() == [1.0]
    assert trace.external_id.tolist() == [-1]
    assert len(trace.warnings) == 1 and "1 event(s) dropped" in trace.warnings[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b'{"traceEvents": [{"ph": "X", "name": "a"', "truncated"),
        (b'{"hello": 1}', "no traceEvents"),
        (b"[1, 2, 3]", "not a trace: no events"),
        (b'{"traceEvents": []}', "not a trace: no events"),
        (b'{"traceEvents": 5}', "no traceEvents list"),
        (b"\0\0\0\0", "not valid JSON"),
        # JSON that is no trace: nothing in it is a complete event (issue 10, item 6).
        (b'[{"a": 1}]', "no complete"),
        (b'{"traceEvents": [{"ph": 3}]}', "no complete"),
        (b'[{"id": "c1", "event_data": "a.npy", "conversations": [{"from": "human", "value": "?"}]}]',
         "no complete"),
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


# -- streaming: pieces, cuts, limits (issue 14: memory; issue 10: bad numbers, bombs) -------------
def _columns(trace: Trace) -> dict[str, list]:
    return {
        "ph": trace.ph.values().tolist(),
        "cat": trace.cat.values().tolist(),
        "name": trace.name.values().tolist(),
        "thread": trace.thread.tolist(),
        "ts": trace.ts_us.tolist(),
        "dur": trace.dur_us.tolist(),
        "correlation": trace.correlation.tolist(),
        "external_id": trace.external_id.tolist(),
        "flow": (trace.flow_id >= 0).tolist(),
        "gpu": trace.gpu_thread[trace.thread].tolist(),
        "gpu_name": [trace.gpu_name],
    }


def _busy_trace() -> KinetoTrace:
    """Hundreds of events, so that small pieces cut the event array many times."""
    t = vlm_trace()
    for k in range(150):
        t.op(f"aten::op{k % 7}", 1000 + 3 * k, 1001 + 3 * k, external_id=900 + k)
        link = "flow" if k % 3 else "correlation"
        t.launch(1000 + 3 * k, 1001 + 3 * k, 1002 + 3 * k, stream=7 + k % 2, link=link)
    return t


@pytest.mark.parametrize("piece", [64, 300, 4096])
@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_small_pieces_read_the_same_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int, suffix: str
) -> None:
    path = _busy_trace().write(tmp_path / f"t{suffix}")
    whole = _columns(read_trace(path))
    monkeypatch.setattr(parse, "PIECE_BYTES", piece)
    assert _columns(read_trace(path)) == whole
    assert len(whole["ts"]) == 688 and sum(whole["flow"]) == 2 + 2 * 100


def _awkward_doc(tmp_path: Path) -> dict:
    """A one-line (compact) document whose strings and args contain what a cut looks for."""
    doc = json.loads(_busy_trace().write(tmp_path / "base.json").read_text())
    props = doc.pop("deviceProperties")
    for i, e in enumerate(doc["traceEvents"]):
        if e.get("cat") == "cpu_op":
            e["name"] = e["name"] + ['}, {"ph": "X"}', '\\"}, {', "}\n,{", "plain"][i % 4]
            e["args"]["Input Dims"] = [[1, 2], []]
            e["args"]["nested"] = [{"a": 1}, {"b": {"c": [{}, {}]}}]
    doc["deviceProperties"] = props  # after the events: read with the last piece
    return doc


@pytest.mark.parametrize("piece", [50, 333, 10_000])
def test_cuts_inside_strings_and_nested_objects_are_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    doc = _awkward_doc(tmp_path)
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(doc, separators=(",", ":")))
    indented = tmp_path / "indented.json.gz"
    indented.write_bytes(gzip.compress(json.dumps(doc, indent=3).encode()))
    array = tmp_path / "array.json"
    array.write_text(json.dumps(doc["traceEvents"]))
    whole = _columns(read_trace(compact))
    assert whole["gpu_name"] == ["Synthetic GPU"]
    assert any(n.endswith('}, {"ph": "X"}') for n in whole["name"])
    monkeypatch.setattr(parse, "PIECE_BYTES", piece)
    assert _columns(read_trace(compact)) == whole
    assert _columns(read_trace(indented)) == whole
    from_array = _columns(read_trace(array))
    assert from_array == {**whole, "gpu_name": [""]}  # the array form has no deviceProperties


def test_concatenated_gzip_members_are_one_trace(tmp_path: Path) -> None:
    text = _busy_trace().write(tmp_path / "t.json").read_bytes()
    path = tmp_path / "members.json.gz"
    half = len(text) // 2
    path.write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]) + b"\0" * 16)
    assert _columns(read_trace(path)) == _columns(read_trace(tmp_path / "t.json"))
    path.write_bytes(gzip.compress(text) + b"garbage")
    with pytest.raises(AnalyzeError, match="corrupt gzip"):
        read_trace(path)


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4 MB of gzip that would inflate to 4 GB is refused once it passes the limit (issue 10, item 13)."""
    bomb = tmp_path / "bomb.json.gz"
    chunk = gzip.compress(b'{"traceEvents": [' + b" " * (64 << 20), compresslevel=9)
    bomb.write_bytes(chunk)  # one 64 MB member (64 KB on disk)
    inflated: list[int] = []
    original = parse._gunzip

    def counting(*args: object) -> object:
        for piece in original(*args):  # type: ignore[arg-type]
            inflated.append(len(piece))
            yield piece

    monkeypatch.setattr(parse, "_gunzip", counting)
    with pytest.raises(AnalyzeError, match=r"larger than 8 MB uncompressed \(--max-trace-mb\)") as err:
        read_trace(bomb, max_bytes=8 * parse.MB)
    assert str(bomb) in str(err.value)
    assert sum(inflated) <= 8 * parse.MB  # stopped at the limit, never inflated whole
    plain = tmp_path / "big.json"
    plain.write_bytes(b" " * (2 * parse.MB))
    with pytest.raises(AnalyzeError, match="larger than 1 MB"):
        read_trace(plain, max_bytes=parse.MB)


def test_events_with_bad_numbers_are_dropped_and_counted(tmp_path: Path) -> None:
    """A negative or non-numeric dur, a missing or non-numeric ts: dropped, said once (issue 10, item 9)."""
    events = [
        {"ph": "X", "cat": "user_annotation", "name": "sample#0", "pid": 1, "tid": 1, "ts": 0, "dur": 100},
        {"ph": "X", "cat": "user_annotation", "name": "stage1:load", "pid": 1, "tid": 1, "ts": 10,
         "dur": -50},
        {"ph": "X", "cat": "cpu_op", "name": "a", "pid": 1, "tid": 1, "ts": "soon", "dur": 5},
        {"ph": "X", "cat": "cpu_op", "name": "b", "pid": 1, "tid": 1, "dur": 5},
        {"ph": "X", "cat": "cpu_op", "name": "c", "pid": 1, "tid": 1, "ts": 20, "dur": "long"},
        {"ph": "X", "cat": "cpu_op", "name": "ok", "pid": 1, "tid": 1, "ts": 30, "dur": 5},
        {"ph": "i", "name": "instant", "pid": 1, "tid": 1, "ts": 40},
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "python"}},
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"traceEvents": events}))
    trace = read_trace(path)
    assert trace.name.values().tolist() == ["sample#0", "ok", "instant"]
    assert trace.warnings == (
        f"{path}: 4 event(s) dropped: ts missing or not a number, or a complete event's dur not a "
        "number or negative",
    )
    alone = tmp_path / "all-bad.json"
    alone.write_text(json.dumps([events[1], events[2]]))
    with pytest.raises(AnalyzeError, match=r"no complete .* event \(2 had unusable ts/dur numbers\)"):
        read_trace(alone)
