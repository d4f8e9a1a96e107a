"""Meta-device build then materialisation: dtypes, buffers and logits equal an ordinary build's."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from capture.models import meta_build
from capture.models.eventgpt_model import build_eventgpt

TEXT = {
    "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 64,
}  # fmt: skip
VISION = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "image_size": 28, "patch_size": 14, "projection_dim": 16,
}  # fmt: skip


def _llava_config() -> LlavaConfig:
    return LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **VISION},
        text_config=TEXT,
        image_token_index=127,
        vision_feature_layer=-2,
        image_seq_length=4,
    )


def _inputs(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    ids = torch.arange(12).reshape(1, 12) + 3
    ids[0, 1:5] = 127  # four image tokens for the 2x2 patches
    pixels = torch.linspace(-1, 1, 3 * 28 * 28).reshape(1, 3, 28, 28).to(dtype)
    return {"input_ids": ids, "pixel_values": pixels}


def _kw(dtype: torch.dtype) -> dict[str, torch.dtype]:
    from capture.models.hf import dtype_kwarg

    return dtype_kwarg(dtype)


def test_meta_build_allocates_nothing_and_counts_parameters() -> None:
    cfg = _llava_config()
    model = meta_build.build_on_meta(
        lambda: LlavaForConditionalGeneration._from_config(cfg, **_kw(torch.bfloat16))
    )
    assert {p.device.type for p in model.parameters()} == {"meta"}
    ordinary = LlavaForConditionalGeneration(cfg)
    assert meta_build.parameter_count(model) == sum(p.numel() for p in ordinary.parameters())


def test_bf16_random_build_has_fp32_rotary_buffers_and_ordinary_logits() -> None:
    cfg = _llava_config()
    model = meta_build.build_on_meta(
        lambda: LlavaForConditionalGeneration._from_config(cfg, **_kw(torch.bfloat16))
    )
    meta_build.materialise(model, torch.device("cpu"), seed=0)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ordinary = LlavaForConditionalGeneration._from_config(cfg, **_kw(torch.bfloat16)).eval()
    mine, theirs = dict(model.named_buffers()), dict(ordinary.named_buffers())
    assert mine.keys() == theirs.keys() and any(k.endswith("inv_freq") for k in mine)
    for name, buf in mine.items():
        assert buf.dtype == theirs[name].dtype and torch.equal(buf, theirs[name]), name
    assert next(b for k, b in mine.items() if k.endswith("inv_freq")).dtype == torch.float32
    # Weights look like transformers' initialisation: normal(0, 0.02) linears, unit norms.
    q = model.model.language_model.layers[0].self_attn.q_proj.weight.float()
    assert abs(q.std().item() - cfg.text_config.initializer_range) < 0.003
    assert torch.equal(
        model.model.language_model.norm.weight, torch.ones_like(model.model.language_model.norm.weight)
    )
    # Loaded with the same weights, the two compute the same logits, bit for bit.
    model.load_state_dict(ordinary.state_dict())
    with torch.no_grad():
        a = model(**_inputs(torch.bfloat16)).logits
        b = ordinary(**_inputs(torch.bfloat16)).logits
    assert torch.isfinite(a).all() and torch.equal(a, b)


def test_same_seed_same_weights() -> None:
    cfg = _llava_config()
    built = []
    for seed in (3, 3, 4):
        m = meta_build.build_on_meta(
            lambda: LlavaForConditionalGeneration._from_config(cfg, **_kw(torch.float32))
        )
        built.append(meta_build.materialise(m, torch.device("cpu"), seed).lm_head.weight)
    assert torch.equal(built[0], built[1]) and not torch.equal(built[0], built[2])


def test_garbage_buffers_are_recomputed() -> None:
    """The rotary frequencies are not weights: without recomputation the logits are silently wrong."""
    cfg = _llava_config()
    model = meta_build.build_on_meta(
        lambda: LlavaForConditionalGeneration._from_config(cfg, **_kw(torch.float32))
    )
    meta_build.materialise(model, torch.device("cpu"), seed=0)
    with torch.no_grad():
        before = model(**_inputs(torch.float32)).logits
        for buf in model.buffers():
            if buf.is_floating_point():  # rotary inv_freq (position_ids must stay valid indices)
                buf.fill_(7)
        spoilt = model(**_inputs(torch.float32)).logits
        meta_build.restore_buffers(model, torch.device("cpu"))
        after = model(**_inputs(torch.float32)).logits
    assert not torch.equal(before, spoilt)
    assert torch.equal(before, after)


def test_eventgpt_meta_build_matches_an_ordinary_build() -> None:
    text = LlamaConfig(**TEXT)
    vision = CLIPVisionConfig(**VISION)
    model = meta_build.build_on_meta(
        lambda: build_eventgpt(text, vision, torch.device("meta"), torch.bfloat16, init_weights=False)
    )
    meta_build.materialise(model, torch.device("cpu"), seed=0)
    ordinary = build_eventgpt(text, vision, torch.device("cpu"), torch.bfloat16)
    for name, buf in ordinary.named_buffers():
        assert torch.equal(dict(model.named_buffers())[name], buf), name
    adaptor = model.model.feature_adaptor
    assert adaptor.weight.dtype == torch.bfloat16 and torch.count_nonzero(adaptor.bias) == 0
    assert 0.015 < adaptor.weight.float().std().item() < 0.025  # reached by transformers' init
    model.load_state_dict(ordinary.state_dict())
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, ordinary(input_ids=ids).logits)


def test_a_buffer_without_a_config_is_refused() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("table", torch.zeros(3), persistent=False)

    with pytest.raises(TypeError, match="no config"):
        meta_build.restore_buffers(Odd(), torch.device("cpu"))
