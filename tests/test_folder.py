"""A dataset folder in the layout of the EventGPT DSEC benchmarks: what each request reads,
instruction files and leftover results, partial folders, and bad input (one sample's error)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from capture.data.events import render_benchmark_event_image, save_eventgpt_npy, split_equal_count
from capture.data.folder import INSTRUCTION_FILE, FolderDataset
from capture.data.sample import DEFAULT_PROMPT, EVENT_DTYPE, InputRequest
from capture.data.synthetic import RESULTS_FILE, SyntheticDataset, write_synthetic_folder
from capture.errors import CaptureError

CAMERA_1 = InputRequest("camera", 1)
CAMERA_8 = InputRequest("camera", 8)
VIDEO_8 = InputRequest("camera", 8, pick="arange")
EVENTS_5 = InputRequest("events", 5)
EVENTS_1 = InputRequest("events", 1)


@pytest.fixture(scope="module")
def benchmark_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clips in the benchmarks' layout: 1440x1080 camera frames, mp4, event PNGs, JSONs."""
    return write_synthetic_folder(tmp_path_factory.mktemp("d") / "my_egpt_dsec_seq_1s", n_samples=2, seed=5)


def copy_of(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target, symlinks=True)
    return target


def small_events(x: list[int], y: list[int], p: list[int] | None = None) -> np.ndarray:
    events = np.zeros(len(x), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"] = x, y, np.arange(len(x))
    events["p"] = p if p is not None else [1] * len(x)
    return events


def write_frames(folder: Path, n: int, hw: tuple[int, int]) -> None:
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.full((*hw, 3), 10 * k, dtype=np.uint8)).save(folder / f"{k:03d}.png")


def write_json(path: Path, entries: object) -> None:
    path.write_text(json.dumps(entries), encoding="utf-8")


def entry(event_data: str | None = "synthetic/00000.npy", question: str = "", **fields: object) -> dict:
    out: dict = {"id": fields.pop("id", "e"), **fields}
    if event_data is not None:
        out["event_data"] = event_data
    out["conversations"] = [{"from": "human", "value": question}, {"from": "gpt", "value": ""}]
    return out


# --- the layout as the benchmarks' scripts write it --------------------------------------------


def test_synthetic_folder_has_the_benchmark_layout(benchmark_root: Path) -> None:
    files = sorted(p.relative_to(benchmark_root).as_posix() for p in benchmark_root.rglob("*") if p.is_file())
    assert [f for f in files if "synthetic/00001" in f] == [
        "event_image/synthetic/00001_0.png",
        "event_image/synthetic/00001_1.png",
        "event_image/synthetic/00001_2.png",
        "event_image/synthetic/00001_3.png",
        "event_image/synthetic/00001_4.png",
        "event_image_1f/synthetic/00001_0.png",
        "event_npy/synthetic/00001.npy",
        "mp4/synthetic/00001.mp4",
        *[f"video/synthetic/00001/{k:06d}.png" for k in range(8)],
    ]
    assert INSTRUCTION_FILE in files and RESULTS_FILE.format(n=2) in files
    entries = json.loads((benchmark_root / INSTRUCTION_FILE).read_text())
    assert entries[1] == {
        "id": "synthetic-00001",
        "split": "my_egpt_dsec_seq_1s",
        "event_data": "synthetic/00001.npy",
        "event_image": [f"synthetic/00001_{k}.png" for k in range(5)],
        "event_image_1f": ["synthetic/00001_0.png"],
        "video_data": "synthetic/00001",
        "mp4_data": "synthetic/00001.mp4",
        "conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": ""}],
    }
    with Image.open(benchmark_root / "video/synthetic/00001/000003.png") as image:
        assert image.size == (1440, 1080)
    # The event PNGs are the stored events drawn by the benchmarks' preprocessing rule.
    stored = np.load(benchmark_root / "event_npy/synthetic/00001.npy", allow_pickle=True).item()
    assert stored["num_events"] == len(stored["t"]) and stored["duration_ms"] == 50.0
    assert stored["t"].min() >= stored["time_start"] > 0  # absolute timestamps, as DSEC clips store
    chunks = split_equal_count(np.arange(len(stored["x"])), 5)
    for k, chunk in enumerate(chunks):
        png = np.array(Image.open(benchmark_root / f"event_image/synthetic/00001_{k}.png"))
        want = render_benchmark_event_image(stored["x"][chunk], stored["y"][chunk], stored["p"][chunk])
        assert np.array_equal(png, want)
    one = np.array(Image.open(benchmark_root / "event_image_1f/synthetic/00001_0.png"))
    assert np.array_equal(one, render_benchmark_event_image(stored["x"], stored["y"], stored["p"]))


def test_results_json_is_skipped_with_one_warning_and_empty_questions_get_the_default(
    benchmark_root: Path,
) -> None:
    folder = FolderDataset(benchmark_root)
    assert len(folder) == 2 and [folder.sample_id(i) for i in range(2)] == [
        "synthetic-00000",
        "synthetic-00001",
    ]
    assert len(folder.warnings) == 1
    assert RESULTS_FILE.format(n=2) in folder.warnings[0] and "skipped 1 JSON file" in folder.warnings[0]
    assert folder.load(0, CAMERA_1).prompt == DEFAULT_PROMPT == "What are the key elements in this scene?"
    override = InputRequest("camera", 1, question="What moves?")
    assert folder.load(0, override).prompt == "What moves?"


# --- each request reads exactly the files it names ----------------------------------------------


@pytest.mark.parametrize(
    ("request_", "files"),
    [
        (CAMERA_1, ["video/synthetic/00001/000004.png"]),  # LLaVA-1.5, one image: the middle frame
        (CAMERA_8, [f"video/synthetic/00001/{k:06d}.png" for k in range(8)]),
        (InputRequest("camera", 3), [f"video/synthetic/00001/{k:06d}.png" for k in (0, 3, 7)]),
        (InputRequest("camera", 3, pick="arange"), [f"video/synthetic/00001/{k:06d}.png" for k in (0, 2, 5)]),
        (EVENTS_5, [f"event_image/synthetic/00001_{k}.png" for k in range(5)]),  # auto: the PNGs
        (EVENTS_1, ["event_image_1f/synthetic/00001_0.png"]),
        (InputRequest("events", 3), ["event_npy/synthetic/00001.npy"]),  # no 3-PNG set: drawn
        (InputRequest("events", 5, event_input="npy"), ["event_npy/synthetic/00001.npy"]),
        (InputRequest("events", 1, event_input="image"), ["event_image_1f/synthetic/00001_0.png"]),
    ],
)
def test_each_request_reads_exactly_its_files(
    benchmark_root: Path, request_: InputRequest, files: list
) -> None:
    raw = FolderDataset(benchmark_root).load(1, request_)
    assert raw.files == files
    assert raw.n_frames == request_.n_frames
    if files[0].startswith("event_npy"):
        assert raw.events is not None and raw.frames == [] and raw.sensor_hw is None
    else:
        assert raw.events is None and len(raw.frames) == len(files)
    if files[0].startswith("video"):
        assert raw.frames[0].shape == (1080, 1440, 3)


def test_event_frames_from_pngs_and_from_npy(benchmark_root: Path) -> None:
    folder = FolderDataset(benchmark_root)
    source = SyntheticDataset(2, seed=5)
    drawn = folder.load(1, InputRequest("events", 5, event_input="npy"))
    _frames, events = source.clip(1)
    assert drawn.events is not None
    assert np.array_equal(drawn.events[["x", "y", "p"]], events[["x", "y", "p"]])
    pngs = folder.load(1, EVENTS_5)
    assert [f.shape for f in pngs.frames] == [(480, 640, 3)] * 5
    with pytest.raises(CaptureError, match=r"--event-input image needs 3 pre-rendered event frame\(s\)"):
        folder.load(1, InputRequest("events", 3, event_input="image"))


def test_mp4_is_decoded_where_video_frames_are_absent(benchmark_root: Path, tmp_path: Path) -> None:
    root = copy_of(benchmark_root, tmp_path)
    pngs = FolderDataset(root).load(0, VIDEO_8).frames
    shutil.rmtree(root / "video")
    raw = FolderDataset(root).load(0, VIDEO_8)
    assert raw.files == ["mp4/synthetic/00000.mp4"]
    assert len(raw.frames) == 8 and raw.frames[0].shape == (1080, 1440, 3)
    # H.264 at crf 28 is lossy: the same frames, within a few grey levels on average
    for decoded, png in zip(raw.frames, pngs, strict=True):
        assert np.abs(decoded.astype(int) - png.astype(int)).mean() < 8


# --- partial folders ---------------------------------------------------------------------------


def test_an_events_only_folder_serves_eventgpt_and_fails_frame_models_per_sample(
    benchmark_root: Path, tmp_path: Path
) -> None:
    root = copy_of(benchmark_root, tmp_path)
    for name in ("video", "mp4", "event_image", "event_image_1f"):
        shutil.rmtree(root / name)
    folder = FolderDataset(root)
    # The entry still lists its event PNGs, but they are gone: auto draws the events instead ...
    assert folder.load(0, EVENTS_5).files == ["event_npy/synthetic/00000.npy"]
    with pytest.raises(
        CaptureError, match=r"mp4/synthetic/00000\.mp4: video not found"  # the entry names it
    ):
        folder.load(0, CAMERA_1)
    # ... while --event-input image makes it that sample's error,
    with pytest.raises(CaptureError, match=r"event_image/synthetic/00000_0\.png: image not found"):
        folder.load(0, InputRequest("events", 5, event_input="image"))
    # and without the instruction file the clip has no camera frames at all.
    (root / INSTRUCTION_FILE).unlink()
    with pytest.raises(CaptureError, match=r"clip synthetic/00000 has no camera frames \(expected video/"):
        FolderDataset(root).load(0, CAMERA_1)
    assert FolderDataset(root).load(0, EVENTS_5).files == ["event_npy/synthetic/00000.npy"]


def test_a_frames_only_folder_without_json_serves_frame_models(tmp_path: Path) -> None:
    write_frames(tmp_path / "video/seq/a", 20, (12, 16))
    folder = FolderDataset(tmp_path)
    assert folder.warnings == [] and folder.sample_id(0) == "seq/a"
    raw = folder.load(0, VIDEO_8)
    assert [int(f[0, 0, 0]) for f in raw.frames] == [10 * k for k in (0, 2, 5, 7, 10, 12, 15, 17)]
    raw = folder.load(0, CAMERA_8)  # the benchmarks' LLaVA-1.5 rule
    assert [int(f[0, 0, 0]) for f in raw.frames] == [10 * k for k in (0, 2, 5, 8, 10, 13, 16, 19)]
    with pytest.raises(CaptureError, match=r"has no event file \(expected event_npy/seq/a\.npy\)"):
        folder.load(0, EVENTS_5)


def test_short_clips_repeat_frames_for_video_llava(tmp_path: Path) -> None:
    write_frames(tmp_path / "video/seq/a", 5, (4, 4))
    raw = FolderDataset(tmp_path).load(0, VIDEO_8)
    assert [int(f[0, 0, 0]) for f in raw.frames] == [0, 0, 10, 10, 20, 30, 30, 40]


def test_event_pngs_only_folder_without_json(tmp_path: Path) -> None:
    for k in range(5):
        (tmp_path / "event_image/seq").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((3, 4, 3), 50 * k, dtype=np.uint8)).save(
            tmp_path / f"event_image/seq/c_{k}.png"
        )
    Image.fromarray(np.zeros((3, 4, 3), dtype=np.uint8)).save(tmp_path / "event_image/seq/c_10.png")
    folder = FolderDataset(tmp_path)
    assert len(folder) == 1 and folder.sample_id(0) == "seq/c"
    raw = folder.load(0, InputRequest("events", 6))
    # ordered by the number after the underscore, not by name (10 after 4)
    assert raw.files == [f"event_image/seq/c_{k}.png" for k in (0, 1, 2, 3, 4, 10)]


def test_entries_without_event_image_fields_find_their_pngs(tmp_path: Path) -> None:
    """Entries lacking event_image/event_image_1f get their clip's <clip>_<i>.png files (in the
    order of i), and only theirs: not those of a clip whose name starts the same."""
    names = {
        # c's frames out of order, clips whose names start like c's, a glob-special name
        "event_image/seq": [
            *("c_10", "c_0", "c_1", "c_2", "c_3", "c_4"),
            *("c_x_0", "cc_0", "b[1]_1", "b[1]_0", "b1_0"),
        ],
        "event_image/other": ["c_0"],
        "event_image_1f/seq": ["c_0", "b[1]_0"],
        "event_image": ["top_0", "top_1"],
    }
    for folder, stems in names.items():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            Image.fromarray(np.zeros((3, 4, 3), dtype=np.uint8)).save(tmp_path / folder / f"{stem}.png")
    (tmp_path / "event_image/seq/c_.png").touch()  # no number: not a frame
    (tmp_path / "event_image/seq/c_5.jpg").touch()
    write_json(
        tmp_path / INSTRUCTION_FILE,
        [
            entry("seq/c.npy", id="c"),
            entry("seq/b[1].npy", id="b"),
            entry("top.npy", id="top"),
            entry("seq/none.npy", id="none"),
            entry("seq/c.npy", id="listed", event_image=["seq/c_1.png"], event_image_1f=[]),
        ],
    )
    folder = FolderDataset(tmp_path)
    assert folder.load(0, InputRequest("events", 6, event_input="image")).files == [
        f"event_image/seq/c_{k}.png" for k in (0, 1, 2, 3, 4, 10)
    ]
    one = InputRequest("events", 1, event_input="image")
    assert folder.load(0, one).files == ["event_image_1f/seq/c_0.png"]
    assert folder.load(1, InputRequest("events", 2, event_input="image")).files == [
        "event_image/seq/b[1]_0.png",
        "event_image/seq/b[1]_1.png",
    ]
    assert folder.load(1, one).files == ["event_image_1f/seq/b[1]_0.png"]
    assert folder.load(2, InputRequest("events", 2, event_input="image")).files == [
        "event_image/top_0.png",
        "event_image/top_1.png",
    ]
    with pytest.raises(CaptureError, match=r"event_image/ has 0 for it and event_image_1f/ has 0"):
        folder.load(3, InputRequest("events", 5, event_input="image"))
    # A listed field is used as it is; only a missing one is looked up.
    assert folder.load(4, one).files == ["event_image/seq/c_1.png"]


# --- .npz and the folder scan (issue 10: npz clips were ignored without instruction JSON) -------


def test_scan_finds_npz_clips_alone_and_beside_npy(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=[1, 2], y=[0, 1], t=[0, 5], p=[1, 0])
    (tmp_path / "event_npy/seq").mkdir(parents=True)
    shutil.copy(tmp_path / "a.npz", tmp_path / "event_npy/seq/only_npz.npz")
    folder = FolderDataset(tmp_path)
    assert [folder.sample_id(i) for i in range(len(folder))] == ["seq/only_npz"]
    assert folder.load(0, EVENTS_1).events.tolist() == [(1, 0, 0, 1), (2, 1, 5, 0)]  # type: ignore[union-attr]
    save_eventgpt_npy(tmp_path / "event_npy/seq/b.npy", small_events([1], [1]))
    (tmp_path / "event_npy/zzz").mkdir()
    shutil.copy(tmp_path / "a.npz", tmp_path / "event_npy/zzz/c.npz")
    folder = FolderDataset(tmp_path)
    assert [folder.sample_id(i) for i in range(len(folder))] == ["seq/b", "seq/only_npz", "zzz/c"]
    assert folder.load(2, EVENTS_1).files == ["event_npy/zzz/c.npz"]


def test_scan_without_json_is_the_union_sorted(benchmark_root: Path, tmp_path: Path) -> None:
    root = copy_of(benchmark_root, tmp_path)
    (root / INSTRUCTION_FILE).unlink()
    save_eventgpt_npy(root / "event_npy/aaa/events_only.npy", small_events([1], [1]))
    write_frames(root / "video/zzz/frames_only", 3, (4, 6))
    (root / "video/zzz/empty").mkdir()  # no PNGs: not a clip
    folder = FolderDataset(root)
    ids = [folder.sample_id(i) for i in range(len(folder))]
    assert ids == ["aaa/events_only", "synthetic/00000", "synthetic/00001", "zzz/frames_only"]
    assert len(folder.warnings) == 1  # the results JSON
    assert folder.load(1, EVENTS_5).files[0] == "event_image/synthetic/00000_0.png"
    assert folder.load(3, CAMERA_1).frames[0].shape == (4, 6, 3)


# --- instruction files -------------------------------------------------------------------------


def test_other_instruction_lists_are_read_and_other_json_skipped(
    benchmark_root: Path, tmp_path: Path
) -> None:
    root = copy_of(benchmark_root, tmp_path)
    (root / INSTRUCTION_FILE).unlink()
    write_json(
        root / "b_questions.json",
        [
            entry("synthetic/00001.npy", "  <event>\nWhat moves?\n", id="q"),
            entry("event_npy/synthetic/00000.npy", "Describe <event> the scene.", id="q"),
            entry(None, "Why?", id="", video_data="synthetic/00001"),
        ],
    )
    write_json(root / "a_config.json", {"config": {"n": 1}})  # a dict: results of another script
    (root / "c_broken.json").write_text("[{")
    folder = FolderDataset(root)
    assert [folder.sample_id(i) for i in range(3)] == ["q", "q#2", "synthetic/00001"]
    assert [folder.load(i, CAMERA_1).prompt for i in range(3)] == [
        "What moves?",
        "Describe the scene.",
        "Why?",
    ]
    (warning,) = folder.warnings
    for name in ("a_config.json", "c_broken.json (unreadable: JSONDecodeError)", RESULTS_FILE.format(n=2)):
        assert name in warning
    assert "skipped 3 JSON file(s)" in warning
    # Both event_data spellings reach the same file; a video-only entry finds its clip's files.
    assert folder.load(1, EVENTS_1).files == ["event_image_1f/synthetic/00000_0.png"]
    assert folder.load(2, EVENTS_5).files == [f"event_image/synthetic/00001_{k}.png" for k in range(5)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", r"no samples: EventGPT_Instruction_Subset\.json hold no entries"),
        ("[{", r"EventGPT_Instruction_Subset\.json: unreadable instruction JSON \(JSONDecodeError\)"),
        ('{"a": 1}', r"EventGPT_Instruction_Subset\.json: instruction JSON holds a dict"),
        ("[" * 200_000 + "]" * 200_000, r"unreadable instruction JSON \(nested too deeply\)"),
    ],
)
def test_a_bad_instruction_file_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "event_npy").mkdir()
    (tmp_path / INSTRUCTION_FILE).write_text(content)
    with pytest.raises(CaptureError, match=message) as info:
        FolderDataset(tmp_path)
    assert "\n" not in str(info.value)


def test_a_deeply_nested_results_file_is_skipped(benchmark_root: Path, tmp_path: Path) -> None:
    root = copy_of(benchmark_root, tmp_path)
    (root / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    folder = FolderDataset(root)
    assert len(folder) == 2 and "deep.json (unreadable: nested too deeply)" in folder.warnings[0]


def _bad_entries(root: Path) -> list:
    outside = root.parent / "outside.npy"
    save_eventgpt_npy(outside, small_events([1], [1]))
    return [
        entry("synthetic/00000.npy", id="good"),
        entry(".", id="dot"),  # issue 10: these three crashed the start-up with ValueError
        entry("event_npy", id="bare"),
        entry("event_npy/", id="slash"),
        entry("../outside.npy", id="parent"),
        entry("/etc/passwd", id="absolute"),
        entry("synthetic/nope.npy", id="missing"),
        "just a string",
        {"id": "noconv", "event_data": "synthetic/00001.npy"},
        entry(None, id="nothing"),
        entry("synthetic/00001.npy", id="pngs", event_image=["synthetic/00001_0.png", "synthetic/gone.png"]),
        entry(None, id="video_dot", video_data="."),
    ]


@pytest.mark.parametrize(
    ("index", "request_", "message"),
    [
        (1, EVENTS_1, r"sample dot: .*entry 1: event_data '\.' names a folder, not a clip's file"),
        (2, EVENTS_1, r"entry 2: event_data 'event_npy' names a folder"),
        (3, EVENTS_1, r"entry 3: event_data 'event_npy/' names a folder"),
        (4, EVENTS_1, r"event_data '\.\./outside\.npy' must be a path inside the dataset folder"),
        (5, EVENTS_1, r"event_data '/etc/passwd' must be a path inside the dataset folder"),
        (6, EVENTS_1, r"event_npy/synthetic/nope\.npy: event file not found"),
        (7, EVENTS_1, r"entry 7 is a str: expected an object"),
        (8, EVENTS_1, r"entry 8 has no conversations list"),
        (9, EVENTS_1, r"entry 9 names no input file"),
        (
            10,
            InputRequest("events", 2, event_input="image"),
            r"event_image/synthetic/gone\.png: image not found",
        ),
        (11, CAMERA_1, r"entry 11: video_data '\.' names a folder"),
    ],
)
def test_bad_entries_are_that_samples_error(
    benchmark_root: Path, tmp_path: Path, index: int, request_: InputRequest, message: str
) -> None:
    root = copy_of(benchmark_root, tmp_path)
    write_json(root / INSTRUCTION_FILE, _bad_entries(root))
    folder = FolderDataset(root)  # the run can start
    assert len(folder) == 12
    assert folder.load(0, EVENTS_1).files == ["event_image_1f/synthetic/00000_0.png"]
    with pytest.raises(CaptureError, match=message) as info:
        folder.load(index, request_)
    assert "\n" not in str(info.value)


def test_other_fields_of_a_partly_bad_entry_still_work(benchmark_root: Path, tmp_path: Path) -> None:
    root = copy_of(benchmark_root, tmp_path)
    write_json(root / INSTRUCTION_FILE, _bad_entries(root))
    folder = FolderDataset(root)
    # "pngs": its event_image list has a missing file; its camera frames and events are fine.
    assert folder.load(10, CAMERA_1).files == ["video/synthetic/00001/000004.png"]
    assert folder.load(10, InputRequest("events", 2)).files == ["event_npy/synthetic/00001.npy"]


# --- symlinks (issue 10: the path check looked only at the path's text) -------------------------


def test_a_symlink_out_of_the_folder_is_that_samples_error_and_no_content_is_quoted(
    benchmark_root: Path, tmp_path: Path
) -> None:
    root = copy_of(benchmark_root, tmp_path)
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    victim = root / "event_npy/synthetic/00001.npy"
    victim.unlink()
    os.symlink(secret, victim)
    frame = root / "video/synthetic/00000/000004.png"
    frame.unlink()
    os.symlink(secret, frame)
    (root / "event_npy/linked").symlink_to(tmp_path, target_is_directory=True)  # a linked folder
    folder = FolderDataset(root)
    request = InputRequest("events", 5, event_input="npy")
    assert folder.load(0, request).files == ["event_npy/synthetic/00000.npy"]
    for index, req, rel in ((1, request, victim), (0, CAMERA_1, frame)):
        with pytest.raises(CaptureError, match="resolves outside the dataset folder") as info:
            folder.load(index, req)
        assert str(rel.relative_to(root)) in str(info.value) and "root:x" not in str(info.value)
    # A symlink that stays inside the folder is fine.
    victim.unlink()
    os.symlink(root / "event_npy/synthetic/00000.npy", victim)
    assert folder.load(1, request).events is not None


def test_construction_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"missing: dataset folder not found"):
        FolderDataset(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CaptureError, match=r"file: dataset folder not found"):
        FolderDataset(tmp_path / "file")
    (tmp_path / "bare").mkdir()
    with pytest.raises(CaptureError, match=r"bare: none of event_npy/, event_image/.* found"):
        FolderDataset(tmp_path / "bare")
    (tmp_path / "empty/event_npy/seq").mkdir(parents=True)
    (tmp_path / "empty/video").mkdir()
    with pytest.raises(CaptureError, match=r"empty: no clips found in event_npy/, event_image/"):
        FolderDataset(tmp_path / "empty")


def test_load_errors(benchmark_root: Path, tmp_path: Path) -> None:
    root = copy_of(benchmark_root, tmp_path)
    folder = FolderDataset(root)
    with pytest.raises(CaptureError, match=r"sample 2 out of range 0\.\.1"):
        folder.load(2, CAMERA_1)
    (root / "video/synthetic/00000/000004.png").write_bytes(b"not a png")
    with pytest.raises(CaptureError, match=r"000004\.png: unreadable image \(UnidentifiedImageError\)"):
        folder.load(0, CAMERA_1)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(root / "video/synthetic/00001/000009.png")
    with pytest.raises(CaptureError, match=r"frames differ in size"):
        folder.load(1, CAMERA_8)
