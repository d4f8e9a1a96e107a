"""distributed: capture under torchrun (2 CPU ranks over gloo), manifest parts, merge, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from analyze.contract import (
    AccountingCheck,
    IdentityCheck,
    Mismatch,
    OverheadCheck,
    RunManifest,
    SampleAccounting,
    SampleOutcome,
    Verification,
    decode_manifest,
    encode_manifest,
    part_file_name,
)
from analyze.tables import analyze_paths
from capture.distributed import World, merge_run
from capture.errors import CaptureError

N = 4


def test_world_from_torchrun_environment() -> None:
    assert World.from_env({}) == World()
    world = World.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (world.rank, world.size, world.local_rank, world.local_size, world.distributed) == (
        3,
        4,
        1,
        2,
        True,
    )
    assert world.shard(list(range(10))) == [3, 7]
    assert World(rank=1, size=2).shard([1, 4, 5, 8, 9]) == [4, 8]  # a resumed run: every 2nd still to do
    with pytest.raises(CaptureError, match="RANK='x'"):
        World.from_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(CaptureError, match="inconsistent"):
        World.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def _outcome(index: int, rank: int, ok: bool = True, generate_ms: float = 10.0) -> SampleOutcome:
    return SampleOutcome(
        index=index,
        sample_id=f"s{index}",
        trace=f"sample-{index:05d}.pt.trace.json.gz",
        status="ok" if ok else "error",
        error=None if ok else "boom",
        wall_ms={"generate": generate_ms},
        accounting=SampleAccounting(
            ok=True, total_ms=1.0, stage_self_sum_ms=1.0, error_ms=0.001 * index, steps_labelled=3, tokens=3
        )
        if ok
        else None,
        host=f"node{rank}",
        rank=rank,
        device=f"cuda:{rank}",
    )


def _part(rank: int, samples: list[SampleOutcome], ratio: float, same: bool = True) -> RunManifest:
    return RunManifest(
        run_id="r",
        status="complete",
        rank=rank,
        world_size=2,
        samples=samples,
        completed=sum(s.status == "ok" for s in samples),
        verification=Verification(
            identity=IdentityCheck(
                ok=same,
                checked=[samples[0].index],
                mismatches=[] if same else [Mismatch(samples[0].index, 2)],
            ),
            accounting=AccountingCheck(ok=True, checked=len(samples)),
            overhead=OverheadCheck(ratio=ratio, samples=1, profiled_ms=ratio * 10, unprofiled_ms=10.0),
        ),
        warnings=["slow disk"] if rank == 1 else [],
    )


def test_merge_run_folds_every_ranks_samples_and_checks() -> None:
    head = RunManifest(run_id="r", status="running", world_size=2)
    parts = [_part(0, [_outcome(0, 0), _outcome(2, 0)], 1.1), _part(1, [_outcome(1, 1), _outcome(3, 1)], 1.3)]
    merged = merge_run(head, parts, [0, 1])
    assert [(s.index, s.rank, s.device) for s in merged.samples] == [
        (0, 0, "cuda:0"),
        (1, 1, "cuda:1"),
        (2, 0, "cuda:0"),
        (3, 1, "cuda:1"),
    ]
    assert (merged.status, merged.completed, merged.world_size, merged.rank) == ("complete", 4, 2, None)
    ver = merged.verification
    assert ver.identity is not None and ver.identity.ok is True and ver.identity.checked == [0, 1]
    assert ver.accounting is not None and (ver.accounting.ok, ver.accounting.checked) == (True, 4)
    assert ver.accounting.max_error_ms == pytest.approx(0.003)
    assert ver.overhead is not None and ver.overhead.ratio == pytest.approx(1.2) and ver.overhead.samples == 2
    assert ver.timing is not None and ver.timing.samples == 4 and ver.timing.ok
    assert [(r.rank, r.local_rank, r.device, r.completed) for r in merged.ranks] == [
        (0, 0, "cuda:0", 2),
        (1, 1, "cuda:1", 2),
    ]
    assert merged.warnings == ["rank 1: slow disk"]
    # One rank's identity mismatch or failed sample fails the run; its round trip is the schema's.
    bad = merge_run(head, [parts[0], _part(1, [_outcome(1, 1), _outcome(3, 1, ok=False)], 1.3, same=False)])
    assert bad.status == "failed" and bad.verification.failed() == ["identity"]
    assert [m.index for m in bad.verification.identity.mismatches] == [1]  # type: ignore[union-attr]
    assert decode_manifest(encode_manifest(bad)) == bad


def test_parts_are_read_by_rank_number_in_capture_and_analyze(tmp_path: Path) -> None:
    """Rank 10's part comes after rank 2's (by name it would come first), when capture folds the
    parts (read_parts, consolidate) and when analyze reads them (load_manifest) alike: the order
    decides which of two error outcomes of one sample stands."""
    from analyze.contract import part_paths
    from analyze.discover import load_manifest
    from capture.distributed import consolidate, read_parts
    from capture.manifest import RunFolder

    (tmp_path / "run.json").write_bytes(encode_manifest(RunManifest(run_id="r", status="interrupted")))
    for rank in (10, 2):
        failed = msgspec.structs.replace(_outcome(0, rank, ok=False), error=f"rank {rank} failed")
        part = RunManifest(run_id="r", rank=rank, samples=[failed, _outcome(rank, rank)])
        (tmp_path / part_file_name(rank)).write_bytes(encode_manifest(part))
    (tmp_path / "run.rank-x.json").write_text("{")  # not a part's name: neither side reads it
    assert [p.name for p in part_paths(tmp_path)] == ["run.rank-2.json", "run.rank-10.json"]
    assert [p.rank for p in read_parts(tmp_path)] == [2, 10]
    expected = [(0, "error", "rank 10 failed"), (2, "ok", None), (10, "ok", None)]
    manifest, problem = load_manifest(tmp_path)
    assert problem is None and manifest is not None
    assert [(s.index, s.status, s.error) for s in manifest.samples] == expected
    assert manifest.completed == 2
    folder = RunFolder.open(tmp_path)
    consolidate(folder)
    saved = decode_manifest((tmp_path / "run.json").read_bytes())
    assert [(s.index, s.status, s.error) for s in saved.samples] == expected and saved.completed == 2
    assert part_paths(tmp_path) == []  # folded into run.json, then removed


# ----------------------------------------------------------------------------- real torchrun
@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`torchrun --standalone --nproc-per-node 2 -m capture --model tiny-llava --samples 4` (fewer tokens)."""
    out = tmp_path_factory.mktemp("torchrun")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "capture", "--model", "tiny-llava", "--samples", str(N), "--out", str(out),
        "--max-new-tokens", "3", "--min-new-tokens", "3", "--warmup", "0", "-q",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    assert f"run {run_dir.name}: {N} of {N} samples captured" in done.stdout
    assert done.stdout.count(f"run {run_dir.name}:") == 1  # rank 0 reports the run, once
    return run_dir


def test_torchrun_leaves_one_run_folder_with_a_merged_run_json(torchrun_run: Path) -> None:
    names = sorted(p.name for p in torchrun_run.iterdir())
    assert names == ["run.json", *[f"sample-{i:05d}.pt.trace.json.gz" for i in range(N)]]  # no parts left
    m = decode_manifest((torchrun_run / "run.json").read_bytes())
    assert (m.status, m.world_size, m.completed, m.rank) == ("complete", 2, N, None)
    assert [(s.index, s.rank, s.device, s.status) for s in m.samples] == [
        (i, i % 2, "cpu", "ok") for i in range(N)
    ]
    assert all(s.host == m.env.hostname for s in m.samples)
    assert [(r.rank, r.local_rank, r.samples) for r in m.ranks] == [(0, 0, 2), (1, 1, 2)]
    assert m.verification.identity is not None and m.verification.identity.checked == [
        0,
        1,
    ]  # each rank's first
    assert m.verification.accounting is not None and m.verification.accounting.checked == N
    # sample#i keeps the global index in every trace
    tables, warnings = analyze_paths([torchrun_run])
    assert warnings == [] and sorted(tables.samples["sample_index"]) == list(range(N))
    assert tables.runs["n_samples"].tolist() == [N]


def test_resume_with_another_world_size_folds_the_parts(torchrun_run: Path, tmp_path: Path) -> None:
    """A 2-rank run stopped early (rank 1's part never merged, sample 3 missing), resumed by 1 process."""
    from capture.runner import Capture

    run = tmp_path / torchrun_run.name
    shutil.copytree(torchrun_run, run)
    m = decode_manifest((run / "run.json").read_bytes())
    part = msgspec.structs.replace(m, rank=1, samples=[s for s in m.samples if s.index == 1], ranks=[])
    (run / part_file_name(1)).write_bytes(encode_manifest(part))
    m.samples = [s for s in m.samples if s.index in (0, 2)]
    m.status, m.ranks = "interrupted", []
    (run / "run.json").write_bytes(encode_manifest(m))
    (run / "sample-00003.pt.trace.json.gz").unlink()

    cap = Capture.prepare(Capture_config(run), resume=run)
    assert not (run / part_file_name(1)).exists()  # folded into run.json before capturing
    result = cap.run()
    assert result.skipped == [0, 1, 2] and result.failed == []
    m = decode_manifest((run / "run.json").read_bytes())
    assert m.status == "complete" and m.world_size == 1
    assert [(s.index, s.rank, s.status) for s in m.samples] == [
        (0, 0, "ok"),
        (1, 1, "ok"),
        (2, 0, "ok"),
        (3, 0, "ok"),
    ]
    assert (run / "sample-00003.pt.trace.json.gz").is_file()
    json.loads((run / "run.json").read_text())  # plain JSON for other tools


def Capture_config(run: Path) -> object:
    from capture.config import CaptureConfig

    return CaptureConfig.from_json(json.loads((run / "run.json").read_text())["config"])


def test_device_map_without_cuda_is_one_line(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from click.testing import CliRunner

    from capture.cli import main

    result = CliRunner().invoke(main, ["--model", "tiny-llava", "--samples", "1", "--device-map", "auto",
                                       "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        "Error: --device-map auto: needs CUDA GPUs and none is available here; "
        "leave --device-map out to run the model on one device"
    )
    assert list(tmp_path.iterdir()) == []
    bad = CliRunner().invoke(main, ["--device-map", "balanced"])
    assert bad.exit_code == 2 and "'balanced' is not 'auto'" in bad.stderr


@pytest.mark.gpu
def test_device_map_auto_labels_a_model_spread_over_the_gpus(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    from capture.config import CaptureConfig
    from capture.runner import Capture

    cfg = CaptureConfig(model="tiny-llava", samples=1, out=str(tmp_path), device_map="auto", max_new_tokens=3,
                        min_new_tokens=3, warmup=0)  # fmt: skip
    cap = Capture.prepare(cfg)
    cap.run()
    m = cap.folder.manifest
    assert m.status == "complete" and m.samples[0].accounting is not None and m.samples[0].accounting.ok
