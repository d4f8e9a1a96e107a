"""A dataset folder in the EventGPT DSEC layout: round trip, discovery, prompts, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from capture.data.events import save_eventgpt_npy
from capture.data.folder import FolderDataset
from capture.data.sample import DEFAULT_PROMPT, EVENT_DTYPE
from capture.data.synthetic import SyntheticDataset, write_synthetic_folder
from capture.errors import CaptureError


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_folder(tmp_path_factory.mktemp("dsec"), n_samples=2, seed=5)


def copy_of(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


def small_events(x: list[int], y: list[int]) -> np.ndarray:
    events = np.zeros(len(x), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"] = x, y, np.arange(len(x))
    return events


def write_frames(folder: Path, n: int, hw: tuple[int, int]) -> None:
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.full((*hw, 3), 10 * k, dtype=np.uint8)).save(folder / f"{k:03d}.png")


def write_json(path: Path, entries: object) -> None:
    path.write_text(json.dumps(entries), encoding="utf-8")


def test_layout_written(synthetic_root: Path) -> None:
    assert sorted(p.relative_to(synthetic_root).as_posix() for p in synthetic_root.glob("event_npy/*/*")) == [
        "event_npy/synthetic/00000.npy",
        "event_npy/synthetic/00001.npy",
    ]
    assert len(list((synthetic_root / "video/synthetic/00001").glob("*.png"))) == 8
    entries = json.loads((synthetic_root / "instructions.json").read_text())
    assert entries[1]["id"] == "synthetic-00001"
    assert entries[1]["event_data"] == "synthetic/00001.npy"
    assert entries[1]["conversations"][0] == {"from": "human", "value": f"<event>\n{DEFAULT_PROMPT}"}


def test_round_trip_matches_synthetic(synthetic_root: Path) -> None:
    folder = FolderDataset(synthetic_root)
    source = SyntheticDataset(2, seed=5)
    assert len(folder) == 2
    assert [folder.sample_id(i) for i in range(2)] == ["synthetic-00000", "synthetic-00001"]
    assert folder.name.startswith("folder:")

    events = folder.load(1, "events")
    expected = source.load(1, "events")
    assert events.prompt == DEFAULT_PROMPT and events.frames == [] and events.sensor_hw == (480, 640)
    assert events.events is not None and expected.events is not None
    assert events.events.dtype == EVENT_DTYPE and np.array_equal(events.events, expected.events)

    video = folder.load(1, "video")
    frames = source.load(1, "video").frames
    assert len(video.frames) == 8 and video.events is None
    assert all(np.array_equal(a, b) for a, b in zip(video.frames, frames, strict=True))

    image = folder.load(1, "image")
    assert len(image.frames) == 1 and np.array_equal(image.frames[0], frames[4])


def test_scan_without_json_is_union_sorted(synthetic_root: Path, tmp_path: Path) -> None:
    root = copy_of(synthetic_root, tmp_path)
    (root / "instructions.json").unlink()
    save_eventgpt_npy(root / "event_npy/aaa/events_only.npy", small_events([1], [1]))  # no frames
    write_frames(root / "video/zzz/frames_only", 3, (4, 6))  # no events
    (root / "video/zzz/empty").mkdir()  # no PNGs: not a clip
    folder = FolderDataset(root)
    ids = [folder.sample_id(i) for i in range(len(folder))]
    assert ids == ["aaa/events_only", "synthetic/00000", "synthetic/00001", "zzz/frames_only"]
    assert folder.load(1, "events").prompt == DEFAULT_PROMPT

    events_only = folder.load(0, "events")
    assert events_only.sensor_hw == (480, 640) and len(events_only.events) == 1  # type: ignore[arg-type]
    with pytest.raises(CaptureError, match=r"clip aaa/events_only has no frames in video/"):
        folder.load(0, "video")
    with pytest.raises(CaptureError, match=r"clip zzz/frames_only has no event file in event_npy/"):
        folder.load(3, "events")
    image = folder.load(3, "image")
    assert image.frames[0].shape == (4, 6, 3) and int(image.frames[0][0, 0, 0]) == 10  # middle of 3
    assert image.sensor_hw == (4, 6)


def test_sensor_size_from_frames_and_event_range(tmp_path: Path) -> None:
    save_eventgpt_npy(tmp_path / "event_npy/seq/a.npy", small_events([0, 63], [0, 47]))
    write_frames(tmp_path / "video/seq/a", 2, (48, 64))
    save_eventgpt_npy(tmp_path / "event_npy/seq/b.npy", small_events([64], [0]))
    write_frames(tmp_path / "video/seq/b", 2, (48, 64))
    folder = FolderDataset(tmp_path)
    assert folder.load(0, "events").sensor_hw == (48, 64)
    with pytest.raises(CaptureError, match=r"b\.npy: event x spans 64..64, outside the 64x48 sensor"):
        folder.load(1, "events")


def test_json_prompts_paths_and_duplicate_ids(synthetic_root: Path, tmp_path: Path) -> None:
    root = copy_of(synthetic_root, tmp_path)
    (root / "instructions.json").unlink()
    write_json(
        root / "b_questions.json",
        [
            {
                "id": "q",
                "event_data": "synthetic/00001.npy",
                "conversations": [
                    {"from": "gpt", "value": "x"},
                    {"from": "human", "value": "  <event>\nWhat moves?\n"},
                ],
            },
        ],
    )
    write_json(
        root / "a_captions.json",
        [
            {
                "id": "q",
                "event_data": "event_npy/synthetic/00000.npy",
                "conversations": [{"from": "human", "value": "Describe <event> the scene."}],
            },
            {
                "id": "q",
                "event_data": "synthetic/00000.npy",
                "conversations": [{"from": "human", "value": "<event>"}],
            },
            {"event_data": "synthetic/00001.npy", "conversations": [{"from": "human", "value": "Why?"}]},
        ],
    )
    folder = FolderDataset(root)
    assert [folder.sample_id(i) for i in range(4)] == ["q", "q#2", "synthetic/00001", "q#3"]
    prompts = [folder.load(i, "image").prompt for i in range(4)]
    assert prompts == ["Describe the scene.", DEFAULT_PROMPT, "Why?", "What moves?"]
    # Both event_data spellings reach the same file.
    a, b = folder.load(0, "events").events, folder.load(1, "events").events
    assert a is not None and b is not None and np.array_equal(a, b)


def _no_human(root: Path) -> None:
    write_json(root / "i.json", [{"event_data": "synthetic/00000.npy", "conversations": [{"from": "gpt"}]}])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: (r / "instructions.json").write_text("[{"),
            r"instructions\.json: malformed instruction JSON",
        ),
        (
            lambda r: write_json(r / "instructions.json", {"a": 1}),
            r"instructions\.json: instruction JSON holds a dict",
        ),
        (
            lambda r: write_json(r / "instructions.json", [{"id": 1}]),
            r"instructions\.json: entry 0 has no event_data",
        ),
        (lambda r: write_json(r / "instructions.json", ["x"]), r"entry 0 is a str"),
        (
            lambda r: write_json(
                r / "instructions.json", [{"event_data": "nope/1.npy", "conversations": []}]
            ),
            r"entry 0: event_data 'nope/1.npy' not found under .* and no frames in video/nope/1/",
        ),
        (
            lambda r: write_json(r / "instructions.json", [{"event_data": "../x.npy", "conversations": []}]),
            r"must be a path inside the dataset folder",
        ),
        (
            lambda r: write_json(r / "instructions.json", [{"event_data": "synthetic/00000.npy"}]),
            r"entry 0 has no conversations list",
        ),
        (_no_human, r"i\.json: entry 0 has no human turn"),
    ],
)
def test_json_errors(synthetic_root: Path, tmp_path: Path, mutate, message: str) -> None:
    root = copy_of(synthetic_root, tmp_path)
    mutate(root)
    with pytest.raises(CaptureError, match=message) as info:
        FolderDataset(root)
    assert "\n" not in str(info.value)


def test_construction_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"missing: dataset folder not found"):
        FolderDataset(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CaptureError, match=r"file: dataset folder not found"):
        FolderDataset(tmp_path / "file")
    (tmp_path / "bare").mkdir()
    with pytest.raises(CaptureError, match=r"bare: neither event_npy/ nor video/ found"):
        FolderDataset(tmp_path / "bare")
    (tmp_path / "empty/event_npy/seq").mkdir(parents=True)
    (tmp_path / "empty/video").mkdir()
    with pytest.raises(CaptureError, match=r"empty: no clips found in event_npy/ or video/"):
        FolderDataset(tmp_path / "empty")
    (tmp_path / "nolist/event_npy").mkdir(parents=True)
    write_json(tmp_path / "nolist/q.json", [])
    with pytest.raises(CaptureError, match=r"nolist: no clips found in q\.json"):
        FolderDataset(tmp_path / "nolist")


def test_load_errors(synthetic_root: Path, tmp_path: Path) -> None:
    root = copy_of(synthetic_root, tmp_path)
    folder = FolderDataset(root)
    with pytest.raises(CaptureError, match=r"sample 2 out of range 0\.\.1"):
        folder.load(2, "image")
    with pytest.raises(CaptureError, match="unknown modality 'audio'"):
        folder.load(0, "audio")  # type: ignore[arg-type]
    (root / "video/synthetic/00000/000003.png").write_bytes(b"not a png")
    with pytest.raises(CaptureError, match=r"000003\.png: unreadable frame"):
        folder.load(0, "video")
