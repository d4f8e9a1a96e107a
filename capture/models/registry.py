"""Model names the CLI accepts, and the adapter class behind each."""

from __future__ import annotations

import importlib

from capture.errors import CaptureError
from capture.models.base import ModelAdapter

# name -> "module:Class"; imported on use so `capture --help` stays fast.
MODELS: dict[str, str] = {
    "eventgpt": "capture.models.eventgpt:EventGPTAdapter",
    "llava-1.5": "capture.models.llava:LlavaAdapter",
    "video-llava": "capture.models.llava:VideoLlavaAdapter",
    "tiny-eventgpt": "capture.models.eventgpt:EventGPTAdapter",
    "tiny-llava": "capture.models.llava:LlavaAdapter",
    "tiny-video-llava": "capture.models.llava:VideoLlavaAdapter",
}


def adapter_class(name: str) -> type[ModelAdapter]:
    """The adapter class for model ``name``; unknown names list the choices."""
    if name not in MODELS:
        raise CaptureError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]
