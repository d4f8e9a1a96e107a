"""run.json: what a run was asked to do, where it ran, and how each sample went.

Rewritten atomically after every sample, so a killed run leaves a manifest that says exactly
how far it got and ``--resume`` can continue from it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from capture.errors import CaptureError

SCHEMA = "stagetrace.run/1"
MANIFEST = "run.json"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def trace_name(index: int) -> str:
    """File name of sample ``index``'s trace."""
    return f"sample-{index:05d}.pt.trace.json.gz"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RunManifest:
    """The run.json of one run folder."""

    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.data = data

    @classmethod
    def create(cls, run_dir: Path, run_id: str, config: dict[str, Any]) -> RunManifest:
        data = {
            "schema": SCHEMA,
            "run_id": run_id,
            "status": "running",
            "created": now_iso(),
            "updated": now_iso(),
            "config": config,
            "model": {},
            "env": {},
            "samples": [],
            "verification": {},
        }
        return cls(run_dir, data)

    @classmethod
    def load(cls, run_dir: Path) -> RunManifest:
        path = run_dir / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CaptureError(
                f"{path}: no run.json here; --resume needs a run folder made by capture"
            ) from None
        except (OSError, ValueError) as exc:
            raise CaptureError(f"{path}: unreadable run.json ({exc}); start a new run instead") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise CaptureError(f"{path}: not a stagetrace run manifest (schema {SCHEMA} expected)")
        return cls(run_dir, data)

    @property
    def samples(self) -> list[dict[str, Any]]:
        return self.data["samples"]  # type: ignore[no-any-return]

    def sample(self, index: int) -> dict[str, Any] | None:
        return next((s for s in self.samples if s["index"] == index), None)

    def is_done(self, index: int) -> bool:
        """Captured successfully, with its trace on disk."""
        s = self.sample(index)
        return bool(s and s.get("status") == "ok" and (self.run_dir / s["trace"]).exists())

    def record(self, outcome: dict[str, Any]) -> None:
        """Add or replace the outcome of one sample, keeping samples ordered by index."""
        kept = [s for s in self.samples if s["index"] != outcome["index"]]
        self.data["samples"] = sorted([*kept, outcome], key=lambda s: s["index"])

    def save(self) -> None:
        self.data["updated"] = now_iso()
        write_atomic(self.run_dir / MANIFEST, json.dumps(self.data, indent=1).encode())
