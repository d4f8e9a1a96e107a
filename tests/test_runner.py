"""The capture loop: labelled traces for every tiny model, checks, failures, Ctrl-C and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from analyze import vocabulary as vocab
from capture.config import CaptureConfig
from capture.labels import StageLabeler
from capture.runner import Capture
from tests.conftest import TINY_MODELS
from tests.trace_checks import labels_in_order, load_trace, partial_overlaps


def _cfg(tmp_path: Path, **kw) -> CaptureConfig:
    base = dict(
        model="tiny-llava", samples=3, out=str(tmp_path), max_new_tokens=4, min_new_tokens=4, warmup=0
    )
    return CaptureConfig(**{**base, **kw})


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.parametrize("model", TINY_MODELS)
def test_every_label_in_every_trace_and_checks_pass(model: str, tiny_run) -> None:
    run_dir = tiny_run(model)
    data = _manifest(run_dir)
    assert data["status"] == "complete"
    assert data["verification"]["identity"]["ok"] is True
    assert data["verification"]["accounting"]["ok"] is True
    assert data["verification"]["overhead"]["ratio"] > 0
    for s in data["samples"]:
        events = load_trace(run_dir / s["trace"])["traceEvents"]
        names = labels_in_order(events)
        i = s["index"]
        assert names[:3] == [f"sample#{i}", vocab.LOAD, vocab.PREPROCESS]
        assert names[3] == vocab.GENERATE
        assert vocab.VISION in names and vocab.VISION_TOWER in names and vocab.VISION_PROJECTOR in names
        steps = [n for n in names if vocab.decode_step(n) is not None]
        assert len(steps) == len(s["token_ids"]) == 6
        if model == "tiny-eventgpt":
            assert vocab.VISION_AGGREGATE in names
        assert partial_overlaps(events) == [], "Perfetto drops partially overlapping slices"
        assert s["accounting"]["ok"] and s["ttft_ms"] > 0 and s["tpot_ms"] > 0


@pytest.mark.parametrize("model", TINY_MODELS)
def test_decoupled_gives_fused_tokens_and_vision_outside_generate(model: str, tiny_run) -> None:
    fused, decoupled = _manifest(tiny_run(model)), _manifest(tiny_run(model, "decoupled"))
    assert decoupled["config"]["mode"] == "decoupled"
    assert [s["token_ids"] for s in decoupled["samples"]] == [s["token_ids"] for s in fused["samples"]]
    events = load_trace(tiny_run(model, "decoupled") / "sample-00000.pt.trace.json.gz")["traceEvents"]
    span = {e["name"]: (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "user_annotation"}
    assert span[vocab.VISION][1] <= span[vocab.GENERATE][0]


def test_identity_check_fails_when_a_hook_changes_the_output(tmp_path: Path, monkeypatch) -> None:
    original = StageLabeler.attach

    def attach_and_tamper(self: StageLabeler) -> None:
        original(self)
        bump = lambda m, a, out: out.logits.__setitem__((..., 7), out.logits[..., 7] + 1e4)  # noqa: E731
        self._handles.append(self._adapter.step_module().register_forward_hook(bump))

    monkeypatch.setattr(StageLabeler, "attach", attach_and_tamper)
    cap = Capture.prepare(_cfg(tmp_path, samples=1))
    cap.run()
    ident = cap.folder.manifest.verification.identity
    assert ident.ok is False and ident.mismatches[0].index == 0
    assert cap.folder.manifest.status == "failed"
    assert _manifest(cap.folder.run_dir)["verification"]["identity"]["ok"] is False


def test_an_exception_in_one_sample_is_recorded_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    cap = Capture.prepare(_cfg(tmp_path))
    real = cap.adapter.prepare

    def flaky(raw):
        if raw.sample_id.endswith("1"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(raw)

    monkeypatch.setattr(cap.adapter, "prepare", flaky)
    result = cap.run()
    data = _manifest(cap.folder.run_dir)
    assert result.failed == [1]
    assert [s["status"] for s in data["samples"]] == ["ok", "error", "ok"]
    assert data["samples"][1]["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert data["status"] == "failed"
    assert not (cap.folder.run_dir / "sample-00001.pt.trace.json.gz").exists()


def test_ctrl_c_keeps_whole_files_and_resume_finishes_without_redoing(tmp_path: Path, monkeypatch) -> None:
    cap = Capture.prepare(_cfg(tmp_path, samples=4))
    real_load = cap.dataset.load

    def interrupt_at_two(index, modality):
        if index == 2:
            raise KeyboardInterrupt
        return real_load(index, modality)

    monkeypatch.setattr(cap.dataset, "load", interrupt_at_two)
    with pytest.raises(KeyboardInterrupt):
        cap.run()
    run_dir = cap.folder.run_dir
    data = _manifest(run_dir)
    assert data["status"] == "interrupted" and data["completed"] == 2
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "run.json",
        "sample-00000.pt.trace.json.gz",
        "sample-00001.pt.trace.json.gz",
    ]
    mtimes = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.gz")}
    monkeypatch.undo()

    resumed = Capture.prepare(CaptureConfig(model="ignored-on-resume"), resume=run_dir)
    result = resumed.run()
    assert result.skipped == [0, 1]
    data = _manifest(run_dir)
    assert data["status"] == "complete" and [s["index"] for s in data["samples"]] == [0, 1, 2, 3]
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.glob("sample-0000[01]*")} == mtimes


def test_resume_after_the_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL mid-run (no cleanup at all) leaves a valid run.json and whole traces only."""
    cmd = [
        sys.executable,
        "-m",
        "capture",
        "--model",
        "tiny-llava",
        "--samples",
        "10",
        "--max-new-tokens",
        "4",
        "--warmup",
        "0",
        "--out",
        str(tmp_path),
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not list(tmp_path.glob("*/sample-00002.pt.trace.json.gz")):
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (run_dir,) = tmp_path.iterdir()
    data = _manifest(run_dir)  # never half-written
    done = {s["index"] for s in data["samples"] if s["status"] == "ok"}
    assert done and done < set(range(10))
    for name in (p.name for p in run_dir.iterdir() if p.name.endswith(".json.gz")):
        load_trace(run_dir / name)  # every trace that exists is whole
    resumed = Capture.prepare(CaptureConfig(), resume=run_dir)
    result = resumed.run()
    assert set(result.skipped) == done
    assert resumed.folder.manifest.status == "complete"
    assert len(list(run_dir.glob("sample-*.pt.trace.json.gz"))) == 10


@pytest.mark.parametrize(("warmup", "sessions"), [(0, 2), (2, 3)])
def test_warm_up_also_runs_one_discarded_profiled_generate(
    tmp_path: Path, monkeypatch, warmup: int, sessions: int
) -> None:
    """The profiler's own first sessions (CUPTI on a GPU) must not land in sample 0's timings."""
    import capture.runner as runner_module

    real, opened = runner_module.profiled, []

    def counting(cfg, device):
        opened.append(1)
        return real(cfg, device)

    monkeypatch.setattr(runner_module, "profiled", counting)
    cap = Capture.prepare(_cfg(tmp_path, samples=2, warmup=warmup, verify="none"))
    cap.run()
    assert len(opened) == sessions  # 2 samples, plus 1 discarded session when warming up
    assert sorted(p.name for p in cap.folder.run_dir.glob("*.gz")) == [
        "sample-00000.pt.trace.json.gz",
        "sample-00001.pt.trace.json.gz",
    ]


def test_processes_started_together_never_share_a_run_folder(tmp_path: Path, monkeypatch) -> None:
    """Issue 10.11: check-then-create raced; mkdir decides, the loser takes the next suffix."""
    import datetime as dt
    import threading

    import capture.runner as runner_module

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=tz)

    monkeypatch.setattr(runner_module.dt, "datetime", Frozen)
    cfg = _cfg(tmp_path)
    barrier, made = threading.Barrier(8), []

    def make() -> None:
        barrier.wait()
        made.append(runner_module.new_run_dir(cfg)[1])

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    base = "tiny-llava-20261123-120000"
    assert sorted(made) == sorted([base, *(f"{base}-{k}" for k in range(2, 9))])
    assert len({p.name for p in tmp_path.iterdir()}) == 8


def test_a_sampled_run_passes_the_identity_check_on_every_sample(tmp_path: Path) -> None:
    """--do-sample: each sample's generate() is seeded with seed + index, profiled and not."""
    kw = dict(samples=2, max_new_tokens=8, min_new_tokens=8, do_sample=True, temperature=2.0, verify="all")
    cap = Capture.prepare(_cfg(tmp_path / "a", **kw))
    cap.run()
    data = _manifest(cap.folder.run_dir)
    assert data["verification"]["identity"] == {"ok": True, "checked": [0, 1], "mismatches": []}
    assert [s["seed"] for s in data["samples"]] == [0, 1]
    assert data["generation"]["do_sample"] is True and data["generation"]["temperature"] == 2.0
    # The draw is real: another --seed draws other tokens (so the check above is not vacuous).
    other = Capture.prepare(_cfg(tmp_path / "b", **kw, seed=7))
    other.run()
    tokens = [s["token_ids"] for s in data["samples"]]
    assert [s["token_ids"] for s in _manifest(other.folder.run_dir)["samples"]] != tokens


def test_outcomes_record_prompt_prefill_tokens_kv_cache_and_memory(tiny_run) -> None:
    data = _manifest(tiny_run("tiny-llava"))
    for s in data["samples"]:
        assert s["prompt"] == "USER: <image>\nWhat are the key elements in this scene? ASSISTANT:"
        assert s["new_tokens"] == len(s["token_ids"]) == 6
        # tiny LLaMA: 2 layers x (K, V) x 64 floats x 4 bytes per cached position
        positions = s["prefill_tokens"] + s["new_tokens"] - 1
        assert s["kv_cache_mb"] == round(positions * 1024 / 2**20, 3)
        assert s["peak_mem_mb"] is None or s["peak_mem_mb"] >= 0
    assert data["config"]["frames"] == 1 and data["config"]["image_source"] == "video"
    assert data["generation"]["do_sample"] is False and data["generation"]["max_new_tokens"] == 6
    eventgpt = _manifest(tiny_run("tiny-eventgpt"))
    assert eventgpt["config"]["frames"] == 5 and eventgpt["samples"][0]["prompt"].endswith(
        "USER: <ev_start><event><ev_end>\nWhat are the key elements in this scene? ASSISTANT:"
    )


def test_run_json_never_claims_a_trace_that_is_not_whole_on_disk(tmp_path: Path, monkeypatch) -> None:
    """Traces are written in the background (issue 14): a sample is recorded only once its trace
    is on disk, and each records how long its export and check took off the critical path."""
    from capture.manifest import RunFolder

    real_save, checked = RunFolder.save, []

    def save_checking(self: RunFolder) -> None:
        for s in self.manifest.samples:
            if s.status == "ok":
                load_trace(self.run_dir / s.trace)  # exists, and whole
                checked.append(s.index)
        real_save(self)

    monkeypatch.setattr(RunFolder, "save", save_checking)
    cap = Capture.prepare(_cfg(tmp_path, samples=4))
    cap.run()
    data = _manifest(cap.folder.run_dir)
    assert data["status"] == "complete" and set(checked) == {0, 1, 2, 3}
    for s in data["samples"]:
        assert s["export_ms"] > 0 and s["check_ms"] > 0 and s["accounting"]["ok"]


def test_kill_during_export_leaves_its_temporary_file_in_the_run_folder_for_resume(tmp_path: Path) -> None:
    """Issue 10.12: torch's .gz export went through the system temp folder, where a kill -9 left
    the uncompressed trace and --resume never looked. Now both temporaries sit in the run folder."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    out = tmp_path / "out"
    code = (
        "import time, capture.runner as r\n"
        "real = r.save_json\n"
        "def slow(prof, path):\n    real(prof, path)\n    time.sleep(120)\n"
        "r.save_json = slow\n"
        "from capture.cli import main\nmain()\n"
    )
    args = ["--model", "tiny-llava", "--samples", "3", "--max-new-tokens", "2", "--warmup", "0"]
    args += ["--out", str(out), "-q"]
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        pattern = "*/.sample-00000.pt.trace.json.gz.tmp-*.json"
        while time.monotonic() < deadline and not list(out.glob(pattern)):
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (run_dir,) = out.iterdir()
    from analyze.files import tmp_files

    left = tmp_files(run_dir)
    assert [p.name.split(".tmp-")[0] for p in left] == [".sample-00000.pt.trace.json.gz"]
    assert left[0].stat().st_size > 0  # Kineto's uncompressed JSON
    assert list(system_tmp.iterdir()) == []
    assert _manifest(run_dir)["completed"] == 0  # run.json claims no sample whose trace is not whole
    resumed = Capture.prepare(CaptureConfig(), resume=run_dir)
    assert tmp_files(run_dir) == []
    resumed.run()
    assert resumed.folder.manifest.status == "complete"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "run.json", *(f"sample-{i:05d}.pt.trace.json.gz" for i in range(3))
    ]
