"""Checks on exported Chrome traces shared by the capture tests."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def load_trace(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def partial_overlaps(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of complete ("X") events on one thread that overlap without nesting.

    Perfetto's JSON importer drops such slices, so a trace must have none.
    """
    by_thread: dict[tuple[Any, Any], list[tuple[float, float, str]]] = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[(e.get("pid"), e.get("tid"))].append(
                (float(e["ts"]), float(e["ts"]) + float(e["dur"]), e["name"])
            )
    bad: list[tuple[str, str]] = []
    for slices in by_thread.values():
        slices.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[float, float, str]] = []
        for start, end, name in slices:
            while stack and stack[-1][1] <= start:
                stack.pop()
            if stack and end > stack[-1][1]:
                bad.append((stack[-1][2], name))
            stack.append((start, end, name))
    return bad


def labels_in_order(events: list[dict[str, Any]]) -> list[str]:
    """stagetrace's labels (user annotations) on the CPU, in start order."""
    from analyze.vocabulary import is_label

    labs = [
        e for e in events if e.get("ph") == "X" and e.get("cat") == "user_annotation" and is_label(e["name"])
    ]
    return [e["name"] for e in sorted(labs, key=lambda e: (float(e["ts"]), -float(e["dur"])))]
