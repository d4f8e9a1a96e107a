"""The capture command, run in-process: help, happy path, and one-line errors with exit status 2."""

from __future__ import annotations

import json
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
