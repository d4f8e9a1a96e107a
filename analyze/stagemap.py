"""Stage maps: user-named stages for traces that carry no stagetrace labels.

A stage map is an ordered list of ``NAME = REGEX``. A ``user_annotation`` event (what
``torch.profiler.record_function`` and Kineto's ``## name ##`` ranges produce) whose name
matches a REGEX (``re.search``; anchor it with ``^...$`` for an exact match) becomes a label of
stage NAME; the first matching entry wins. A stage map replaces the built-in vocabulary for the
runs it is given to. Without one, labels are stagetrace's own (analyze.vocabulary).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analyze import vocabulary as voc
from analyze.errors import AnalyzeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RESERVED = (voc.UNLABELLED, voc.UNATTRIBUTED)


@dataclass(frozen=True)
class StageMap:
    """Ordered (stage name, regex) pairs; the first regex that matches a label name wins."""

    stages: tuple[tuple[str, str], ...] = field(metadata={"help": "(NAME, REGEX) pairs in priority order"})
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise AnalyzeError("stage map is empty: give at least one NAME=REGEX")
        compiled = []
        for name, pattern in self.stages:
            if not name or name in RESERVED:
                raise AnalyzeError(f"stage map: invalid stage name {name!r} (reserved or empty)")
            try:
                compiled.append((name, re.compile(pattern)))
            except re.error as exc:
                raise AnalyzeError(f"stage map: bad regex {pattern!r} for stage {name!r} ({exc})") from None
        object.__setattr__(self, "_compiled", tuple(compiled))

    def stage_of(self, label: str) -> str | None:
        """The stage whose regex matches ``label`` first, or None."""
        for name, regex in self._compiled:
            if regex.search(label):
                return name
        return None

    def __add__(self, other: StageMap) -> StageMap:
        """Both maps, this one's entries first (they win on overlap)."""
        return StageMap(self.stages + other.stages)


def parse_stage_option(text: str) -> tuple[str, str]:
    """Split one ``--stage 'NAME=REGEX'`` option."""
    name, sep, pattern = text.partition("=")
    if not sep or not name.strip() or not pattern:
        raise AnalyzeError(f"--stage {text!r}: expected NAME=REGEX, e.g. --stage 'forward=## forward ##'")
    return name.strip(), pattern


def stage_map_from_options(options: Iterable[str]) -> StageMap:
    """A stage map from repeated ``--stage NAME=REGEX`` options."""
    return StageMap(tuple(parse_stage_option(o) for o in options))


def load_stage_map(path: Path) -> StageMap:
    """Read a TOML file with a ``[stages]`` table of ``NAME = "REGEX"``."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise AnalyzeError(f"{path}: cannot read stage map ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AnalyzeError(f"{path}: not valid TOML ({exc})") from None
    stages = doc.get("stages")
    if not isinstance(stages, dict) or not stages:
        raise AnalyzeError(f'{path}: needs a [stages] table of NAME = "REGEX" entries')
    bad = [k for k, v in stages.items() if not isinstance(v, str)]
    if bad:
        raise AnalyzeError(f"{path}: stage {bad[0]!r} must map to a regex string")
    return StageMap(tuple(stages.items()))


def combine(options: Sequence[str], path: Path | None) -> StageMap | None:
    """The stage map of the CLI: ``--stage`` options first, then the ``--stage-map`` file."""
    maps = []
    if options:
        maps.append(stage_map_from_options(options))
    if path is not None:
        maps.append(load_stage_map(path))
    if not maps:
        return None
    return maps[0] if len(maps) == 1 else maps[0] + maps[1]


def label_stage(name: str, stage_map: StageMap | None) -> str | None:
    """The stage that a ``user_annotation`` named ``name`` labels, or None if it is no label.

    With the built-in vocabulary ``sample#i`` maps to ``unlabelled``, ``stage4:generate`` to
    ``stage4:other`` and ``stage4:decode#k`` to ``stage4:decode`` (vocabulary.attributed_stage).
    """
    if stage_map is not None:
        return stage_map.stage_of(name)
    return voc.attributed_stage(name) if voc.is_label(name) else None
