"""The settings users compare: one-line refusals at start, run.json's config keys, the attention
kernel actually used, and --cache static --compile on the CPU with every label and identical tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from capture import settings
from capture.cli import main
from capture.config import CaptureConfig
from capture.errors import CaptureError
from capture.runner import Capture
from tests.trace_checks import load_trace

SETTING_KEYS = ("weights", "attn_implementation", "cache", "compile", "load_in", "dtype")


def _run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--model", "tiny-llava", "--weights", "random"], ["--weights random", "llava-1.5"]),
        (["--model", "llava-1.5", "--weights", "random", "--model-path", "x"], ["drop --model-path"]),
        (["--compile"], ["--compile needs --cache static"]),
        (["--cache", "static", "--compile", "--device", "cpu", "--load-in", "4bit"], ["CUDA only", "policy"]),
        (["--load-in", "8bit", "--device", "cpu"], ["--load-in 8bit", "CUDA only"]),
        (["--attn-implementation", "flash_attention_2", "--device", "cpu"], ["flash_attention_2", "CUDA"]),
    ],
)
def test_impossible_settings_are_one_line_with_exit_2(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    _one_line_error(_run([*args, "--out", str(tmp_path)]), *needles)
    assert not any(tmp_path.iterdir())  # refused before a run folder exists


def test_compile_without_a_cxx_compiler_is_refused_on_cpu(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(settings, "cxx_compiler", lambda: None)
    _one_line_error(
        _run(["--cache", "static", "--compile", "--device", "cpu", "--out", str(tmp_path)]),
        "--compile", "C++ compiler", "g++",
    )  # fmt: skip


def test_cuda_only_settings_on_a_cuda_device(monkeypatch) -> None:
    """The checks that need CUDA, with a CUDA device named (nothing runs on it)."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(settings, "_installed", lambda module: False)
    for kw, needle in [
        ({"load_in": "4bit"}, "pip install 'stagetrace[gpu]'"),
        ({"attn_implementation": "flash_attention_2"}, "flash-attn package"),
    ]:
        with pytest.raises(CaptureError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            settings.check(CaptureConfig(model="llava-1.5", **kw), cuda, torch.bfloat16)
    monkeypatch.setattr(settings, "_installed", lambda module: True)
    with pytest.raises(CaptureError, match="eventgpt is not one"):
        settings.check(CaptureConfig(model="eventgpt", load_in="8bit"), cuda, torch.bfloat16)
    with pytest.raises(CaptureError, match="--weights random loads none"):
        settings.check(
            CaptureConfig(model="llava-1.5", weights="random", load_in="4bit"), cuda, torch.bfloat16
        )
    with pytest.raises(CaptureError, match="needs --dtype float16 or bfloat16, not float32"):
        settings.check(CaptureConfig(attn_implementation="flash_attention_2"), cuda, torch.float32)
    settings.check(CaptureConfig(model="llava-1.5", load_in="4bit"), cuda, torch.bfloat16)  # fine


def test_generate_never_lets_transformers_compile_on_its_own_and_takes_the_cache() -> None:
    dynamic = CaptureConfig().generation().generate_kwargs()
    assert dynamic["disable_compile"] is True and "cache_implementation" not in dynamic
    static = CaptureConfig(cache="static").generation().generate_kwargs()
    assert static["disable_compile"] is True and static["cache_implementation"] == "static"


def test_random_weights_without_min_new_tokens_warns() -> None:
    assert settings.run_warnings(CaptureConfig(model="llava-1.5", weights="random"))
    assert not settings.run_warnings(CaptureConfig(model="llava-1.5", weights="random", min_new_tokens=5))
    assert not settings.run_warnings(CaptureConfig())
    (compile_first,) = settings.run_warnings(CaptureConfig(cache="static", compile=True, warmup=0))
    assert "--warmup 0" in compile_first
    assert not settings.run_warnings(CaptureConfig(cache="static", compile=True))


def test_settings_reach_run_json_and_the_model(tmp_path: Path) -> None:
    result = _run([
        "--model", "tiny-llava", "--samples", "1", "--max-new-tokens", "2", "--warmup", "0",
        "--attn-implementation", "eager", "--cache", "static", "--out", str(tmp_path), "-q",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    data = json.loads((run_dir / "run.json").read_text())
    config = data["config"]
    assert {k: config[k] for k in SETTING_KEYS} == {
        "weights": "pretrained", "attn_implementation": "eager", "cache": "static", "compile": False,
        "load_in": None, "dtype": "auto",
    }  # fmt: skip
    assert data["model"]["attn_implementation"] == "eager"
    ops = {
        e["name"]
        for e in load_trace(run_dir / "sample-00000.pt.trace.json.gz")["traceEvents"]
        if e.get("cat") == "cpu_op"
    }
    assert "aten::softmax" in ops and "aten::scaled_dot_product_attention" not in ops  # eager attention
    assert "identical" in result.output


def test_old_run_json_without_the_settings_resumes_with_defaults() -> None:
    old = {"model": "tiny-llava", "samples": 2}
    cfg = CaptureConfig.from_json(old)
    assert (cfg.weights, cfg.attn_implementation, cfg.cache, cfg.compile, cfg.load_in) == (
        "pretrained", None, "dynamic", False, None,
    )  # fmt: skip
    with pytest.raises(CaptureError, match=r"config\.cache"):
        CaptureConfig.from_json({**old, "cache": "paged"})


@pytest.mark.slow
def test_compile_and_static_cache_on_cpu_keep_every_label_and_the_tokens(tmp_path: Path) -> None:
    """--cache static --compile on a tiny model: one compiled decoding graph, every stage label in
    every trace, greedy tokens identical with labels and profiler on and off, and equal to eager's."""
    from torch._dynamo.utils import counters

    def capture(out: Path, **kw) -> dict:
        cfg = CaptureConfig(
            model="tiny-llava", samples=2, out=str(out), max_new_tokens=5, min_new_tokens=5, warmup=1, **kw
        )
        cap = Capture.prepare(cfg)
        cap.run()
        return json.loads((cap.folder.run_dir / "run.json").read_text()) | {"dir": cap.folder.run_dir}

    counters.clear()
    compiled = capture(tmp_path / "compiled", cache="static", compile=True)
    assert counters["stats"]["unique_graphs"] == 1  # compiled once, in the warm-up: no recompiles
    eager = capture(tmp_path / "eager")
    assert compiled["status"] == "complete" and compiled["verification"]["identity"]["ok"] is True
    assert compiled["verification"]["accounting"]["ok"] is True
    assert [s["token_ids"] for s in compiled["samples"]] == [s["token_ids"] for s in eager["samples"]]
    for i in range(2):
        events = load_trace(compiled["dir"] / f"sample-0000{i}.pt.trace.json.gz")["traceEvents"]
        labels = {e["name"] for e in events if e.get("cat") == "user_annotation"}
        expected = {f"sample#{i}", "stage1:load", "stage2:preprocess", "stage4:generate", "stage3:vision",
                    "stage3:vision/tower", "stage3:vision/projector", "stage4:prefill",
                    *(f"stage4:decode#{k}" for k in range(1, 5))}  # fmt: skip
        assert expected <= labels
        assert any(e["name"].startswith("Torch-Compiled Region") for e in events)  # decode ran compiled
