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
    # one line of error; warnings (e.g. a dataset's skipped JSON files) may come before it
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.startswith("warning: ")]
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
            "--event-input",
            "npy",
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
    args = ["--model", "tiny-eventgpt", "--dataset", str(data_dir), "--event-input", "npy"]
    result = _run([*args, *_small(tmp_path), "--samples", "3"])
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
    shutil.rmtree(data_dir / "mp4")  # camera frames are read from either
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


# --- the EventGPT benchmarks' datasets, inputs, prompts and decoding (issue 11) ----------------

QUESTION = "What are the key elements in this scene?"


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_folder(tmp_path_factory.mktemp("data") / "my_egpt_dsec_seq_1s", n_samples=2)


def _capture(tmp_path: Path, *args: str):
    out = tmp_path / "t"
    result = CliRunner().invoke(
        main, [*args, "--samples", "2", "--warmup", "0", "--out", str(out), "-q"], catch_exceptions=False
    )
    runs = sorted(out.iterdir()) if out.is_dir() else []
    data = json.loads((runs[-1] / "run.json").read_text()) if runs else None
    return result, data


@pytest.mark.parametrize(
    ("args", "frames", "files", "prompt_start"),
    [
        (  # the EventGPT command (tiny model), 1 pre-rendered event image, sampled
            ["--model", "tiny-eventgpt", "--event-input", "image", "--frames", "1", "--prompt", QUESTION,
             "--do-sample", "--temperature", "0.6", "--top-p", "1", "--max-new-tokens", "4"],
            1, ["event_image_1f/synthetic/00000_0.png"], "A chat between a curious human",
        ),
        (
            ["--model", "tiny-eventgpt", "--max-new-tokens", "3"],
            5, [f"event_image/synthetic/00000_{k}.png" for k in range(5)], "A chat between",
        ),
        (
            ["--model", "tiny-eventgpt", "--event-input", "npy", "--max-new-tokens", "3"],
            5, ["event_npy/synthetic/00000.npy"], "A chat between",
        ),
        (
            ["--model", "tiny-llava", "--image-source", "event", "--max-new-tokens", "3"],
            1, ["event_image_1f/synthetic/00000_0.png"], "USER: <image>\n" + QUESTION,
        ),
        (
            ["--model", "tiny-llava", "--frames", "8", "--max-new-tokens", "3"],
            8, [f"video/synthetic/00000/{k:06d}.png" for k in range(8)], "USER: " + "<image>\n" * 8,
        ),
        (
            ["--model", "tiny-video-llava", "--max-new-tokens", "3"],
            8, [f"video/synthetic/00000/{k:06d}.png" for k in range(8)], "USER: <video>\n" + QUESTION,
        ),
    ],
)  # fmt: skip
def test_the_benchmark_rows_read_exactly_the_files_their_options_name(
    benchmark_dir: Path, tmp_path: Path, args: list[str], frames: int, files: list[str], prompt_start: str
) -> None:
    result, data = _capture(tmp_path, "--dataset", str(benchmark_dir), *args)
    assert result.exit_code == 0, result.output
    # the results JSON the benchmark scripts leave in the folder: one warning, on stderr
    assert result.stderr.count("warning:") == 1 and "EventGPT_Instruction_Subset_results_n2" in result.stderr
    assert data["dataset"]["warnings"] and data["config"]["frames"] == frames
    sample = data["samples"][0]
    assert sample["input_files"] == files
    assert sample["prompt"].startswith(prompt_start) and sample["prompt"].endswith(" ASSISTANT:")
    assert sample["new_tokens"] == len(sample["token_ids"]) and sample["prefill_tokens"] > 0
    assert sample["kv_cache_mb"] > 0
    assert data["verification"]["identity"]["ok"] is True  # sampled runs too: seeded per sample
    generation = data["generation"]
    if "--do-sample" in args:
        assert generation["do_sample"] is True and generation["temperature"] == 0.6
        assert (generation["top_p"], generation["top_k"]) == (1.0, 50) and sample["seed"] == 0
        assert data["samples"][1]["seed"] == 1
    else:
        assert generation["do_sample"] is False and generation["temperature"] is None
        assert sample["seed"] is None


def test_eventgpt_prefill_with_5_frames_is_4_more_than_with_1(benchmark_dir: Path, tmp_path: Path) -> None:
    prefill = {}
    for n in ("5", "1"):
        result, data = _capture(
            tmp_path / n, "--model", "tiny-eventgpt", "--dataset", str(benchmark_dir), "--frames", n,
            "--max-new-tokens", "2",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        prefill[n] = {s["prefill_tokens"] for s in data["samples"]}
    (five,), (one,) = prefill["5"], prefill["1"]
    assert five - one == 4


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--model", "tiny-llava", "--temperature", "0.6"], ["--temperature 0.6 needs --do-sample"]),
        (["--model", "tiny-llava", "--top-p", "0.9"], ["--top-p 0.9 needs --do-sample"]),
        (["--model", "tiny-llava", "--do-sample", "--top-p", "1.5"], ["--top-p 1.5", "at most 1"]),
        (["--model", "tiny-llava", "--do-sample", "--temperature", "0"], ["--temperature 0.0", "above 0"]),
        (["--model", "tiny-llava", "--repetition-penalty", "-1"], ["--repetition-penalty -1.0"]),
        (["--model", "tiny-eventgpt", "--image-source", "video"], ["--image-source video", "tiny-eventgpt"]),
        (
            ["--model", "tiny-llava", "--event-input", "image"],
            ["--event-input image", "--image-source event"],
        ),
        (["--model", "tiny-video-llava", "--sensor-size", "640x480"], ["--sensor-size applies"]),
        (["--model", "tiny-eventgpt", "--sensor-size", "640"], ["--sensor-size 640", "WIDTHxHEIGHT"]),
        (["--model", "tiny-eventgpt", "--frames", "0"], ["--frames 0"]),
        (["--model", "tiny-eventgpt", "--prompt", "  "], ["--prompt is empty"]),
        (
            ["--model", "tiny-eventgpt", "--event-input", "image", "--sensor-size", "640x480"],
            ["--sensor-size applies to events drawn from event_npy/"],
        ),
    ],
)
def test_impossible_options_are_one_line(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    _one_line_error(_run([*args, "--out", str(tmp_path)]), *needles)
    assert not any(tmp_path.iterdir())


def test_bad_input_in_the_layout_is_per_sample_and_the_run_goes_on(
    benchmark_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(benchmark_dir, data_dir)
    (data_dir / "event_image_1f/synthetic/00001_0.png").unlink()  # a missing PNG
    entries = json.loads((data_dir / "EventGPT_Instruction_Subset.json").read_text())
    conversations = entries[0]["conversations"]
    entries.append({"id": "escape", "event_data": "../../outside.npy", "conversations": conversations})
    entries.append({"id": "dot", "event_data": ".", "conversations": conversations})  # crashed start-up
    (data_dir / "EventGPT_Instruction_Subset.json").write_text(json.dumps(entries))
    out = tmp_path / "t"
    result = _run(
        ["--model", "tiny-eventgpt", "--dataset", str(data_dir), "--event-input", "image", "--frames", "1",
         "--samples", "4", "--max-new-tokens", "2", "--warmup", "0", "--out", str(out), "-q"]
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    (run_dir,) = out.iterdir()
    samples = json.loads((run_dir / "run.json").read_text())["samples"]
    assert [s["status"] for s in samples] == ["ok", "error", "error", "error"]
    needles = [
        "event_image_1f/synthetic/00001_0.png: image not found",
        "event_data '../../outside.npy' must be a path inside the dataset folder",
        "event_data '.' names a folder, not a clip's file",
    ]
    for sample, needle in zip(samples[1:], needles, strict=True):
        assert needle in sample["error"] and "\n" not in sample["error"]
    # with the events drawn instead, the escaping and the "." entries are refused as such
    result = _run(
        ["--model", "tiny-eventgpt", "--dataset", str(data_dir), "--event-input", "npy",
         "--samples", "4", "--max-new-tokens", "2", "--warmup", "0", "--out", str(out / "npy"), "-q"]
    )  # fmt: skip
    (run_dir,) = (out / "npy").iterdir()
    samples = json.loads((run_dir / "run.json").read_text())["samples"]
    assert [s["status"] for s in samples] == ["ok", "ok", "error", "error"]
    assert "must be a path inside the dataset folder" in samples[2]["error"]
    assert "names a folder, not a clip's file" in samples[3]["error"]


def test_an_empty_instruction_list_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data/event_npy").mkdir(parents=True)
    (tmp_path / "data/EventGPT_Instruction_Subset.json").write_text("[]")
    data_dir, out = tmp_path / "data", tmp_path / "t"
    result = _run(["--model", "tiny-eventgpt", "--dataset", str(data_dir), "--out", str(out)])
    _one_line_error(result, "EventGPT_Instruction_Subset.json hold no entries")
