"""discover: paths -> runs (run folders, folders of runs, single files) and their manifests."""

from __future__ import annotations

from pathlib import Path

import pytest
from kineto_builders import manifest, vlm_trace, write_run

from analyze.discover import discover, sample_id
from analyze.errors import AnalyzeError


def test_sample_id_is_the_trace_stem() -> None:
    assert sample_id(Path("sample-00003.pt.trace.json.gz")) == "sample-00003"
    assert sample_id(Path("rank0.json")) == "rank0"
    assert sample_id(Path("x.trace.json")) == "x"


def test_folder_of_run_folders(tmp_path: Path) -> None:
    write_run(tmp_path / "a", [vlm_trace(), vlm_trace()], manifest("run-from-manifest"))
    write_run(tmp_path / "b", [vlm_trace()])
    (tmp_path / "a" / "analysis").mkdir()
    (tmp_path / "a" / "analysis" / "old.json").write_text("{}")  # outputs are never inputs
    (tmp_path / "b" / ".sample-00009.pt.trace.json.gz.tmp-1").write_text("")  # capture's temp file
    runs, warnings = discover([tmp_path])
    assert warnings == []
    assert [r.run_id for r in runs] == ["run-from-manifest", "b"]
    assert [len(r.traces) for r in runs] == [2, 1]
    assert runs[0].manifest is not None and runs[0].manifest.config["model"] == "tiny-llava"
    assert runs[1].manifest is None
    assert runs[0].traces[0].name == "sample-00000.pt.trace.json.gz"


def test_single_files_belong_to_their_folders_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", [vlm_trace(), vlm_trace()], manifest("rid"))
    runs, _ = discover([run / "sample-00001.pt.trace.json.gz", run / "sample-00000.pt.trace.json.gz"])
    assert len(runs) == 1 and runs[0].run_id == "rid"
    assert [p.name for p in runs[0].traces] == [
        "sample-00000.pt.trace.json.gz",
        "sample-00001.pt.trace.json.gz",
    ]


def test_same_folder_twice_is_one_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", [vlm_trace()])
    runs, _ = discover([run, run / "sample-00000.pt.trace.json.gz"])
    assert len(runs) == 1 and len(runs[0].traces) == 1


def test_clashing_run_ids_are_made_unique(tmp_path: Path) -> None:
    write_run(tmp_path / "x" / "same", [vlm_trace()])
    write_run(tmp_path / "y" / "same", [vlm_trace()])
    runs, warnings = discover([tmp_path / "x", tmp_path / "y"])
    assert [r.run_id for r in runs] == ["same", "same-2"]
    assert len(warnings) == 1 and "same-2" in warnings[0]


def test_unreadable_manifest_is_a_warning(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", [vlm_trace()])
    (run / "run.json").write_text("{not json")
    runs, warnings = discover([run])
    assert runs[0].manifest is None and runs[0].run_id == "r"
    assert len(warnings) == 1 and "run.json" in warnings[0]


def test_missing_path_empty_folder_and_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(AnalyzeError, match="no such file or folder"):
        discover([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalyzeError, match="no trace files"):
        discover([tmp_path / "empty"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AnalyzeError, match="not a trace file"):
        discover([tmp_path / "notes.txt"])


def test_manifest_parts_of_an_unfinished_distributed_run(tmp_path: Path) -> None:
    """Ranks' run.rank-R.json parts are not traces; before rank 0 merged them, they add their samples."""
    import json

    head = manifest("dist", n_samples=4)
    head["status"], head["world_size"], head["samples"] = "running", 2, []
    run = write_run(tmp_path / "r", [vlm_trace(sample=i) for i in range(4)], head)
    for rank in (0, 1):
        part = manifest("dist", n_samples=4)
        part["rank"], part["world_size"] = rank, 2
        part["samples"] = [{**s, "rank": rank, "index": s["index"]} for s in part["samples"][rank::2]]
        (run / f"run.rank-{rank}.json").write_text(json.dumps(part))
    (run / "run.rank-2.json").write_text("{")  # a rank killed mid-write cannot leave this; damage can
    runs, warnings = discover([tmp_path])
    names = [p.name for p in runs[0].traces]
    assert len(runs) == 1 and names == [f"sample-{i:05d}.pt.trace.json.gz" for i in range(4)]
    m = runs[0].manifest
    assert m is not None and [(s.index, s.rank) for s in m.samples] == [(0, 0), (1, 1), (2, 0), (3, 1)]
    assert m.completed == 4 and m.world_size == 2
    assert len(warnings) == 1 and "run.rank-2.json: unreadable manifest part" in warnings[0]
