"""incremental: a second analyze into the same folder reuses unchanged traces' rows."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from kineto_builders import manifest, vlm_trace, write_ab_runs, write_run

import analyze
from analyze import incremental
from analyze.cli import main
from analyze.incremental import analyze_into, fingerprint
from analyze.stagemap import StageMap
from analyze.store import current_snapshot, read_index
from analyze.tables import analyze_paths, read_tables

TABLES = ("runs", "samples", "stages", "tokens", "ops")


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    return write_ab_runs(tmp_path / "traces")


def _assert_same_as_in_memory(root: Path, out: Path) -> None:
    expected, _ = analyze_paths([root])
    got = read_tables(out)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name))


def _inodes(snapshot: Path) -> dict[str, int]:
    return {str(p.relative_to(snapshot)): p.stat().st_ino for p in snapshot.rglob("*.parquet")}


def test_a_second_run_reuses_every_unchanged_trace(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    first = _run(traces, "--out", out)
    assert first.exit_code == 0, first.output
    assert "traces: 3 analysed, 0 reused" in first.stdout
    before = current_snapshot(out)
    assert before is not None
    second = _run(traces, "--out", out)
    assert second.exit_code == 0, second.output
    assert "traces: 0 analysed, 3 reused" in second.stdout
    after = current_snapshot(out)
    assert after is not None and after != before
    _assert_same_as_in_memory(traces, out)
    # Nothing already written was rewritten: every trace's file is the same inode (a hard link).
    old, new = _inodes(before), _inodes(after)
    per_trace = [k for k in new if not k.startswith(("runs/", "_index"))]
    assert len(per_trace) == 3 * 4
    assert all(new[k] == old[k] for k in per_trace)
    # The summary printed from the reused rows is the same as the first one.
    assert second.stdout.split("traces:")[0] == first.stdout.split("traces:")[0]


def test_changed_new_and_gone_traces(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    assert analyze_into([traces], out).analysed == 3
    # Change one trace (a CPU trace instead of a GPU one), add a run, remove run b's only trace.
    vlm_trace("5.x", sample=1, gpu=False).write(traces / "a" / "sample-00001.pt.trace.json.gz")
    write_run(traces / "c", [vlm_trace("4.x")])
    (traces / "b" / "sample-00000.pt.trace.json.gz").unlink()
    (traces / "b").rmdir()
    done = analyze_into([traces], out)
    assert (done.analysed, done.reused, done.dropped, done.skipped) == (2, 1, 1, 0)
    _assert_same_as_in_memory(traces, out)
    tables = read_tables(out)
    assert list(tables.runs["run_id"]) == ["run-a", "c"]
    timeline = tables.samples.set_index(["run_id", "sample_id"])["timeline"]
    assert (timeline[("run-a", "sample-00001")], timeline[("run-a", "sample-00000")]) == ("host", "device")
    index = read_index(done.snapshot)
    assert sorted(index["run_id"]) == ["c", "run-a", "run-a"]


def test_fresh_and_a_new_stage_map_recompute(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    analyze_into([traces], out)
    assert analyze_into([traces], out, fresh=True).analysed == 3
    result = _run(traces, "--out", out, "--fresh", "-q")
    assert result.exit_code == 0 and result.stdout == ""
    mapped = analyze_into([traces], out, stage_map=StageMap((("gen", "^stage4:generate$"),)))
    assert (mapped.analysed, mapped.reused) == (3, 0)
    assert set(read_tables(out).stages["stage"]) == {"gen", "unlabelled", "unattributed"}


def test_same_size_and_time_but_other_bytes_is_analysed_again(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    analyze_into([traces], out)
    path = traces / "a" / "sample-00000.pt.trace.json.gz"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # the gzip trailer: same size, other bytes
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    done = analyze_into([traces], out)
    assert (done.analysed, done.reused, done.skipped) == (0, 2, 1)  # hashed again: now unreadable


def test_fingerprint_hashes_head_and_tail(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(bytes(200_000))
    size, _, digest = fingerprint(big)
    assert size == 200_000
    middle = bytearray(200_000)
    middle[100_000] = 1  # outside both 64 KiB ends
    big.write_bytes(bytes(middle))
    assert fingerprint(big)[2] == digest
    middle[-1] = 1
    big.write_bytes(bytes(middle))
    assert fingerprint(big)[2] != digest


def test_an_output_folder_inside_the_inputs_is_never_read_as_traces(traces: Path) -> None:
    out = traces / "results"  # not named analysis/: its _snapshot.json must not pass for a trace
    first = analyze_into([traces], out)
    again = analyze_into([traces], out)
    assert (first.analysed, again.reused, again.skipped) == (3, 3, 0)
    assert again.warnings == []


def test_run_json_facts_reach_the_tables_and_a_changed_run_json_is_analysed_again(tmp_path: Path) -> None:
    """prefill_tokens & co. come from run.json, not the trace: they decide the rows too."""
    import json

    run_json = manifest("facts")
    for s, prefill in zip(run_json["samples"], (641, 637), strict=True):
        s.update(prompt="USER: <event>\nQ ASSISTANT:", prefill_tokens=prefill, new_tokens=3, kv_cache_mb=1.5)
    run = write_run(tmp_path / "t" / "facts", [vlm_trace(sample=0), vlm_trace(sample=1)], run_json)
    out = tmp_path / "analysis"
    assert _run(run, "--out", out).exit_code == 0
    samples = read_tables(out).samples
    assert samples["prefill_tokens"].tolist() == [641, 637] and samples["kv_cache_mb"].tolist() == [1.5, 1.5]
    run_json["samples"][1]["prefill_tokens"] = 578  # re-captured with --frames 1
    (run / "run.json").write_text(json.dumps(run_json))
    again = _run(run, "--out", out)
    assert "traces: 1 analysed, 1 reused" in again.stdout
    assert read_tables(out).samples["prefill_tokens"].tolist() == [641, 578]


def _analyze_imports(module: str) -> set[str]:
    """The analyze modules that ``analyze/<module>.py`` imports, at any depth of its code."""
    tree = ast.parse((Path(analyze.__file__).parent / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "analyze":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("analyze."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("analyze.")}
    return found


def test_code_key_covers_every_module_that_computes_rows() -> None:
    """A change to any module a trace's rows come from must invalidate reuse (bound.py was once
    missing: its verdicts would have been reused after a change)."""
    seen: set[str] = set()
    todo = ["trace_tables"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_analyze_imports(module))
    assert seen == set(incremental._ANALYSIS_MODULES)
