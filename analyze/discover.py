"""Input paths -> runs: which trace files belong together, and what their run.json says.

A path is a trace file (``.json`` or ``.json.gz``), a run folder (trace files directly inside,
with or without a run.json), or a folder of run folders (searched recursively; ``analysis/``
output folders and hidden files are skipped). A trace file given on its own belongs to the run
of its folder. run_id is run.json's ``run_id``, else the folder's name.

A distributed capture (torchrun) leaves one manifest part per rank, ``run.rank-<R>.json``, until
rank 0 merges them into run.json at the end. Parts are never traces; when a run stopped before
the merge, its samples are read from run.json and the parts together, in rank order
(contract.part_paths, contract.merge_parts).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analyze.contract import (
    BUILDING_NAME,
    CATALOGUE_NAME,
    MANIFEST_NAME,
    ManifestError,
    RunManifest,
    decode_manifest,
    merge_parts,
    part_paths,
    part_rank,
)
from analyze.errors import AnalyzeError, first_line

MANIFEST = MANIFEST_NAME
OUTPUT_DIR = "analysis"
TRACE_SUFFIXES = (".json.gz", ".json")


@dataclass(frozen=True)
class RunInput:
    """One run: its folder, its trace files in order, and its manifest (None without run.json)."""

    run_id: str
    run_dir: Path
    traces: tuple[Path, ...]
    manifest: RunManifest | None


def is_trace_file(path: Path) -> bool:
    """A ``.json``/``.json.gz`` file that is not a manifest (or a rank's part of one), temporary
    or hidden file."""
    name = path.name
    return (
        name.endswith(TRACE_SUFFIXES)
        and name != MANIFEST
        and part_rank(name) is None
        and not name.startswith(".")
    )


def sample_id(path: Path) -> str:
    """The sample id of a trace file: its name without ``.json[.gz]`` and ``.pt.trace``."""
    name = path.name
    for suffix in TRACE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for suffix in (".pt.trace", ".trace"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_manifest(run_dir: Path) -> tuple[RunManifest | None, str | None]:
    """(run.json, None), or (None, a warning) when it is unreadable or invalid, or (None, None).

    Manifest parts of ranks that were never merged add their samples to run.json's."""
    path = run_dir / MANIFEST
    try:
        manifest = decode_manifest(path.read_bytes())
    except FileNotFoundError:
        return None, None
    except (OSError, ManifestError) as exc:
        return None, f"{path}: unreadable run.json ({first_line(exc)}); analysing the traces without it"
    parts, problems = [], []
    for part in part_paths(run_dir):
        try:
            parts.append(decode_manifest(part.read_bytes()))
        except (OSError, ManifestError) as exc:
            problems.append(f"{part}: unreadable manifest part ({first_line(exc)}); its samples are left out")
    if parts:
        merge_parts(manifest, parts)
    return manifest, "; ".join(problems) or None


def _trace_dirs(root: Path) -> dict[Path, list[Path]]:
    """Folders under ``root`` (itself included) that hold trace files, with their traces."""
    found: dict[Path, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if CATALOGUE_NAME in filenames or BUILDING_NAME in filenames:  # an analysis snapshot (any --out)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d != OUTPUT_DIR and not d.startswith("."))
        traces = sorted(Path(dirpath) / f for f in filenames if is_trace_file(Path(f)))
        if traces:
            found[Path(dirpath)] = traces
    return found


def discover(paths: Sequence[Path]) -> tuple[list[RunInput], list[str]]:
    """Group the trace files under ``paths`` into runs; returns (runs, warnings).

    Raises AnalyzeError for a missing path, or when a path holds no trace file.
    """
    if not paths:
        raise AnalyzeError("no input given: pass run folders or trace files")
    by_dir: dict[Path, list[Path]] = {}
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise AnalyzeError(f"{raw}: no such file or folder")
        if path.is_file():
            if not path.name.endswith(TRACE_SUFFIXES):
                raise AnalyzeError(f"{raw}: not a trace file (.json or .json.gz expected)")
            by_dir.setdefault(path.parent, []).append(path)
            continue
        found = _trace_dirs(path)
        if not found:
            raise AnalyzeError(f"{raw}: no trace files (.json or .json.gz) in this folder")
        for run_dir, traces in found.items():
            by_dir.setdefault(run_dir, []).extend(traces)

    runs: list[RunInput] = []
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for run_dir, traces in by_dir.items():
        manifest, problem = load_manifest(run_dir)
        if problem:
            warnings.append(problem)
        run_id = (manifest.run_id if manifest else "") or run_dir.name
        if run_id in seen:
            seen[run_id] += 1
            unique = f"{run_id}-{seen[run_id]}"
            warnings.append(f"{run_dir}: run_id {run_id!r} is used by another input; calling it {unique!r}")
            run_id = unique
        else:
            seen[run_id] = 1
        ordered = tuple(sorted(dict.fromkeys(traces)))
        runs.append(RunInput(run_id=run_id, run_dir=run_dir, traces=ordered, manifest=manifest))
    return runs, warnings
