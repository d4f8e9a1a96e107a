"""Peak memory per sample: the CPU's peak RSS growth (reset through /proc), or None."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from capture import memory
from capture.memory import PeakMemory

CPU = torch.device("cpu")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
def test_cpu_peak_is_the_growth_within_the_block() -> None:
    with PeakMemory(CPU) as big:
        block = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # 64 MiB, touched
        del block
    assert big.mb is not None and 60 <= big.mb <= 200
    with PeakMemory(CPU) as small:  # the earlier peak does not count again
        pass
    assert small.mb is not None and small.mb < 30


def test_no_number_where_the_peak_cannot_be_reset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(memory, "_CLEAR_REFS", tmp_path / "no" / "clear_refs")
    with PeakMemory(CPU) as peak:
        pass
    assert peak.mb is None


@pytest.mark.gpu
def test_cuda_peak_is_max_memory_allocated() -> None:
    device = torch.device("cuda")
    with PeakMemory(device) as peak:
        x = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=device)
        del x
    assert peak.mb is not None and peak.mb >= 256
