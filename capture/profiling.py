"""One torch.profiler session per sample, exported as a gzipped Chrome trace, atomically."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from analyze.files import write_atomic
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


@contextmanager
def profiled(cfg: CaptureConfig, device: torch.device) -> Iterator[profile]:
    """``with make_profiler(...)``, minus the lines Kineto's C++ side prints to stderr at every
    start and stop, which would break the progress bar once per sample."""
    prof = make_profiler(cfg, device)
    with _native_stderr_silenced():
        prof.start()
    try:
        yield prof
    finally:
        with _native_stderr_silenced():
            prof.stop()


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a moment (Python exceptions still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def export_trace(prof: profile, path: Path) -> None:
    """Write ``path`` (``.json.gz``) so that it exists whole or not at all.

    The temporary name ends in ``.gz`` (torch gzips by suffix) but not ``.json.gz``, so
    analyze never mistakes a half-written file for a trace.
    """
    write_atomic(path, lambda tmp: prof.export_chrome_trace(str(tmp)), suffix=".gz")
