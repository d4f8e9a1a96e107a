"""Peak memory over a block of work, as run.json's ``peak_mem_mb`` reports it per sample.

On CUDA: the device's peak allocated memory (``torch.cuda.max_memory_allocated``, reset when
the block starts), weights included. On CPU: how far the process's resident set grew above its
size at the start of the block. Linux resets the peak (``VmHWM``) by writing 5 to
``/proc/self/clear_refs``; where that cannot be done (another OS, a locked-down /proc) the
value is None rather than a number that may belong to an earlier sample.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import torch

MIB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), or None where there is none."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux); False where it cannot."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mb``: the block's peak in MiB
    (None where it cannot be measured)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self._base_kib: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _reset_peak_rss():
            self._base_kib = _status_kib("VmRSS")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / MIB
            return
        peak = _status_kib("VmHWM")
        if self._base_kib is not None and peak is not None:
            self.mb = max(peak - self._base_kib, 0) / 1024.0
