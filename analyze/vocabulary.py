"""The stage-label vocabulary: the one contract between capture and analyze.

capture opens these names as ``record_function`` labels; analyze maps each label (or a
user's stage map) to the stage its events are attributed to. Kept free of torch so both
sides import it.
"""

from __future__ import annotations

import re

SAMPLE_PREFIX = "sample#"
LOAD = "stage1:load"
PREPROCESS = "stage2:preprocess"
VISION = "stage3:vision"
VISION_TOWER = "stage3:vision/tower"
VISION_PROJECTOR = "stage3:vision/projector"
VISION_AGGREGATE = "stage3:vision/aggregate"
GENERATE = "stage4:generate"
PREFILL = "stage4:prefill"
DECODE_PREFIX = "stage4:decode#"

# Stages that exist only in analysis: residuals and collapsed decode steps.
DECODE = "stage4:decode"
OTHER = "stage4:other"
UNLABELLED = "unlabelled"
UNATTRIBUTED = "unattributed"

VISION_PARTS = {"tower": VISION_TOWER, "projector": VISION_PROJECTOR, "aggregate": VISION_AGGREGATE}

# Display order of the stages in tables and the report.
STAGE_ORDER = (
    LOAD,
    PREPROCESS,
    VISION,
    VISION_TOWER,
    VISION_PROJECTOR,
    VISION_AGGREGATE,
    PREFILL,
    DECODE,
    OTHER,
    UNLABELLED,
    UNATTRIBUTED,
)

_LABEL_RE = re.compile(
    r"^(?:sample#\d+|stage1:load|stage2:preprocess|stage3:vision(?:/(?:tower|projector|aggregate))?"
    r"|stage4:generate|stage4:prefill|stage4:decode#\d+)$"
)
_SAMPLE_RE = re.compile(r"^sample#(\d+)$")
_DECODE_RE = re.compile(r"^stage4:decode#(\d+)$")


def sample_label(index: int) -> str:
    """Label of the outermost range of sample ``index``."""
    return f"{SAMPLE_PREFIX}{index}"


def decode_label(step: int) -> str:
    """Label of decode step ``step`` (1-based: step 0 is the prefill)."""
    if step < 1:
        raise ValueError(f"decode steps start at 1, got {step}")
    return f"{DECODE_PREFIX}{step}"


def step_label(step: int) -> str:
    """Label of generation step ``step``: 0 is the prefill, k >= 1 the k-th decode."""
    return PREFILL if step == 0 else decode_label(step)


def is_label(name: str) -> bool:
    """True when ``name`` is one of stagetrace's own labels."""
    return _LABEL_RE.match(name) is not None


def sample_index(name: str) -> int | None:
    """The sample index of a ``sample#<i>`` label, else None."""
    m = _SAMPLE_RE.match(name)
    return int(m.group(1)) if m else None


def decode_step(name: str) -> int | None:
    """The step of a ``stage4:decode#<k>`` label, 0 for the prefill, else None."""
    if name == PREFILL:
        return 0
    m = _DECODE_RE.match(name)
    return int(m.group(1)) if m else None


def attributed_stage(label: str | None) -> str:
    """The stage that work whose innermost label is ``label`` is attributed to.

    Work directly inside ``stage4:generate`` but outside every forward is ``stage4:other``;
    work inside only a ``sample#`` label, or no label, is ``unlabelled``; decode steps
    collapse into ``stage4:decode`` (per-step detail lives in the tokens table).
    """
    if label is None or label.startswith(SAMPLE_PREFIX):
        return UNLABELLED
    if label == GENERATE:
        return OTHER
    if label.startswith(DECODE_PREFIX):
        return DECODE
    return label


def is_vision_stage(stage: str) -> bool:
    """Vision encoding, including its finer parts."""
    return stage == VISION or stage.startswith(VISION + "/")


def is_llm_stage(stage: str) -> bool:
    """Language-model work: prefill, decode steps and generate()'s own work."""
    return stage in (PREFILL, DECODE, OTHER) or stage.startswith(DECODE_PREFIX)
