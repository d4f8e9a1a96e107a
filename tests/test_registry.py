"""open_dataset: no path -> the synthetic scene, a folder -> its clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capture.data.folder import FolderDataset
from capture.data.registry import open_dataset
from capture.data.sample import InputRequest
from capture.data.synthetic import SyntheticDataset, write_synthetic_folder
from capture.errors import CaptureError


def test_none_gives_synthetic_with_seed_and_size() -> None:
    dataset = open_dataset(None, seed=3, n_samples=5)
    assert isinstance(dataset, SyntheticDataset)
    assert len(dataset) == 5 and dataset.name == "synthetic"
    expected = SyntheticDataset(5, seed=3).load(4, InputRequest("camera", 1)).frames[0]
    assert np.array_equal(dataset.load(4, InputRequest("camera", 1)).frames[0], expected)
    other_seed = open_dataset(None, n_samples=5).load(4, InputRequest("camera", 1)).frames[0]
    assert not np.array_equal(other_seed, expected)


def test_folder_gives_folder_dataset_of_its_clips(tmp_path: Path) -> None:
    write_synthetic_folder(tmp_path, n_samples=1)
    dataset = open_dataset(tmp_path, n_samples=10)  # n_samples only sizes the synthetic dataset
    assert isinstance(dataset, FolderDataset)
    assert len(dataset) == 1 and dataset.sample_id(0) == "synthetic-00000"


def test_missing_folder_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="dataset folder not found"):
        open_dataset(tmp_path / "nope", n_samples=1)
