"""The checks capture reports in run.json: identical outputs, complete accounting, overhead.

1. identity: token ids with labels and profiler on equal those with both off;
2. accounting: in each exported trace the labels nest, every step of generate() has its label,
   and the stages' self times add up to the sample's wall time (analysed exactly as
   ``analyze`` would);
3. overhead: profiled vs unprofiled generate() wall time on the verified samples.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from pathlib import Path

from analyze.contract import (
    TIMING_SPREAD_LIMIT,
    AccountingCheck,
    IdentityCheck,
    Mismatch,
    OverheadCheck,
    SampleAccounting,
    SampleOutcome,
    TimingCheck,
)
from analyze.trace_tables import TraceTask, analyze_trace

# Self times are sums of microsecond-resolution spans: allow rounding, nothing more.
ACCOUNTING_TOLERANCE_MS = 0.01


def trace_summary(trace: Path, n_tokens: int) -> tuple[float | None, float | None, SampleAccounting]:
    """(TTFT ms, TPOT ms, accounting verdict) of one exported trace (``.json`` or ``.json.gz``).

    The trace is analysed by the function ``analyze`` runs on every trace (trace_tables.
    analyze_trace), without discovering its folder or reading its run.json.
    """
    tables = analyze_trace(
        TraceTask(
            path=Path(trace), run_id="", model="", sample_id="", order=0, manifest_index=None, stage_map=None
        )
    )
    sample = tables.samples.iloc[0]
    self_sum_ms = float(tables.stages["host_self_ms"].sum())
    total_ms = float(sample["total_ms"])
    steps = int(sample["tokens"])
    error_ms = abs(self_sum_ms - total_ms)
    verdict = SampleAccounting(
        ok=bool(error_ms <= ACCOUNTING_TOLERANCE_MS and steps == n_tokens),
        total_ms=round(total_ms, 3),
        stage_self_sum_ms=round(self_sum_ms, 3),
        error_ms=round(error_ms, 4),
        steps_labelled=steps,
        tokens=n_tokens,
    )
    return _num(sample["ttft_ms"]), _num(sample["tpot_ms"]), verdict


def identity(profiled: dict[int, list[int]], plain: dict[int, list[int]]) -> IdentityCheck:
    """Compare token ids sample by sample; ``ok`` is None when nothing was checked."""
    mismatches = [
        Mismatch(index=i, first_difference=_first_difference(profiled[i], plain[i]))
        for i in sorted(profiled)
        if profiled[i] != plain[i]
    ]
    return IdentityCheck(
        ok=(not mismatches) if profiled else None, checked=sorted(profiled), mismatches=mismatches
    )


def accounting(verdicts: dict[int, SampleAccounting]) -> AccountingCheck:
    """Every captured sample's accounting verdict (by sample index), folded into one."""
    bad = [i for i, v in sorted(verdicts.items()) if not v.ok]
    return AccountingCheck(
        ok=(not bad) if verdicts else None,
        checked=len(verdicts),
        failed=bad,
        max_error_ms=max((v.error_ms for v in verdicts.values()), default=None),
    )


def overhead(profiled_ms: list[float], plain_ms: list[float]) -> OverheadCheck:
    """Median profiled / median unprofiled generate() wall time."""
    if not profiled_ms or not plain_ms:
        return OverheadCheck()
    p, u = statistics.median(profiled_ms), statistics.median(plain_ms)
    return OverheadCheck(
        ratio=round(p / u, 4) if u > 0 else None,
        samples=len(profiled_ms),
        profiled_ms=round(p, 3),
        unprofiled_ms=round(u, 3),
    )


def timing(generate_ms: list[float], limit: float = TIMING_SPREAD_LIMIT) -> TimingCheck:
    """Is the spread of per-sample generate() times plausible? (max/median <= ``limit``).

    The same generate() swung 50x on a 2-core machine with one other busy process; a spread
    that large means host timings measure the machine's load, not the model."""
    if len(generate_ms) < 2:
        return TimingCheck(samples=len(generate_ms), limit=limit)
    median = statistics.median(generate_ms)
    ratio = max(generate_ms) / median if median > 0 else math.inf
    return TimingCheck(
        ok=ratio <= limit, max_over_median=round(ratio, 2), samples=len(generate_ms), limit=limit
    )


def sample_checks(samples: Iterable[SampleOutcome]) -> tuple[AccountingCheck, TimingCheck]:
    """(accounting, timing) over a run's samples captured successfully (status ok), as run.json
    reports them for one process and for the merged ranks of a distributed run alike."""
    ok = [s for s in samples if s.status == "ok"]
    return (
        accounting({s.index: s.accounting for s in ok if s.accounting is not None}),
        timing([s.wall_ms["generate"] for s in ok if "generate" in s.wall_ms]),
    )


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _num(x: object) -> float | None:
    value = float(x)  # type: ignore[arg-type]
    return None if math.isnan(value) else round(value, 4)
