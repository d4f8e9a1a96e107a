"""The shipped real-size configs: parameter counts on the meta device, and the --weights random
adapters built on it (no memory), with realistic prompt lengths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from capture.config import CaptureConfig
from capture.data.registry import open_dataset
from capture.models.base import ModelSpec
from capture.models.published import published_config, random_weights_label
from capture.models.registry import adapter_class

META = torch.device("meta")

# Published totals: llava-hf/llava-1.5-7b-hf; Video-LLaVA-7B-hf (two CLIP-L/14-224 towers);
# EventGPT-7B with its checkpoint's 32000-token vocabulary.
PARAMETERS = {"llava-1.5": 7_063_427_072, "video-llava": 7_366_279_168, "eventgpt": 7_079_684_096}
# Prompt lengths: vision placeholders + the prompt's words (LLaVA: 576 image tokens; Video-LLaVA:
# 8 frames x 257; EventGPT: one placeholder id that its generate() replaces by 5 + 577 features).
VISION_TOKENS = {"llava-1.5": 576, "video-llava": 8 * 257, "eventgpt": 1}


_BUILT: dict[str, object] = {}


def _random_adapter(name: str):
    """The --weights random adapter of ``name`` built on the meta device (once per session)."""
    if name not in _BUILT:
        spec = ModelSpec(name, None, META, torch.bfloat16, 0, weights="random")
        _BUILT[name] = adapter_class(name).build(spec)
    return _BUILT[name]


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_random_build_has_the_published_parameter_count(name: str) -> None:
    adapter = _random_adapter(name)
    info = adapter.describe()
    assert info.parameters == PARAMETERS[name]
    assert info.weights == random_weights_label(0) == "random (published config, seed 0)"
    assert {p.dtype for p in adapter.model.parameters()} == {torch.bfloat16}
    assert info.attn_implementation == "sdpa"  # transformers' default where SDPA is available


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_random_adapter_prepares_realistic_prompts(name: str) -> None:
    adapter = _random_adapter(name)
    cfg = CaptureConfig(model=name, weights="random").for_model(adapter.modality, adapter.default_frames)
    request = cfg.input_request(adapter.modality, adapter.frame_pick)
    raw = open_dataset(None, seed=0, n_samples=1).load(0, request)
    inputs = adapter.prepare(raw)
    ids = inputs["input_ids"]
    assert ids.device.type == "meta" or ids.shape[0] == 1
    n = ids.shape[1]
    assert VISION_TOKENS[name] + 8 <= n <= VISION_TOKENS[name] + 60, n
    pixels = next(v for k, v in inputs.items() if "pixel" in k)
    size = published_config(name)["vision_config"]["image_size"]
    assert pixels.shape[-2:] == (size, size) and size == (224 if name == "video-llava" else 336)


def test_configs_ship_with_the_package() -> None:
    import capture.models

    folder = Path(capture.models.__file__).parent / "configs"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(PARAMETERS)
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"models/configs/*.json"' in pyproject
    with pytest.raises(KeyError, match=r"llava-1\.5"):
        published_config("tiny-llava")


@pytest.mark.skipif(
    os.environ.get("STAGETRACE_BIG") != "1", reason="needs ~16 GB and minutes: STAGETRACE_BIG=1"
)
def test_llava_7b_random_bf16_captures_on_this_cpu(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from capture.cli import main

    args = ["--model", "llava-1.5", "--weights", "random", "--dtype", "bfloat16", "--samples", "1",
            "--max-new-tokens", "2", "--min-new-tokens", "2", "--warmup", "0",
            "--out", str(tmp_path), "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    data = json.loads((run_dir / "run.json").read_text())
    assert data["model"]["parameters"] == 7_063_427_072 and data["config"]["weights"] == "random"
    assert data["samples"][0]["status"] == "ok" and len(data["samples"][0]["token_ids"]) == 2
