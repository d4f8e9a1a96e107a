"""Camera frames: which frames each model's rule picks, and decoding only those from an mp4."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from capture.data.frames import mp4_frame_count, pick_indices, read_mp4_frames, read_rgb
from capture.errors import CaptureError


def test_video_llava_rule_is_transformers_documented_arange() -> None:
    # np.arange(0, n, n / 8) floored, as transformers' Video-LLaVA documentation samples.
    assert pick_indices(20, 8, "arange") == [0, 2, 5, 7, 10, 12, 15, 17]
    assert pick_indices(21, 8, "arange") == [0, 2, 5, 7, 10, 13, 15, 18]
    assert pick_indices(8, 8, "arange") == list(range(8))
    # a short clip repeats frames: always 8 frames, so always 8 x 257 video tokens
    assert pick_indices(5, 8, "arange") == [0, 0, 1, 1, 2, 3, 3, 4]
    assert pick_indices(1, 8, "arange") == [0] * 8
    for n in range(1, 200):
        picked = pick_indices(n, 8, "arange")
        assert len(picked) == 8 and picked == sorted(picked) and picked[-1] < n


def test_llava_rule_is_the_benchmarks_linspace_and_one_frame_is_the_middle() -> None:
    # The benchmarks' 8-frame LLaVA-1.5 rule: int(i * (N - 1) / 7) == np.linspace(0, N - 1, 8) floored.
    assert pick_indices(20, 8, "linspace") == [0, 2, 5, 8, 10, 13, 16, 19]
    assert pick_indices(20, 8, "linspace") == [int(i * 19 / 7) for i in range(8)]
    assert pick_indices(20, 1, "linspace") == [10]
    assert pick_indices(8, 1, "linspace") == [4]
    assert pick_indices(3, 8, "linspace") == [0, 0, 0, 0, 1, 1, 1, 2]


def test_pick_errors() -> None:
    with pytest.raises(CaptureError, match="without frames"):
        pick_indices(0, 8, "arange")
    with pytest.raises(CaptureError, match="at least 1"):
        pick_indices(8, 0, "arange")
    with pytest.raises(CaptureError, match="unknown frame rule"):
        pick_indices(8, 1, "random")  # type: ignore[arg-type]


def write_grey_mp4(path: Path, levels: list[int], hw: tuple[int, int] = (64, 96)) -> None:
    """An H.264 clip whose frame k is a uniform grey of ``levels[k]`` (lossless enough to tell)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=20)
        stream.height, stream.width = hw
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"}
        for level in levels:
            frame = np.full((*hw, 3), level, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def test_mp4_decodes_only_the_picked_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    levels = [10 * k for k in range(20)]
    write_grey_mp4(path, levels)
    assert mp4_frame_count(path) == 20
    frames = read_mp4_frames(path, 8, "arange")
    assert [f.shape for f in frames] == [(64, 96, 3)] * 8
    got = [round(float(f.mean())) for f in frames]
    want = [levels[i] for i in (0, 2, 5, 7, 10, 12, 15, 17)]
    assert all(abs(g - w) <= 2 for g, w in zip(got, want, strict=True)), got


def test_unreadable_files_are_capture_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"root:x:0:0\n" * 10)
    with pytest.raises(CaptureError, match=r"bad\.mp4: not a readable video") as info:
        read_mp4_frames(tmp_path / "bad.mp4", 8, "arange")
    assert "root:x" not in str(info.value)
    with pytest.raises(CaptureError, match=r"gone\.mp4: video not found"):
        read_mp4_frames(tmp_path / "gone.mp4", 8, "arange")
    (tmp_path / "bad.png").write_bytes(b"root:x:0:0\n")
    with pytest.raises(CaptureError, match=r"bad\.png: unreadable image") as info:
        read_rgb(tmp_path / "bad.png")
    assert "root:x" not in str(info.value)
