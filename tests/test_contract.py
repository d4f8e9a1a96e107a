"""run.json's schema: validation names the bad field, version 1 files migrate, nothing else is read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from analyze.contract import (
    SCHEMA,
    TABLE_SCHEMAS,
    ManifestError,
    RunManifest,
    SampleOutcome,
    Verification,
    decode_manifest,
    encode_manifest,
    migrate,
    trace_file_name,
)

V1 = Path(__file__).parent / "data" / "manifests" / "run-v1.json"


def test_a_version_1_run_json_from_capture_migrates_to_the_current_schema() -> None:
    raw = json.loads(V1.read_text())
    assert raw["schema"] == "stagetrace.run/1" and "host" not in raw["samples"][0]
    m = decode_manifest(V1.read_bytes())
    assert m.schema == SCHEMA == "stagetrace.run/2"
    assert m.run_id == "tiny-llava-20261123-040615" and m.status == "complete"
    # v2's per-sample host and device come from v1's run-wide env; rank 0 (one process)
    assert [(s.host, s.rank, s.device) for s in m.samples] == [("vm", 0, "cpu"), ("vm", 0, "cpu")]
    assert m.samples[0].token_ids == [77, 91, 165] and m.samples[1].accounting.steps_labelled == 3
    assert m.model.class_name == "LlavaForConditionalGeneration" and m.model.parameters == 149184
    assert m.verification.overhead.ratio == pytest.approx(1.5122)
    assert m.verification.failed() == []


def test_encode_then_decode_gives_the_same_manifest_and_class_keeps_its_json_name() -> None:
    m = decode_manifest(V1.read_bytes())
    data = encode_manifest(m)
    assert json.loads(data)["model"]["class"] == "LlavaForConditionalGeneration"
    assert decode_manifest(data) == m
    assert data.count(b"\n") > 50  # indented: one key per line for a person reading it


@pytest.mark.parametrize(
    ("doc", "names"),
    [
        ({"schema": "stagetrace.run/1"}, "run_id"),
        ({"schema": "stagetrace.run/2", "run_id": "r", "config": None}, "config"),
        ({"schema": "stagetrace.run/2", "run_id": "r", "samples": "abc"}, "samples"),
        ({"schema": "stagetrace.run/2", "run_id": "r", "samples": [{"sample_id": "x"}]}, "samples[0]"),
        ({"schema": "stagetrace.run/2", "run_id": "r", "status": "weird"}, "status"),
        (
            {"schema": "stagetrace.run/2", "run_id": "r", "samples": [
                {"index": "0", "sample_id": "s", "trace": "t", "status": "ok"}]},
            "samples[0].index",
        ),
    ],
)  # fmt: skip
def test_validation_errors_name_the_bad_field(doc: dict, names: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(f"`{names}`")):
        decode_manifest(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'{"schema": "something/1", "run_id": "r"}', "not a stagetrace run manifest"),
        (b'{"run_id": "r"}', "not a stagetrace run manifest"),
        (b'{"schema": "stagetrace.run/99", "run_id": "r"}', "newer stagetrace"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"schema": "stagetrace.run/2", "run_id"', "not valid JSON"),
    ],
)
def test_what_is_no_manifest_is_refused(data: bytes, says: str) -> None:
    with pytest.raises(ManifestError, match=says):
        decode_manifest(data)


def test_migrate_leaves_its_input_alone_and_keeps_fields_that_are_already_there() -> None:
    doc = {"schema": "stagetrace.run/1", "run_id": "r", "env": {"hostname": "h", "device": "cuda"},
           "samples": [{"index": 0, "device": "cuda:1"}]}  # fmt: skip
    out = migrate(doc)
    assert doc["schema"] == "stagetrace.run/1" and "host" not in doc["samples"][0]
    assert out["samples"] == [{"host": "h", "rank": 0, "device": "cuda:1", "index": 0}]


def test_a_fresh_manifest_round_trips_and_reports_failed_checks() -> None:
    m = RunManifest(
        run_id="r", samples=[SampleOutcome(index=3, sample_id="s", trace=trace_file_name(3), status="ok")]
    )
    assert m.sample(3).trace == "sample-00003.pt.trace.json.gz" and m.sample(4) is None
    m.verification = msgspec.convert({"identity": {"ok": False}, "accounting": {"ok": True}}, Verification)
    assert m.verification.failed() == ["identity"]
    assert decode_manifest(encode_manifest(m)) == m


def test_every_table_column_carries_a_unit_or_is_a_key_count_or_label() -> None:
    unitless = {
        "run_id", "sample_id", "stage", "step", "model", "mode", "device", "gpu_name", "torch_version",
        "transformers_version", "trace_dir", "has_manifest", "identity_ok", "accounting_ok", "has_gpu",
        "trace_file", "timeline", "phase", "kind", "name", "sample_index", "tokens", "overhead_ratio",
        "mixed_devices",
        "bound", "dtype", "attn_implementation", "cache", "compile", "load_in", "weights",
        "prompt", "prefill_tokens", "new_tokens",
    }  # fmt: skip
    for table, schema in TABLE_SCHEMAS.items():
        for column in schema:
            units = ("_ms", "_us", "_s", "_mb", "_share", "_host", "_gpu")
            ok = column.endswith(units) or column.startswith("n_")
            assert ok or column in unitless or column == "count", (table, column)


def test_manifest_part_names_and_merged_samples() -> None:
    from analyze.contract import RunManifest, SampleOutcome, merge_samples, part_file_name, part_rank

    assert part_file_name(12) == "run.rank-12.json" and part_rank("run.rank-12.json") == 12
    assert part_rank("run.json") is None and part_rank("run.rank-x.json") is None
    ok = SampleOutcome(index=1, sample_id="s1", trace="t1", status="ok", rank=1)
    err = SampleOutcome(index=1, sample_id="s1", trace="t1", status="error", error="oom", rank=0)
    other = SampleOutcome(index=0, sample_id="s0", trace="t0", status="ok")
    head = RunManifest(run_id="r", samples=[ok])
    # A later error never hides an ok capture of the same sample; samples come back by index.
    merged = merge_samples(head, RunManifest(run_id="r", samples=[err, other]))
    assert [(s.index, s.status, s.rank) for s in merged] == [(0, "ok", 0), (1, "ok", 1)]
    assert merge_samples(RunManifest(run_id="r", samples=[err]), head)[0].status == "ok"
