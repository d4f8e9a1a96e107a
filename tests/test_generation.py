"""The one generate() path: settings passed whole, seeded sampling, and the KV cache's size."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from capture.data.sample import RawSample
from capture.generation import GenerationSettings
from capture.models.base import ModelSpec
from capture.models.hf import cache_bytes, generate_new_ids
from capture.models.llava import LlavaAdapter

CPU = torch.device("cpu")


def _adapter_and_inputs() -> tuple[LlavaAdapter, dict]:
    adapter = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32))
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return adapter, adapter.prepare(RawSample("s", "what happens ?", frames=[frame]))


def test_new_ids_equal_plain_generate_and_the_kv_cache_is_measured() -> None:
    adapter, inputs = _adapter_and_inputs()
    settings = GenerationSettings(6, 6)
    with torch.no_grad():
        plain = adapter.model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        out = generate_new_ids(adapter.model, inputs, settings, echoed=inputs["input_ids"].shape[1])
    assert out.token_ids == plain[0, inputs["input_ids"].shape[1] :].tolist()
    # tiny LLaMA: 2 layers x (K, V) x 4 heads x 16 dims x 4 bytes per position; the cache holds the
    # prompt and every new token but the last (it was never fed back)
    positions = adapter.prefill_tokens(inputs) + 6 - 1
    assert out.kv_cache_bytes == positions * 2 * 2 * 4 * 16 * 4


def test_sampling_is_seeded_so_the_same_seed_gives_the_same_tokens() -> None:
    adapter, inputs = _adapter_and_inputs()
    settings = GenerationSettings.from_options(
        max_new_tokens=12, min_new_tokens=12, do_sample=True, temperature=2.0
    )
    with torch.no_grad():
        a = adapter.generate(inputs, settings, seed=5).token_ids
        torch.manual_seed(123)  # whatever ran before does not matter
        b = adapter.generate(inputs, settings, seed=5).token_ids
        others = {tuple(adapter.generate(inputs, settings, seed=s).token_ids) for s in range(6, 10)}
        greedy = adapter.generate(inputs, GenerationSettings(12, 12)).token_ids
    assert a == b
    assert others - {tuple(a)}, "other seeds should draw other tokens: the sampling is real"
    assert greedy == adapter.generate(inputs, GenerationSettings(12, 12), seed=99).token_ids


def test_cache_bytes_counts_each_tensor_once_in_every_cache_form() -> None:
    k = torch.zeros(1, 2, 3, 4)  # 24 float32 = 96 bytes
    v = torch.zeros(1, 2, 3, 4, dtype=torch.float16)  # 48 bytes
    assert cache_bytes(((k, v), (k, v))) == 96 + 48  # legacy tuples; shared tensors once
    assert cache_bytes(((k, v.clone()), (k.clone(), v))) == 2 * (96 + 48)

    layers = [SimpleNamespace(keys=k, values=v), SimpleNamespace(keys=k.clone(), values=v.clone())]
    new_cache = SimpleNamespace(layers=layers)  # transformers >= 4.56: layers with keys and values
    old_cache = SimpleNamespace(key_cache=[k, k.clone()], value_cache=[v, v.clone()])  # before
    assert cache_bytes(new_cache) == cache_bytes(old_cache) == 2 * (96 + 48)
    assert cache_bytes(None) == 0
