"""Shared fixtures: tiny captures made once per test session, in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

TINY_MODELS = ("tiny-llava", "tiny-video-llava", "tiny-eventgpt")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_run(model, mode="fused")`` -> a finished run folder (2 samples, 6 tokens), cached."""
    cache: dict[tuple[str, str], Path] = {}

    def make(model: str, mode: str = "fused") -> Path:
        key = (model, mode)
        if key not in cache:
            from capture.config import CaptureConfig
            from capture.runner import Capture

            out = tmp_path_factory.mktemp(f"{model}-{mode}")
            cfg = CaptureConfig(
                model=model, samples=2, out=str(out), mode=mode, max_new_tokens=6, min_new_tokens=6, warmup=0
            )
            cap = Capture.prepare(cfg)
            cap.run()
            cache[key] = cap.folder.run_dir
        return cache[key]

    return make


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip cleanly on machines without CUDA."""
    if has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
