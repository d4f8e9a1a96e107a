"""A dataset folder in the layout of the EventGPT DSEC benchmarks.

```
<root>/event_npy/<sequence>/<clip>.npy     events (EventGPT's pickled dict of x, y, t, p)
<root>/video/<sequence>/<clip>/*.png       frames of the same clip, in name order
<root>/*.json (optional)                   [{id, event_data, conversations: [{from, value}]}]
```

With instruction JSON files, the samples are their entries (files in name order, entries in
file order) and the prompt is the first ``human`` turn without EventGPT's ``<event>``
placeholder (each adapter inserts its own). ``event_data`` may be relative to ``<root>``
(``event_npy/seq/clip.npy``) or to ``<root>/event_npy`` (``seq/clip.npy``, as EventGPT's own
loader joins it): a path that starts with ``event_npy/`` is read from ``<root>``, any other is
looked up in ``event_npy/`` first, then in ``<root>``. The clip's frames are
``video/<seq>/<clip>/`` for the same ``<seq>/<clip>``. Without JSON, the samples are every
clip found under ``event_npy/`` and ``video/`` (their union, sorted by ``<sequence>/<clip>``),
each with the default prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from capture.data.events import check_events, load_event_file
from capture.data.sample import DEFAULT_PROMPT, DSEC_HEIGHT, DSEC_WIDTH, Modality, RawSample
from capture.errors import CaptureError

EVENT_DIR = "event_npy"
VIDEO_DIR = "video"
EVENT_PLACEHOLDER = "<event>"
# The placeholder with the whitespace around it: "<event>\nQ" -> "Q", "A <event> B" -> "A B".
_PLACEHOLDER_RE = re.compile(r"\s*" + re.escape(EVENT_PLACEHOLDER) + r"\s*")


@dataclass(frozen=True)
class _Clip:
    sample_id: str
    key: str  # "<sequence>/<clip>"
    event_path: Path | None
    frame_dir: Path | None
    prompt: str


class FolderDataset:
    """Clips of an EventGPT-style DSEC folder; ``load`` reads events, frames or one frame."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"folder:{self.root.resolve().as_posix()}"
        if not self.root.is_dir():
            raise CaptureError(f"{self.root}: dataset folder not found: pass an existing folder to --dataset")
        self._event_dir = self.root / EVENT_DIR
        self._video_dir = self.root / VIDEO_DIR
        if not self._event_dir.is_dir() and not self._video_dir.is_dir():
            raise CaptureError(
                f"{self.root}: neither {EVENT_DIR}/ nor {VIDEO_DIR}/ found: expected the EventGPT DSEC "
                f"layout {EVENT_DIR}/<sequence>/<clip>.npy and {VIDEO_DIR}/<sequence>/<clip>/*.png"
            )
        json_files = sorted(path for path in self.root.glob("*.json") if path.is_file())
        clips = self._clips_from_json(json_files) if json_files else self._clips_from_scan()
        if not clips:
            where = ", ".join(path.name for path in json_files) or f"{EVENT_DIR}/ or {VIDEO_DIR}/"
            raise CaptureError(f"{self.root}: no clips found in {where}")
        self._clips = clips

    def __len__(self) -> int:
        return len(self._clips)

    def sample_id(self, index: int) -> str:
        return self._clip(index).sample_id

    def load(self, index: int, modality: Modality) -> RawSample:
        """Read clip ``index``: ``events`` -> its event file (sensor size from its frames if any,
        else DSEC 480x640), ``video`` -> all its frames, ``image`` -> its middle frame."""
        clip = self._clip(index)
        if modality == "events":
            if clip.event_path is None:
                raise CaptureError(
                    f"{self.root}: clip {clip.key} has no event file in {EVENT_DIR}/ "
                    f"(expected {EVENT_DIR}/{clip.key}.npy): use a frame model or add the events"
                )
            events = load_event_file(clip.event_path)
            frame_files = _frame_files(clip.frame_dir)
            sensor_hw = _image_hw(frame_files[0]) if frame_files else (DSEC_HEIGHT, DSEC_WIDTH)
            check_events(events, sensor_hw, str(clip.event_path))
            return RawSample(clip.sample_id, clip.prompt, frames=[], events=events, sensor_hw=sensor_hw)
        if modality not in ("image", "video"):
            raise CaptureError(f"{self.root}: unknown modality {modality!r}: expected image, video or events")
        frame_files = _frame_files(clip.frame_dir)
        if not frame_files:
            raise CaptureError(
                f"{self.root}: clip {clip.key} has no frames in {VIDEO_DIR}/ "
                f"(expected {VIDEO_DIR}/{clip.key}/*.png): use an event model or add the frames"
            )
        if modality == "image":
            frame_files = [frame_files[len(frame_files) // 2]]
        frames = [_read_rgb(path) for path in frame_files]
        sizes = {frame.shape[:2] for frame in frames}
        if len(sizes) > 1:
            raise CaptureError(f"{clip.frame_dir}: frames differ in size {sorted(sizes)}: one clip, one size")
        height, width = frames[0].shape[:2]
        return RawSample(clip.sample_id, clip.prompt, frames=frames, sensor_hw=(height, width))

    def _clip(self, index: int) -> _Clip:
        if not 0 <= index < len(self._clips):
            raise CaptureError(f"{self.root}: sample {index} out of range 0..{len(self._clips) - 1}")
        return self._clips[index]

    def _clips_from_scan(self) -> list[_Clip]:
        event_files: dict[str, Path] = {}
        if self._event_dir.is_dir():
            for path in self._event_dir.glob("*/*.npy"):
                if path.is_file():
                    event_files[f"{path.parent.name}/{path.stem}"] = path
        frame_dirs: dict[str, Path] = {}
        if self._video_dir.is_dir():
            for path in self._video_dir.glob("*/*"):
                if path.is_dir() and _frame_files(path):
                    frame_dirs[f"{path.parent.name}/{path.name}"] = path
        return [
            _Clip(key, key, event_files.get(key), frame_dirs.get(key), DEFAULT_PROMPT)
            for key in sorted(event_files.keys() | frame_dirs.keys())
        ]

    def _clips_from_json(self, json_files: list[Path]) -> list[_Clip]:
        clips: list[_Clip] = []
        taken: set[str] = set()
        for json_path in json_files:
            for k, entry in enumerate(_read_instructions(json_path)):
                clip = self._clip_from_entry(json_path, k, entry)
                # Repeated ids (one clip, several questions) get "#2", "#3", ... to stay unique.
                sample_id, n = clip.sample_id, 1
                while sample_id in taken:
                    n += 1
                    sample_id = f"{clip.sample_id}#{n}"
                taken.add(sample_id)
                clips.append(replace(clip, sample_id=sample_id))
        return clips

    def _clip_from_entry(self, json_path: Path, k: int, entry: Any) -> _Clip:
        where = f"{json_path}: entry {k}"
        if not isinstance(entry, dict):
            raise CaptureError(f"{where} is a {type(entry).__name__}: expected an object with event_data")
        event_data = entry.get("event_data")
        if not isinstance(event_data, str) or not event_data:
            raise CaptureError(f"{where} has no event_data path")
        rel = PurePosixPath(event_data.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise CaptureError(f"{where}: event_data {event_data!r} must be a path inside the dataset folder")
        if rel.parts and rel.parts[0] == EVENT_DIR:
            rel = PurePosixPath(*rel.parts[1:])
        # Root-relative ("event_npy/seq/clip.npy") was reduced above; what is left is event_npy-relative.
        key = rel.with_suffix("").as_posix()
        event_path = self._event_dir / rel
        if not event_path.is_file():
            direct = self.root / PurePosixPath(event_data.replace("\\", "/"))
            event_path = direct if direct.is_file() else None
        frame_dir = self._video_dir / key
        frame_dir = frame_dir if frame_dir.is_dir() and _frame_files(frame_dir) else None
        if event_path is None and frame_dir is None:
            raise CaptureError(
                f"{where}: event_data {event_data!r} not found under {self.root} or {self._event_dir}, "
                f"and no frames in {VIDEO_DIR}/{key}/"
            )
        sample_id = str(entry["id"]) if entry.get("id") not in (None, "") else key
        return _Clip(sample_id, key, event_path, frame_dir, _prompt(entry, where))


def _read_instructions(json_path: Path) -> list[Any]:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptureError(
            f"{json_path}: malformed instruction JSON ({exc}): expected a list of "
            "{id, event_data, conversations}"
        ) from None
    if not isinstance(data, list):
        raise CaptureError(
            f"{json_path}: instruction JSON holds a {type(data).__name__}: expected a list of "
            "{id, event_data, conversations}"
        )
    return data


def _prompt(entry: dict[str, Any], where: str) -> str:
    """The first human turn without ``<event>`` (and the whitespace around it); the default
    prompt if nothing is left."""
    conversations = entry.get("conversations")
    if not isinstance(conversations, list):
        raise CaptureError(f"{where} has no conversations list")
    for turn in conversations:
        if isinstance(turn, dict) and str(turn.get("from", "")).lower() == "human":
            value = turn.get("value")
            if not isinstance(value, str):
                raise CaptureError(f"{where}: the human turn's value is not text")
            text = _PLACEHOLDER_RE.sub(" ", value).strip()
            return text or DEFAULT_PROMPT
    raise CaptureError(f"{where} has no human turn in conversations")


def _frame_files(frame_dir: Path | None) -> list[Path]:
    if frame_dir is None:
        return []
    return sorted((path for path in frame_dir.glob("*.png") if path.is_file()), key=lambda path: path.name)


def _image_hw(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise CaptureError(f"{path}: unreadable frame ({exc})") from None
    return height, width


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise CaptureError(f"{path}: unreadable frame ({exc})") from None
