"""LLaVA-1.5 and Video-LLaVA adapters, on tiny random-weight models built in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from capture.data.sample import RawSample
from capture.errors import CaptureError
from capture.models.base import ModelSpec
from capture.models.llava import TINY_IMAGE_SIZE, LlavaAdapter, VideoLlavaAdapter

CPU = torch.device("cpu")


def _raw(n_frames: int = 8) -> RawSample:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n_frames)]
    return RawSample("s0", "what happens in the scene ?", frames=frames)


@pytest.fixture(
    scope="module", params=[("tiny-llava", LlavaAdapter), ("tiny-video-llava", VideoLlavaAdapter)]
)
def adapter(request: pytest.FixtureRequest):
    name, cls = request.param
    return cls.build(ModelSpec(name, None, CPU, torch.float32, seed=0))


def test_placeholders_match_vision_features(adapter) -> None:
    inputs = adapter.prepare(_raw())
    n_placeholders = int((inputs["input_ids"] == adapter.placeholder_id).sum())
    patches = (TINY_IMAGE_SIZE // 14) ** 2
    if adapter.modality == "image":
        assert inputs["pixel_values"].shape == (1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
        assert n_placeholders == patches  # CLS dropped ("default" strategy)
    else:
        assert inputs["pixel_values_videos"].shape == (1, 8, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
        assert n_placeholders == 8 * (patches + 1)  # the video path keeps CLS
    with torch.no_grad():  # a mismatch would raise inside the model's own check
        feats = adapter.vision_features(next(v for k, v in inputs.items() if k.startswith("pixel")))
    pooled = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    n_feats = sum(f.shape[0] * (f.shape[1] if f.dim() == 3 else 1) for f in pooled)
    assert n_feats == n_placeholders


def test_generate_is_deterministic_and_decoupled_matches_fused(adapter) -> None:
    inputs = adapter.prepare(_raw())
    with torch.no_grad():
        a = adapter.generate(inputs, max_new_tokens=5, min_new_tokens=5)
        b = adapter.generate(inputs, max_new_tokens=5, min_new_tokens=5)
        c = adapter.generate(adapter.encode_vision(inputs), max_new_tokens=5, min_new_tokens=5)
    assert len(a) == 5
    assert a == b == c
    assert isinstance(adapter.decode(a), str)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    def first_weight(seed: int) -> torch.Tensor:
        a = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32, seed=seed))
        return next(a.model.parameters()).detach().clone()

    assert torch.equal(first_weight(3), first_weight(3))
    assert not torch.equal(first_weight(3), first_weight(4))


def test_video_llava_samples_eight_frames_from_longer_clips() -> None:
    a = VideoLlavaAdapter.build(ModelSpec("tiny-video-llava", None, CPU, torch.float32))
    raw = _raw(20)
    picked = a.frames_for(raw)
    assert len(picked) == 8
    assert picked[0] is raw.frames[0] and picked[-1] is raw.frames[-1]


def test_missing_weights_say_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    missing.mkdir()
    with pytest.raises(CaptureError) as err:
        LlavaAdapter.build(ModelSpec("llava-1.5", str(missing), CPU, torch.float32))
    msg = str(err.value)
    assert str(missing) in msg and "--model-path" in msg and "\n" not in msg


def test_real_weight_path_loads_a_saved_folder(tmp_path: Path) -> None:
    """The llava-1.5 path (from_pretrained, local files only) on a checkpoint saved from the tiny model."""
    tiny = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32, seed=5))
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    tiny.image_processor.save_pretrained(tmp_path)
    real = LlavaAdapter.build(ModelSpec("llava-1.5", str(tmp_path), CPU, torch.float32))
    assert real.weights_source == str(tmp_path)
    raw = _raw()
    with torch.no_grad():
        want = tiny.generate(tiny.prepare(raw), max_new_tokens=4, min_new_tokens=4)
        got = real.generate(real.prepare(raw), max_new_tokens=4, min_new_tokens=4)
    assert got == want
