"""The benchmark's trace generator: valid Kineto JSON whose known structure analyze recovers exactly."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from analyze import vocabulary as vocab
from analyze.tables import analyze_paths
from benchmarks.gen_traces import TraceShape, TraceTruth, generate_set, truth_path, write_trace

SMALL = TraceShape(decode_steps=5, llm_layers=2, vision_layers=2, seed=7)


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> TraceTruth:
    run = tmp_path_factory.mktemp("gen") / "run"
    run.mkdir()
    return write_trace(run / "sample-00003.pt.trace.json.gz", SMALL, sample_index=3)


@pytest.fixture(scope="module")
def tables(small_trace: TraceTruth):  # type: ignore[no-untyped-def]
    tabs, warnings = analyze_paths([Path(small_trace.path)])
    assert warnings == []
    return tabs


def test_valid_kineto_json_with_the_expected_events(small_trace: TraceTruth) -> None:
    data = gzip.decompress(Path(small_trace.path).read_bytes())
    assert len(data) == small_trace.size_bytes
    doc = json.loads(data)
    events = doc["traceEvents"]
    assert len(events) == small_trace.n_events
    cats = Counter(e.get("cat") for e in events)
    kernels = [e for e in events if e.get("cat") == "kernel"]
    assert len(kernels) == small_trace.n_kernels
    assert {e["tid"] for e in kernels} == {7, 20}  # two streams
    launches = {e["args"]["correlation"] for e in events if e.get("name") == "cudaLaunchKernel"}
    assert (
        sum(e["args"]["correlation"] in launches for e in kernels) == small_trace.n_kernels - 1
    )  # one orphan
    assert cats["gpu_memcpy"] + cats["gpu_memset"] == sum(small_trace.memcpy_by_stage.values())
    flows = Counter(e["ph"] for e in events if e.get("cat") == "ac2g")
    assert flows["s"] == flows["f"] == len(launches) + sum(small_trace.memcpy_by_stage.values())
    labels = [e["name"] for e in events if e.get("cat") == "user_annotation"]
    assert labels[:3] == ["sample#3", vocab.LOAD, vocab.PREPROCESS]
    assert labels.count(vocab.VISION_TOWER) == 1
    assert sorted(vocab.decode_step(n) for n in labels if vocab.decode_step(n) is not None) == list(range(6))
    gemm = next(e for e in kernels if e["name"].startswith("ampere_bf16_s16816gemm"))
    assert len(gemm["args"]["grid"]) == 3 and len(gemm["args"]["block"]) == 3
    assert doc["distributedInfo"]["rank"] == 3
    # HTA finds the rank with this regex on the first line that has it (so it must sit in the header).
    rank_re = re.compile(r'"rank":\s+(\d+)')
    lines = data.decode().splitlines()
    line_no, first = next((i, m) for i, line in enumerate(lines) if (m := rank_re.search(line)))
    assert first.group(1) == "3" and line_no < 10


def test_same_seed_same_bytes_and_size_target(tmp_path: Path) -> None:
    a = write_trace(tmp_path / "a.json", TraceShape.for_size(1.0, seed=1), 0)
    b = write_trace(tmp_path / "b.json", TraceShape.for_size(1.0, seed=1), 0)
    c = write_trace(tmp_path / "c.json", TraceShape.for_size(1.0, seed=2), 0)
    assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
    assert Path(a.path).read_bytes() != Path(c.path).read_bytes()
    assert 0.85e6 < a.size_bytes < 1.3e6
    assert a.decode_steps >= 2


def test_analyze_attributes_what_the_generator_put_there(small_trace: TraceTruth, tables) -> None:  # type: ignore[no-untyped-def]
    stages = tables.stages.set_index("stage")
    for stage, n in small_trace.kernels_by_stage.items():
        assert stages.loc[stage, "n_kernels"] == n, stage
        assert stages.loc[stage, "gpu_kernel_ms"] == pytest.approx(
            small_trace.kernel_us_by_stage[stage] / 1e3
        )
    for stage, n in small_trace.memcpy_by_stage.items():
        assert stages.loc[stage, "n_device_events"] - stages.loc[stage, "n_kernels"] == n, stage
    assert stages["n_kernels"].sum() == small_trace.n_kernels
    assert stages.loc[vocab.UNATTRIBUTED, "n_kernels"] == 1
    assert stages.loc[vocab.DECODE, "n_labels"] == small_trace.decode_steps == 5

    sample = tables.samples.iloc[0]
    assert sample["sample_index"] == 3
    assert sample["tokens"] == small_trace.decode_steps + 1
    assert sample["gpu_kernel_ms"] == pytest.approx(small_trace.kernel_us / 1e3)
    assert sample["unattributed_gpu_ms"] == pytest.approx(
        small_trace.kernel_us_by_stage[vocab.UNATTRIBUTED] / 1e3
    )


def test_tokens_table_matches_the_generated_steps(small_trace: TraceTruth, tables) -> None:  # type: ignore[no-untyped-def]
    tokens = tables.tokens.sort_values("step")
    assert tokens["step"].tolist() == list(range(small_trace.decode_steps + 1))
    assert tokens["n_kernels"].tolist() == small_trace.kernels_by_step
    assert tokens["gpu_kernel_ms"].to_numpy() == pytest.approx(
        [u / 1e3 for u in small_trace.kernel_us_by_step]
    )
    emitted_ms = [(ns - small_trace.generate_start_ns) / 1e6 for ns in small_trace.step_emitted_ns]
    assert tokens["emitted_ms"].to_numpy() == pytest.approx(emitted_ms, abs=1e-5)


def test_generate_set_reuses_an_identical_set(tmp_path: Path) -> None:
    shape = TraceShape.for_size(0.5)
    first = generate_set(tmp_path / "set", 2, shape)
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == [
        "sample-00000.pt.trace.json",
        "sample-00001.pt.trace.json",
    ]
    assert truth_path(tmp_path / "set").exists()
    mtime = Path(first[0].path).stat().st_mtime_ns
    again = generate_set(tmp_path / "set", 2, shape)
    assert again == first and Path(first[0].path).stat().st_mtime_ns == mtime
    gz = generate_set(tmp_path / "set", 1, shape, gz=True)
    assert [Path(t.path).name for t in gz] == ["sample-00000.pt.trace.json.gz"]
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["sample-00000.pt.trace.json.gz"]
