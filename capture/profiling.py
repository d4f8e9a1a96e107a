"""One torch.profiler session per sample, exported as a gzipped Chrome trace, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from capture.config import CaptureConfig


def make_profiler(cfg: CaptureConfig, device: torch.device) -> profile:
    """CPU activity always, CUDA activity on a CUDA device; the costly extras only when asked."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    return profile(
        activities=activities,
        record_shapes=cfg.record_shapes,
        with_stack=cfg.with_stack,
        profile_memory=cfg.profile_memory,
    )


def export_trace(prof: profile, path: Path) -> None:
    """Write ``path`` (``.json.gz``) so that it exists whole or not at all.

    The temporary name ends in ``.gz`` (torch gzips by suffix) but not ``.json.gz``, so
    analyze never mistakes a half-written file for a trace.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.gz")
    try:
        prof.export_chrome_trace(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
