"""Which dataset ``--dataset`` names: nothing -> the built-in synthetic scene, a folder -> its clips."""

from __future__ import annotations

from pathlib import Path

from capture.data.folder import FolderDataset
from capture.data.sample import Dataset
from capture.data.synthetic import SyntheticDataset


def open_dataset(path: Path | None, *, seed: int = 0, n_samples: int) -> Dataset:
    """``None`` -> ``SyntheticDataset(n_samples, seed)``; a folder -> ``FolderDataset(path)``.

    ``n_samples`` sizes only the synthetic dataset; a folder has as many samples as it has
    clips (the caller decides how many to run). Bad folders raise CaptureError.
    """
    if path is None:
        return SyntheticDataset(n_samples, seed=seed)
    return FolderDataset(Path(path))
