"""A run folder and its run.json (schema: analyze.contract.RunManifest).

run.json is rewritten atomically after every sample, so a killed run leaves a manifest that
says exactly how far it got, and ``--resume`` continues from it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from analyze.contract import (
    MANIFEST_NAME,
    ManifestError,
    RunManifest,
    SampleOutcome,
    count_completed,
    decode_manifest,
    encode_manifest,
)
from analyze.errors import first_line
from analyze.files import write_bytes_atomic
from capture.errors import CaptureError


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """One run folder: its path and its manifest, saved with :meth:`save`."""

    def __init__(self, run_dir: Path, manifest: RunManifest, name: str = MANIFEST_NAME) -> None:
        self.run_dir = Path(run_dir)
        self.manifest = manifest
        self.name = name  # run.json, or a rank's part of it (run.rank-R.json) under torchrun

    @classmethod
    def create(cls, run_dir: Path, run_id: str, config: dict[str, object]) -> RunFolder:
        stamp = now_iso()
        return cls(run_dir, RunManifest(run_id=run_id, created=stamp, updated=stamp, config=config))

    @classmethod
    def open(cls, run_dir: Path) -> RunFolder:
        """Read, migrate and validate ``run_dir/run.json``; CaptureError names the bad field."""
        path = Path(run_dir) / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CaptureError(
                f"{path}: no run.json here; --resume needs a run folder made by capture"
            ) from None
        except OSError as exc:
            raise CaptureError(f"{path}: cannot read run.json ({first_line(exc)})") from None
        try:
            manifest = decode_manifest(data)
        except ManifestError as exc:
            raise CaptureError(f"{path}: invalid run.json: {exc}; start a new run instead") from None
        return cls(Path(run_dir), manifest)

    @property
    def samples(self) -> list[SampleOutcome]:
        return self.manifest.samples

    def is_done(self, index: int) -> bool:
        """Captured successfully, with its trace on disk."""
        s = self.manifest.sample(index)
        return bool(s and s.status == "ok" and (self.run_dir / s.trace).is_file())

    def record(self, outcome: SampleOutcome) -> None:
        """Add or replace the outcome of one sample, keeping samples ordered by index."""
        kept = [s for s in self.samples if s.index != outcome.index]
        self.manifest.samples = sorted([*kept, outcome], key=lambda s: s.index)
        self.manifest.completed = count_completed(self.manifest.samples)

    def save(self) -> None:
        """Rewrite run.json atomically; CaptureError (one line) when the disk refuses."""
        self.manifest.updated = now_iso()
        path = self.run_dir / self.name
        try:
            write_bytes_atomic(path, encode_manifest(self.manifest))
        except OSError as exc:
            raise CaptureError(
                f"{path}: cannot write {self.name} ({first_line(exc)}); the traces and run.json written "
                f"so far are intact: free space or fix permissions, then capture --resume {self.run_dir}"
            ) from None
