"""The capture command, run in-process: help, happy path, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from capture.cli import main
from capture.data.synthetic import write_synthetic_folder


def _run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0]


def test_help_has_examples_and_lists_models() -> None:
    result = _run(["--help"])
    assert result.exit_code == 0
    assert "capture --model tiny-llava --samples 8" in result.output
    assert "tiny-eventgpt" in result.output and "--resume" in result.output


def test_capture_writes_traces_manifest_and_reports_checks(tmp_path: Path) -> None:
    result = _run(
        [
            "--model",
            "tiny-llava",
            "--samples",
            "2",
            "--max-new-tokens",
            "3",
            "--warmup",
            "0",
            "--out",
            str(tmp_path),
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "run.json",
        "sample-00000.pt.trace.json.gz",
        "sample-00001.pt.trace.json.gz",
    ]
    data = json.loads((run_dir / "run.json").read_text())
    assert data["config"]["max_new_tokens"] == 3 and data["env"]["device"] == "cpu"
    assert data["env"]["torch"] and data["env"]["transformers"] and data["model"]["parameters"] > 0
    assert "identity: tokens with labels+profiler vs without: identical" in result.output
    assert "accounting: stages add up to wall time: ok" in result.output
    assert f"analyze {run_dir} --html" in result.output


def test_unknown_model_lists_the_choices(tmp_path: Path) -> None:
    _one_line_error(_run(["--model", "gpt-9", "--out", str(tmp_path)]), "gpt-9", "tiny-llava", "eventgpt")
    assert not any(tmp_path.iterdir())


def test_missing_weights_say_where_they_looked(tmp_path: Path) -> None:
    where = tmp_path / "weights"
    where.mkdir()
    _one_line_error(
        _run(["--model", "llava-1.5", "--model-path", str(where), "--out", str(tmp_path / "t")]),
        str(where),
        "--model-path",
        "tiny-llava",
    )
    _one_line_error(
        _run(["--model", "video-llava", "--model-path", str(where), "--out", str(tmp_path / "t")]),
        "use tiny-video-llava for a demo",
    )


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_bad_dataset_folder(tmp_path: Path, make: str) -> None:
    folder = tmp_path / "data"
    if make == "empty":
        folder.mkdir()
    _one_line_error(
        _run(["--model", "tiny-llava", "--dataset", str(folder), "--out", str(tmp_path / "t")]), "data"
    )


def test_cuda_asked_for_where_there_is_none(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _one_line_error(_run(["--device", "cuda", "--out", str(tmp_path)]), "--device cuda", "--device cpu")


def test_a_corrupt_sample_is_recorded_and_the_run_exits_nonzero(tmp_path: Path) -> None:
    data_dir = write_synthetic_folder(tmp_path / "dsec", n_samples=2)
    victim = sorted((data_dir / "event_npy").rglob("*.npy"))[1]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    result = _run(
        [
            "--model",
            "tiny-eventgpt",
            "--dataset",
            str(data_dir),
            "--samples",
            "2",
            "--max-new-tokens",
            "2",
            "--warmup",
            "0",
            "--out",
            str(tmp_path / "t"),
            "-q",
        ]
    )
    assert result.exit_code == 1
    (run_dir,) = (tmp_path / "t").iterdir()
    samples = json.loads((run_dir / "run.json").read_text())["samples"]
    assert [s["status"] for s in samples] == ["ok", "error"]
    assert victim.name in samples[1]["error"]
    assert "sample 1" in result.output and "failed" in result.output


def test_version_comes_from_the_package_metadata() -> None:
    from importlib import metadata

    result = _run(["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"capture, version {metadata.version('stagetrace')}"


@pytest.mark.parametrize(
    ("run_json", "needle"),
    [
        ('{"schema": "stagetrace.run/1"}', "`run_id`"),
        ('{"schema": "stagetrace.run/2", "run_id": "r", "config": null}', "`config`"),
        ('{"schema": "stagetrace.run/2", "run_id": "r", "samples": "abc"}', "`samples`"),
        ('{"schema": "stagetrace.run/2", "run_id": "r", "samples": [{"sample_id": "x"}]}', "`samples[0]`"),
        ('{"schema": "stagetrace.run/2", "run_id": "r", "config": {"mode": "weird"}}', "`config.mode`"),
        ('{"schema": "stagetrace.run/2", "run_id": "r", "config": {"verify": "weird"}}', "`config.verify`"),
        ('{"schema": "stagetrace.run/2", "run_id": "r", "config": {"warmup": -3}}', "--warmup -3"),
        ("not json", "not valid JSON"),
    ],
)
def test_resume_validates_run_json_and_names_the_bad_field(
    tmp_path: Path, run_json: str, needle: str
) -> None:
    (tmp_path / "run.json").write_text(run_json)
    result = _run(["--resume", str(tmp_path), "-q"])
    _one_line_error(result, str(tmp_path / "run.json"), needle)
    assert (tmp_path / "run.json").read_text() == run_json  # nothing rewritten


def _small(tmp_path: Path, *extra: str) -> list[str]:
    return ["--samples", "2", "--max-new-tokens", "2", "--out", str(tmp_path / "t"), "-q", *extra]


def test_a_failing_sample_0_is_recorded_and_warm_up_uses_the_next(tmp_path: Path) -> None:
    """Issue 10.1: a bad first sample used to end the run in the (unguarded) warm-up."""
    data_dir = write_synthetic_folder(tmp_path / "dsec", n_samples=3)
    victim = sorted((data_dir / "event_npy").rglob("*.npy"))[0]
    victim.write_bytes(b"\x93NUMPY garbage")
    result = _run(
        ["--model", "tiny-eventgpt", "--dataset", str(data_dir), *_small(tmp_path), "--samples", "3"]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (run_dir,) = (tmp_path / "t").iterdir()
    data = json.loads((run_dir / "run.json").read_text())
    assert [s["status"] for s in data["samples"]] == ["error", "ok", "ok"]
    assert data["status"] == "failed" and data["completed"] == 2
    assert victim.name in data["samples"][0]["error"]


def test_no_sample_that_loads_is_one_line_and_run_json_says_why(tmp_path: Path) -> None:
    """Issue 10.1: an image model on an events-only folder: nothing can run at all."""
    data_dir = write_synthetic_folder(tmp_path / "dsec", n_samples=2)
    shutil.rmtree(data_dir / "video")
    result = _run(["--model", "tiny-llava", "--dataset", str(data_dir), *_small(tmp_path)])
    _one_line_error(result, "none of the 2 samples could be run", "sample 0")
    (run_dir,) = (tmp_path / "t").iterdir()
    data = json.loads((run_dir / "run.json").read_text())
    assert data["status"] == "failed" and [s["status"] for s in data["samples"]] == ["error", "error"]
    assert not list(run_dir.glob("*.json.gz"))


def test_a_run_json_that_cannot_be_written_is_one_line_and_keeps_the_last_good_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10.2: disk full (or a read-only folder) while rewriting run.json mid-run."""
    import capture.manifest as manifest_module

    real = manifest_module.write_bytes_atomic
    calls = []

    def fail_on_third(path: Path, data: bytes) -> Path:
        calls.append(path)
        if len(calls) == 3:  # 1: run created, 2: sample 0 done, 3: sample 1 done
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(manifest_module, "write_bytes_atomic", fail_on_third)
    result = _run(["--model", "tiny-llava", *_small(tmp_path, "--warmup", "0")])
    _one_line_error(result, "cannot write run.json", "No space left on device", "--resume")
    (run_dir,) = (tmp_path / "t").iterdir()
    data = json.loads((run_dir / "run.json").read_text())  # the previous one, whole
    assert data["completed"] == 1 and data["status"] == "running"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "run.json",
        "sample-00000.pt.trace.json.gz",
        "sample-00001.pt.trace.json.gz",
    ]


def test_ctrl_c_while_torch_is_imported_is_exit_130_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10.10: Ctrl-C during the (slow) torch import."""

    class Interrupt:
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "capture.runner":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "capture.runner")
    monkeypatch.setattr(sys, "meta_path", [Interrupt(), *sys.meta_path])
    result = CliRunner().invoke(main, ["-q"])
    assert result.exit_code == 130
    assert result.output.strip() == "interrupted before the first sample; nothing was captured"


def test_ctrl_c_right_after_run_json_is_created_leaves_a_resumable_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10.10: `Aborted!`, exit 1 and a run.json stuck at "running" before."""
    from capture.runner import Capture

    def interrupt(self: Capture, progress: object = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Capture, "run", interrupt)
    result = CliRunner().invoke(main, ["--model", "tiny-llava", *_small(tmp_path)])
    assert result.exit_code == 130
    assert "Aborted" not in result.output and "Traceback" not in result.output
    (run_dir,) = (tmp_path / "t").iterdir()
    assert result.output.strip() == (
        f"interrupted after 0 of 2 samples; continue with: capture --resume {run_dir}"
    )
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--seed", str(2**70), "--seed"),
        ("--warmup", "-3", "--warmup -3"),
        ("--min-new-tokens", "-5", "--min-new-tokens -5"),
        ("--threads", "0", "--threads 0"),
        ("--samples", "0", "--samples 0"),
    ],
)
def test_out_of_range_numbers_are_one_line_errors(tmp_path: Path, flag: str, value: str, needle: str) -> None:
    """Issue 10.15."""
    _one_line_error(_run(["--model", "tiny-llava", flag, value, "--out", str(tmp_path)]), needle)
    assert not any(tmp_path.iterdir())


def test_threads_and_the_machine_s_load_are_recorded(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        result = _run(["--model", "tiny-llava", *_small(tmp_path, "--threads", "1", "--samples", "1")])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "t").iterdir()
    env = json.loads((run_dir / "run.json").read_text())["env"]
    assert env["cpu_threads"] == 1 and env["interop_threads"] >= 1 and env["cpu_count"] >= 1
    assert len(env["load_avg"]) == 3 and all(x >= 0 for x in env["load_avg"])
    assert json.loads((run_dir / "run.json").read_text())["config"]["threads"] == 1


def test_spread_out_generate_times_are_a_warning_in_run_json_and_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyze.contract import TimingCheck
    from capture import verify

    monkeypatch.setattr(
        verify, "timing", lambda ms: TimingCheck(ok=False, max_over_median=12.5, samples=len(ms))
    )
    result = _run(["--model", "tiny-llava", *_small(tmp_path)])
    assert result.exit_code == 0, result.output  # a warning, not a failed run
    (run_dir,) = (tmp_path / "t").iterdir()
    warnings = json.loads((run_dir / "run.json").read_text())["warnings"]
    assert len(warnings) == 1 and "vary 12.5x (max/median over 2 samples)" in warnings[0]
    assert "--threads 1" in warnings[0] and "warning: per-sample generate() times vary" in result.output
