"""LLaVA-1.5 and Video-LLaVA adapters, on tiny random-weight models built in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from capture.data.sample import RawSample
from capture.errors import CaptureError
from capture.generation import GenerationSettings
from capture.models.base import ModelSpec
from capture.models.llava import TINY_IMAGE_SIZE, LlavaAdapter, VideoLlavaAdapter

CPU = torch.device("cpu")


def _raw(n_frames: int = 8) -> RawSample:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n_frames)]
    return RawSample("s0", "what happens in the scene ?", frames=frames, n_frames=n_frames)


def _raw_for(adapter) -> RawSample:
    return _raw(adapter.default_frames)  # LLaVA-1.5: 1 image; Video-LLaVA: 8 frames


@pytest.fixture(
    scope="module", params=[("tiny-llava", LlavaAdapter), ("tiny-video-llava", VideoLlavaAdapter)]
)
def adapter(request: pytest.FixtureRequest):
    name, cls = request.param
    return cls.build(ModelSpec(name, None, CPU, torch.float32, seed=0))


def test_placeholders_match_vision_features(adapter) -> None:
    inputs = adapter.prepare(_raw_for(adapter))
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
    inputs = adapter.prepare(_raw_for(adapter))
    with torch.no_grad():
        a = adapter.generate(inputs, GenerationSettings(5, 5)).token_ids
        b = adapter.generate(inputs, GenerationSettings(5, 5)).token_ids
        c = adapter.generate(adapter.encode_vision(inputs), GenerationSettings(5, 5)).token_ids
    assert len(a) == 5
    assert a == b == c
    assert isinstance(adapter.decode(a), str)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    def first_weight(seed: int) -> torch.Tensor:
        a = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32, seed=seed))
        return next(a.model.parameters()).detach().clone()

    assert torch.equal(first_weight(3), first_weight(3))
    assert not torch.equal(first_weight(3), first_weight(4))


def test_prompts_as_the_benchmarks_and_the_model_docs_write_them() -> None:
    llava = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32))
    video = VideoLlavaAdapter.build(ModelSpec("tiny-video-llava", None, CPU, torch.float32))
    assert llava.prompt_text("What moves?", 1) == "USER: <image>\nWhat moves? ASSISTANT:"
    assert llava.prompt_text("Q", 3) == "USER: <image>\n<image>\n<image>\nQ ASSISTANT:"
    assert video.prompt_text("What moves?", 8) == "USER: <video>\nWhat moves? ASSISTANT:"
    assert (llava.default_frames, llava.frame_pick) == (1, "linspace")
    assert (video.default_frames, video.frame_pick) == (8, "arange")


def test_llava_with_8_frames_has_8_image_blocks() -> None:
    """The benchmarks' 8-frame LLaVA-1.5 mode: 8 images of (56/14)^2 = 16 tokens in the tiny
    model (576 at 336 px: 8 x 576 + text = the benchmarks' 4643-token prefill)."""
    adapter = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32))
    one, eight = adapter.prepare(_raw(1)), adapter.prepare(_raw(8))
    assert eight["pixel_values"].shape == (8, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    assert int((eight["input_ids"] == adapter.placeholder_id).sum()) == 8 * 16
    text_one = adapter.prefill_tokens(one) - 16
    # each further "<image>\n" block adds 16 image tokens and the newline's (none in the tiny
    # word-level tokenizer; one, <0x0A>, in LLaMA's)
    newline = len(adapter.tokenizer("\n", add_special_tokens=False)["input_ids"])
    assert adapter.prefill_tokens(eight) == text_one + 7 * newline + 8 * 16
    with torch.no_grad():
        fused = adapter.generate(eight, GenerationSettings(4, 4)).token_ids
        decoupled = adapter.generate(adapter.encode_vision(eight), GenerationSettings(4, 4)).token_ids
    assert fused == decoupled and len(fused) == 4


def test_video_llava_prefill_is_fixed_by_its_8_frames() -> None:
    adapter = VideoLlavaAdapter.build(ModelSpec("tiny-video-llava", None, CPU, torch.float32))
    inputs = adapter.prepare(_raw(8))
    assert int((inputs["input_ids"] == adapter.placeholder_id).sum()) == 8 * 17  # CLS kept: 8 x 257 at 224 px
    assert adapter.prefill_tokens(inputs) == inputs["input_ids"].shape[1]


def test_event_frames_are_drawn_for_image_source_event() -> None:
    from capture.data.sample import EVENT_DTYPE

    events = np.zeros(30, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = np.arange(30), np.arange(30) % 7, np.arange(30) % 2
    adapter = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32))
    frames = adapter.frames_for(RawSample("e", "Q", events=events, n_frames=1))
    assert len(frames) == 1 and frames[0].shape == (7, 30, 3)  # the events' own extent
    inputs = adapter.prepare(RawSample("e", "Q", events=events, n_frames=2))
    assert inputs["pixel_values"].shape[0] == 2
    # the events are checked before they are drawn
    with pytest.raises(CaptureError, match=r"^sample e: event x spans 0\.\.29, outside the 20x7 sensor"):
        adapter.prepare(RawSample("e", "Q", events=events, n_frames=2, sensor_hw=(7, 20)))


def test_generation_pads_with_the_tokenizer_and_runs_the_asked_attention() -> None:
    for name, cls in (("tiny-llava", LlavaAdapter), ("tiny-video-llava", VideoLlavaAdapter)):
        built = cls.build(ModelSpec(name, None, CPU, torch.float32, attn_implementation="eager"))
        tok = built.tokenizer
        want = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        assert want is not None and built.model.generation_config.pad_token_id == want
        assert built.describe().attn_implementation == "eager"


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
        want = tiny.generate(tiny.prepare(raw), GenerationSettings(4, 4)).token_ids
        got = real.generate(real.prepare(raw), GenerationSettings(4, 4)).token_ids
    assert got == want
