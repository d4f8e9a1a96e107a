"""One torch.profiler session per sample, exported as a gzipped Chrome trace, atomically."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from analyze.files import tmp_path
from capture.config import CaptureConfig
from capture.exporter import gzip_trace


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


def save_json(prof: profile, path: Path) -> None:
    """Kineto's JSON of a stopped session, uncompressed, to ``path``.

    ``path`` must not end in ``.gz``: for that torch writes the JSON to a file in the system
    temp folder first (which a killed process leaves there) and gzips it at level 9 in Python.
    """
    prof.export_chrome_trace(str(path))


def export_trace(prof: profile, path: Path) -> None:
    """Write ``path`` (``.json.gz``) so that it exists whole or not at all, here and now.

    Both temporary files, the JSON and the gzip, sit beside ``path`` under analyze.files'
    temporary names (``--resume`` removes what a killed process left); neither ends in
    ``.json.gz``, so analyze never mistakes one for a trace. capture itself exports in the
    background (capture.exporter); this is the same work in the foreground.
    """
    plain = tmp_path(path, ".json")
    try:
        save_json(prof, plain)
        gzip_trace(plain, path)
    finally:
        plain.unlink(missing_ok=True)
