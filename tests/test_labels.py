"""Forward-hook stage labels: names, nesting, order, and that they leave the model untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from analyze import vocabulary as vocab
from capture.data.sample import RawSample
from capture.generation import GenerationSettings
from capture.labels import StageLabeler
from capture.models.base import ModelSpec
from capture.models.hf import TRANSFORMERS_MAJOR
from capture.models.llava import LlavaAdapter, VideoLlavaAdapter
from tests.trace_checks import labels_in_order, load_trace, partial_overlaps

CPU = torch.device("cpu")
N_TOKENS = 4


def _raw() -> RawSample:
    rng = np.random.default_rng(0)
    return RawSample("s0", "what happens ?", frames=[rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)] * 8)


def _labelled_trace(adapter, tmp_path: Path, decoupled: bool = False) -> tuple[dict, list[int]]:
    lab = StageLabeler(adapter)
    inputs = adapter.prepare(_raw())
    lab.attach()
    with (
        torch.no_grad(),
        profile(activities=[ProfilerActivity.CPU]) as prof,
        lab.label(vocab.sample_label(0)),
    ):
        if decoupled:
            inputs = adapter.encode_vision(inputs)
        with lab.generation():
            ids = adapter.generate(inputs, GenerationSettings(N_TOKENS, N_TOKENS)).token_ids
    lab.detach()
    path = tmp_path / "t.json"
    prof.export_chrome_trace(str(path))
    return load_trace(path), ids


@pytest.mark.parametrize("cls,name", [(LlavaAdapter, "tiny-llava"), (VideoLlavaAdapter, "tiny-video-llava")])
def test_labels_names_order_and_nesting(cls, name: str, tmp_path: Path) -> None:
    adapter = cls.build(ModelSpec(name, None, CPU, torch.float32))
    trace, ids = _labelled_trace(adapter, tmp_path)
    events = trace["traceEvents"]
    names = labels_in_order(events)
    # transformers 5.x encodes vision inside generate() before the first forward; 4.x inside it.
    vision_first = names.index(vocab.VISION) < names.index(vocab.PREFILL)
    assert names[:2] == ["sample#0", vocab.GENERATE]
    assert names.count(vocab.VISION) == 1
    assert vocab.VISION_TOWER in names and vocab.VISION_PROJECTOR in names
    steps = [n for n in names if vocab.decode_step(n) is not None]
    assert (
        steps
        == [vocab.step_label(k) for k in range(len(ids))]
        == [vocab.PREFILL, *[f"stage4:decode#{k}" for k in range(1, N_TOKENS)]]
    )
    # and the spans say the same: vision before the prefill (5.x) or nested inside it (4.x)
    span = {e["name"]: (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "user_annotation"}
    (v0, v1), (p0, p1) = span[vocab.VISION], span[vocab.PREFILL]
    if TRANSFORMERS_MAJOR >= 5:
        assert vision_first and v1 <= p0
    else:
        assert not vision_first and p0 <= v0 and v1 <= p1
    assert partial_overlaps(events) == []


def test_decoupled_vision_stands_outside_generate(tmp_path: Path) -> None:
    adapter = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32))
    trace, _ = _labelled_trace(adapter, tmp_path, decoupled=True)
    events = [e for e in trace["traceEvents"] if e.get("cat") == "user_annotation"]
    span = {e["name"]: (e["ts"], e["ts"] + e["dur"]) for e in events}
    assert span[vocab.VISION][1] <= span[vocab.GENERATE][0]


def test_detach_removes_every_hook_and_closes_open_ranges() -> None:
    adapter = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32))
    lab = StageLabeler(adapter)
    lab.attach()
    modules = [adapter.model, adapter.model.model.vision_tower, adapter.model.model.multi_modal_projector]
    assert all(m._forward_pre_hooks or m._forward_hooks for m in modules)
    lab.open(vocab.GENERATE)
    lab.open(vocab.PREFILL)  # as if forward raised before its post-hook
    lab.detach()
    assert not lab.is_open(vocab.GENERATE) and not lab.is_open(vocab.PREFILL)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in modules)


def test_close_closes_inner_ranges_first() -> None:
    adapter = LlavaAdapter.build(ModelSpec("tiny-llava", None, CPU, torch.float32))
    lab = StageLabeler(adapter)
    for name in (vocab.GENERATE, vocab.PREFILL, vocab.VISION):
        lab.open(name)
    lab.close(vocab.PREFILL)
    assert lab.is_open(vocab.GENERATE) and not lab.is_open(vocab.VISION)
    lab.close("not-open")  # a no-op
    assert lab.is_open(vocab.GENERATE)
    lab.close_all()
    assert not lab.is_open(vocab.GENERATE)
