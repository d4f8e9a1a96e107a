"""A dataset folder in the layout of the EventGPT DSEC benchmarks (``my_egpt_dsec_seq_1s``).

```
<root>/event_npy/<seq>/<clip>.npy            events: EventGPT's pickled dict of x, y, t, p (+ metadata)
<root>/event_image/<seq>/<clip>_<i>.png      the events pre-rendered as 5 frames (i = 0..4)
<root>/event_image_1f/<seq>/<clip>_0.png     the events pre-rendered as 1 frame (all of them)
<root>/video/<seq>/<clip>/*.png              camera frames of the clip (1440x1080 in DSEC), name order
<root>/mp4/<seq>/<clip>.mp4                  the same frames as a video (read where video/ has none)
<root>/EventGPT_Instruction_Subset.json      [{id, event_data, video_data, mp4_data, event_image,
                                               event_image_1f, conversations}]
```

A folder may hold only some of these; each model reads only what its options name
(:class:`capture.data.sample.InputRequest`), so an events-only folder serves EventGPT and a
frames-only one the frame models.

Instruction files: ``EventGPT_Instruction_Subset.json`` and any other top-level JSON file that
is a list of instruction entries (objects with ``conversations``). Other JSON files, such as
the results the benchmark scripts leave in the folder, are skipped with one warning naming them.
Each entry is one sample (files in name order, entries in file order). Its paths are relative to
their folders (``event_data`` under ``event_npy/``, ``video_data`` under ``video/``,
``mp4_data`` under ``mp4/``, ``event_image`` / ``event_image_1f`` lists under their folders);
a path that starts with its folder's name, or an ``event_data`` relative to the root, works too.
Fields an entry lacks are found from its clip name where the files exist. The question is the
first ``human`` turn without ``<event>``; an empty one gets the default question. Without
instruction files, every clip found in any of the folders is a sample (sorted by
``<seq>/<clip>``), with the default question.

A bad entry, a missing file, or a file that resolves outside the folder (through ``..`` or a
symlink) is that sample's error, raised when the sample is loaded; the run goes on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from capture.data.events import check_events, load_event_file
from capture.data.frames import pick_indices, read_mp4_frames, read_rgb, same_size
from capture.data.sample import DEFAULT_PROMPT, InputRequest, RawSample
from capture.errors import CaptureError

EVENT_DIR = "event_npy"
EVENT_IMAGE_DIR = "event_image"
EVENT_IMAGE_1F_DIR = "event_image_1f"
VIDEO_DIR = "video"
MP4_DIR = "mp4"
FOLDERS = (EVENT_DIR, EVENT_IMAGE_DIR, EVENT_IMAGE_1F_DIR, VIDEO_DIR, MP4_DIR)
INSTRUCTION_FILE = "EventGPT_Instruction_Subset.json"
EVENT_PLACEHOLDER = "<event>"
EVENT_SUFFIXES = (".npy", ".npz")
# The placeholder with the whitespace around it: "<event>\nQ" -> "Q", "A <event> B" -> "A B".
_PLACEHOLDER_RE = re.compile(r"\s*" + re.escape(EVENT_PLACEHOLDER) + r"\s*")
# Pre-rendered event frames are named <clip>_<i>.png.
_EVENT_PNG_RE = re.compile(r"^(?P<clip>.+)_(?P<i>\d+)\.png$")
_MAX_NAMED = 5  # skipped files named in the warning


@dataclass(frozen=True)
class _Clip:
    """One sample: paths relative to the root (POSIX), or why a field cannot be used."""

    sample_id: str
    key: str  # "<seq>/<clip>", for messages
    question: str | None = None  # None: no question of its own (the default is used)
    event_file: str | None = None
    event_images: tuple[str, ...] = ()
    event_images_1f: tuple[str, ...] = ()
    video_dir: str | None = None
    mp4_file: str | None = None
    problems: dict[str, str] = field(default_factory=dict)  # field -> why it cannot be used
    error: str | None = None  # the whole entry is unusable


class FolderDataset:
    """Clips of an EventGPT-style DSEC folder; ``load`` reads exactly what a request names."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"folder:{self.root.resolve().as_posix()}"
        self.warnings: list[str] = []
        if not self.root.is_dir():
            raise CaptureError(f"{self.root}: dataset folder not found: pass an existing folder to --dataset")
        self._real_root = self.root.resolve()
        # (folder, seq) -> clip -> its event PNGs, filled as discovery reads the folders
        self._png_indexes: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
        instructions = self._instruction_files()
        if not instructions and not any((self.root / name).is_dir() for name in FOLDERS):
            raise CaptureError(
                f"{self.root}: none of {', '.join(f + '/' for f in FOLDERS)} found: expected the EventGPT "
                f"DSEC layout ({EVENT_DIR}/<seq>/<clip>.npy, {VIDEO_DIR}/<seq>/<clip>/*.png, ...)"
            )
        clips = self._clips_from_json(instructions) if instructions else self._clips_from_scan()
        if not clips:
            if instructions:
                names = ", ".join(path.name for path, _ in instructions)
                raise CaptureError(f"{self.root}: no samples: {names} hold no entries")
            raise CaptureError(f"{self.root}: no clips found in {', '.join(f + '/' for f in FOLDERS)}")
        self._clips = clips

    def __len__(self) -> int:
        return len(self._clips)

    def sample_id(self, index: int) -> str:
        return self._clip(index).sample_id

    # -- loading ------------------------------------------------------------------------------
    def load(self, index: int, request: InputRequest) -> RawSample:
        """Read clip ``index`` as ``request`` asks: camera frames (``video/`` PNGs, else the
        ``mp4/`` clip), pre-rendered event frames, or the event stream (drawn by the adapter)."""
        clip = self._clip(index)
        where = f"sample {clip.sample_id}"
        if clip.error:
            raise CaptureError(f"{where}: {clip.error}")
        question = request.question or clip.question or DEFAULT_PROMPT
        raw = RawSample(clip.sample_id, question, n_frames=request.n_frames, sensor_hw=request.sensor_hw)
        if request.source == "camera":
            raw.frames, raw.files = self._camera_frames(clip, request, where)
            return raw
        images = self._event_image_set(clip, request.n_frames)
        # auto: the PNGs where the clip has a whole set on disk, else the events (if any).
        complete = bool(images) and all((self.root / rel).is_file() for rel in images or ())
        has_events = clip.event_file is not None and (self.root / clip.event_file).is_file()
        auto_images = bool(images) and (complete or not has_events)
        if request.event_input == "image" or (request.event_input == "auto" and auto_images):
            if not images:
                raise CaptureError(
                    f"{where}: --event-input image needs {request.n_frames} pre-rendered event frame(s) "
                    f"of clip {clip.key}; {self._image_sets(clip)}: use --frames "
                    f"{len(clip.event_images) or 5} (or 1), or --event-input npy"
                )
            raw.frames = [read_rgb(self._inside(rel, where)) for rel in images]
            raw.files = list(images)
            return raw
        event_file = self._field(clip, "event_data", clip.event_file, where, f"{EVENT_DIR}/{clip.key}.npy")
        events = load_event_file(self._inside(event_file, where))
        check_events(events, request.sensor_hw, event_file)
        raw.events, raw.files = events, [event_file]
        return raw

    def _camera_frames(
        self, clip: _Clip, request: InputRequest, where: str
    ) -> tuple[list[np.ndarray], list[str]]:
        pngs = self._frame_files(clip, where)
        if pngs:
            picked = [pngs[i] for i in pick_indices(len(pngs), request.n_frames, request.pick)]
            frames = [read_rgb(self._inside(rel, where)) for rel in picked]
            same_size(frames, where)
            return frames, list(dict.fromkeys(picked))
        if clip.mp4_file is not None or "mp4_data" in clip.problems:
            mp4 = self._field(clip, "mp4_data", clip.mp4_file, where, f"{MP4_DIR}/{clip.key}.mp4")
            frames = read_mp4_frames(self._inside(mp4, where), request.n_frames, request.pick)
            same_size(frames, where)
            return frames, [mp4]
        if "video_data" in clip.problems:
            raise CaptureError(f"{where}: {clip.problems['video_data']}")
        raise CaptureError(
            f"{where}: clip {clip.key} has no camera frames (expected {VIDEO_DIR}/{clip.key}/*.png or "
            f"{MP4_DIR}/{clip.key}.mp4): use an event model or --image-source event, or add the frames"
        )

    def _frame_files(self, clip: _Clip, where: str) -> list[str]:
        """The clip's PNG frames in name order, relative to the root ([] without a frames folder)."""
        if clip.video_dir is None:
            return []
        folder = self._inside(clip.video_dir, where)
        if not folder.is_dir():
            return []
        names = sorted(path.name for path in folder.iterdir() if path.suffix.lower() == ".png")
        return [f"{clip.video_dir}/{name}" for name in names]

    @staticmethod
    def _event_image_set(clip: _Clip, n_frames: int) -> tuple[str, ...] | None:
        """The pre-rendered frames for ``n_frames``: event_image_1f/ for one frame (else a
        one-image event_image/), event_image/ when it holds exactly ``n_frames``."""
        if n_frames == 1 and len(clip.event_images_1f) == 1:
            return clip.event_images_1f
        if len(clip.event_images) == n_frames:
            return clip.event_images
        return None

    @staticmethod
    def _image_sets(clip: _Clip) -> str:
        return (
            f"{EVENT_IMAGE_DIR}/ has {len(clip.event_images)} for it and "
            f"{EVENT_IMAGE_1F_DIR}/ has {len(clip.event_images_1f)}"
        )

    @staticmethod
    def _field(clip: _Clip, name: str, value: str | None, where: str, expected: str) -> str:
        if value is not None:
            return value
        if name in clip.problems:
            raise CaptureError(f"{where}: {clip.problems[name]}")
        raise CaptureError(f"{where}: clip {clip.key} has no {name.split('_')[0]} file (expected {expected})")

    def _inside(self, rel: str, where: str) -> Path:
        """``root/rel`` if it resolves inside the dataset folder (symlinks followed), else CaptureError."""
        path = self.root / rel
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise CaptureError(f"{where}: {rel} cannot be resolved ({type(exc).__name__})") from None
        if not real.is_relative_to(self._real_root):
            raise CaptureError(f"{where}: {rel} resolves outside the dataset folder {self.root}: refused")
        return path

    def _clip(self, index: int) -> _Clip:
        if not 0 <= index < len(self._clips):
            raise CaptureError(f"{self.root}: sample {index} out of range 0..{len(self._clips) - 1}")
        return self._clips[index]

    # -- discovery ----------------------------------------------------------------------------
    def _instruction_files(self) -> list[tuple[Path, list[Any]]]:
        """The instruction lists among the top-level JSON files; the others go in one warning."""
        found: list[tuple[Path, list[Any]]] = []
        skipped: list[str] = []
        for path in sorted(p for p in self.root.glob("*.json") if p.is_file()):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
                reason = "nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
                if path.name == INSTRUCTION_FILE:
                    raise CaptureError(
                        f"{path}: unreadable instruction JSON ({reason}): expected a list of "
                        "{id, event_data, video_data, ..., conversations}"
                    ) from None
                skipped.append(f"{path.name} (unreadable: {reason})")
                continue
            if path.name == INSTRUCTION_FILE and not isinstance(data, list):
                raise CaptureError(
                    f"{path}: instruction JSON holds a {type(data).__name__}: expected a list of "
                    "{id, event_data, video_data, ..., conversations}"
                )
            if path.name == INSTRUCTION_FILE or _is_instruction_list(data):
                found.append((path, data))
            else:
                skipped.append(path.name)
        if skipped:
            shown = ", ".join(skipped[:_MAX_NAMED]) + (
                f" and {len(skipped) - _MAX_NAMED} more" if len(skipped) > _MAX_NAMED else ""
            )
            self.warnings.append(
                f"{self.root}: skipped {len(skipped)} JSON file(s) that are not lists of instruction "
                f"entries (benchmark results?): {shown}"
            )
        return found

    def _clips_from_json(self, instructions: list[tuple[Path, list[Any]]]) -> list[_Clip]:
        clips: list[_Clip] = []
        taken: set[str] = set()
        for json_path, entries in instructions:
            for k, entry in enumerate(entries):
                clip = self._clip_from_entry(f"{json_path.name} entry {k}", entry)
                # Repeated ids (one clip, several questions) get "#2", "#3", ... to stay unique.
                sample_id, n = clip.sample_id, 1
                while sample_id in taken:
                    n += 1
                    sample_id = f"{clip.sample_id}#{n}"
                taken.add(sample_id)
                clips.append(replace(clip, sample_id=sample_id))
        return clips

    def _clip_from_entry(self, where: str, entry: Any) -> _Clip:
        if not isinstance(entry, dict):
            return _Clip(where, where, error=f"{where} is a {type(entry).__name__}: expected an object")
        entry_id = str(entry["id"]) if entry.get("id") not in (None, "") else None
        problems: dict[str, str] = {}

        def path_of(name: str, folder: str, value: Any) -> str | None:
            try:
                return self._entry_path(name, folder, value)
            except _EntryError as exc:
                problems[name] = f"{where}: {exc}"
                return None

        event_file = path_of("event_data", EVENT_DIR, entry.get("event_data"))
        video_dir = path_of("video_data", VIDEO_DIR, entry.get("video_data"))
        mp4_file = path_of("mp4_data", MP4_DIR, entry.get("mp4_data"))
        lists = {}
        for name, folder in (("event_image", EVENT_IMAGE_DIR), ("event_image_1f", EVENT_IMAGE_1F_DIR)):
            value = entry.get(name)
            values = [value] if isinstance(value, str) else value
            if value is None:
                lists[name] = None
            elif not isinstance(values, list):
                problems[name] = f"{where}: {name} is a {type(value).__name__}: expected a list of paths"
                lists[name] = ()
            else:
                paths = [path_of(name, folder, v) for v in values]
                lists[name] = tuple(p for p in paths if p is not None) if name not in problems else ()
        key = _clip_key(event_file, video_dir, mp4_file, lists["event_image"] or lists["event_image_1f"])
        if key is None:
            error = next(iter(problems.values()), None) or (
                f"{where} names no input file (event_data, video_data, mp4_data, event_image)"
            )
            return _Clip(entry_id or where, where, error=error)
        # Fields the entry lacks come from the clip name, where those files exist.
        if event_file is None and "event_data" not in problems:
            event_file = self._find_event_file(key)
        if video_dir is None and "video_data" not in problems and (self.root / VIDEO_DIR / key).is_dir():
            video_dir = f"{VIDEO_DIR}/{key}"
        if mp4_file is None and "mp4_data" not in problems and (self.root / MP4_DIR / f"{key}.mp4").is_file():
            mp4_file = f"{MP4_DIR}/{key}.mp4"
        event_images = lists["event_image"]
        if event_images is None:
            event_images = self._find_event_images(EVENT_IMAGE_DIR, key)
        event_images_1f = lists["event_image_1f"]
        if event_images_1f is None:
            event_images_1f = self._find_event_images(EVENT_IMAGE_1F_DIR, key)
        question, error = _question(entry, where)
        return _Clip(
            entry_id or key,
            key,
            question=question,
            event_file=event_file,
            event_images=event_images,
            event_images_1f=event_images_1f,
            video_dir=video_dir,
            mp4_file=mp4_file,
            problems=problems,
            error=error,
        )

    def _entry_path(self, name: str, folder: str, value: Any) -> str | None:
        """An entry's path, relative to the root; None if absent. ``_EntryError`` says why a
        value cannot be a path inside the dataset folder."""
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise _EntryError(f"{name} {value!r} is not a path")
        rel = PurePosixPath(value.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise _EntryError(f"{name} {value!r} must be a path inside the dataset folder")
        if rel.parts and rel.parts[0] == folder:
            rel = PurePosixPath(*rel.parts[1:])
        if not rel.parts:
            raise _EntryError(f"{name} {value!r} names a folder, not a clip's file")
        under = f"{folder}/{rel.as_posix()}"
        if name == "event_data" and not (self.root / under).exists() and (self.root / rel).is_file():
            return rel.as_posix()  # relative to the root, as some instruction files have it
        return under

    def _find_event_file(self, key: str) -> str | None:
        for suffix in EVENT_SUFFIXES:
            rel = f"{EVENT_DIR}/{key}{suffix}"
            if (self.root / rel).is_file():
                return rel
        return None

    def _find_event_images(self, folder: str, key: str) -> tuple[str, ...]:
        seq, _, clip = key.rpartition("/")
        return self._event_png_index(folder, seq).get(clip, ())

    def _event_png_index(self, folder: str, seq: str) -> dict[str, tuple[str, ...]]:
        """``folder/seq``'s pre-rendered event frames, clip -> paths; read once per folder and seq."""
        index = self._png_indexes.get((folder, seq))
        if index is None:
            directory = self.root / folder / seq
            paths = directory.glob("*.png") if directory.is_dir() else ()
            index = self._png_indexes[(folder, seq)] = _event_png_index(folder, seq, paths)
        return index

    def _clips_from_scan(self) -> list[_Clip]:
        """Every clip in any of the folders (their union), each with the default question."""
        found: dict[str, dict[str, Any]] = {}

        def add(key: str, **fields: Any) -> None:
            found.setdefault(key, {}).update(fields)

        events = self.root / EVENT_DIR
        if events.is_dir():
            for suffix in reversed(EVENT_SUFFIXES):  # .npy wins over .npz for one clip
                for path in sorted(events.glob(f"*/*{suffix}")):
                    if path.is_file():
                        rel = f"{EVENT_DIR}/{path.parent.name}/{path.name}"
                        add(f"{path.parent.name}/{path.stem}", event_file=rel)
        video = self.root / VIDEO_DIR
        if video.is_dir():
            for path in video.glob("*/*"):
                if path.is_dir() and any(p.suffix.lower() == ".png" for p in path.iterdir()):
                    rel = f"{VIDEO_DIR}/{path.parent.name}/{path.name}"
                    add(f"{path.parent.name}/{path.name}", video_dir=rel)
        mp4 = self.root / MP4_DIR
        if mp4.is_dir():
            for path in mp4.glob("*/*.mp4"):
                add(f"{path.parent.name}/{path.stem}", mp4_file=f"{MP4_DIR}/{path.parent.name}/{path.name}")
        image_folders = ((EVENT_IMAGE_DIR, "event_images"), (EVENT_IMAGE_1F_DIR, "event_images_1f"))
        for folder, field_name in image_folders:
            base = self.root / folder
            if not base.is_dir():
                continue
            by_seq: dict[str, list[Path]] = {}
            for path in base.glob("*/*.png"):
                by_seq.setdefault(path.parent.name, []).append(path)
            for seq, paths in by_seq.items():
                index = self._png_indexes[(folder, seq)] = _event_png_index(folder, seq, paths)
                for clip, pngs in index.items():
                    add(f"{seq}/{clip}", **{field_name: pngs})
        return [_Clip(key, key, **found[key]) for key in sorted(found)]


class _EntryError(ValueError):
    """An instruction entry's field that cannot be used (the message says why)."""


def _event_png_index(folder: str, seq: str, paths: Iterable[Path]) -> dict[str, tuple[str, ...]]:
    """clip -> its ``<clip>_<i>.png`` files among ``paths`` (files of ``folder/seq``), relative
    to the root, in the order of ``i``."""
    prefix = f"{folder}/{seq}/" if seq else f"{folder}/"
    groups: dict[str, list[tuple[int, str]]] = {}
    for path in paths:
        match = _EVENT_PNG_RE.match(path.name)
        if match:
            groups.setdefault(match["clip"], []).append((int(match["i"]), prefix + path.name))
    return {clip: tuple(rel for _, rel in sorted(pngs)) for clip, pngs in groups.items()}


def _is_instruction_list(data: Any) -> bool:
    """A list of instruction entries: some entry is an object with ``conversations`` (the
    benchmarks' results files are lists of objects without it)."""
    return isinstance(data, list) and any(isinstance(e, dict) and "conversations" in e for e in data)


def _clip_key(
    event_file: str | None, video_dir: str | None, mp4_file: str | None, images: tuple[str, ...] | None
) -> str | None:
    """``<seq>/<clip>`` from whichever of an entry's paths it has."""
    if event_file is not None:
        rel = PurePosixPath(event_file)
        rel = PurePosixPath(*rel.parts[1:]) if rel.parts[0] == EVENT_DIR and len(rel.parts) > 1 else rel
        return rel.with_suffix("").as_posix()
    if video_dir is not None:
        return PurePosixPath(*PurePosixPath(video_dir).parts[1:]).as_posix() or None
    if mp4_file is not None:
        return PurePosixPath(*PurePosixPath(mp4_file).parts[1:]).with_suffix("").as_posix()
    if images:
        rel = PurePosixPath(*PurePosixPath(images[0]).parts[1:])
        match = _EVENT_PNG_RE.match(rel.name)
        return (rel.parent / (match["clip"] if match else rel.stem)).as_posix()
    return None


def _question(entry: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    """(question, error): the first human turn without ``<event>`` (None if it is empty)."""
    conversations = entry.get("conversations")
    if not isinstance(conversations, list):
        return None, f"{where} has no conversations list"
    for turn in conversations:
        if isinstance(turn, dict) and str(turn.get("from", "")).lower() == "human":
            value = turn.get("value")
            if value is None:
                return None, None
            if not isinstance(value, str):
                return None, f"{where}: the human turn's value is not text"
            return _PLACEHOLDER_RE.sub(" ", value).strip() or None, None
    return None, f"{where} has no human turn in conversations"
