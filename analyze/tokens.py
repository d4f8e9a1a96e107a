"""Per-token latency on the device timeline.

Generation step k is the label ``stage4:prefill`` (k = 0) or ``stage4:decode#k``. Its token is
emitted when the last device event launched inside the step's label interval ends (nested
vision work included); where the step launched no device work (CPU traces) it is the label's
host end. Latency of step k = its emission minus step k-1's; for step 0 it is the TTFT, the
emission minus the start of ``stage4:generate``. Steps are found by their label names whatever
stage map is in use, since they are structural, not stages.

Each step also gets its verdict and evidence (:mod:`analyze.bound`): its launch calls are the
ones made inside its label, its device work the events launched there (the same assignment that
times the token).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyze import bound
from analyze import vocabulary as voc
from analyze.attribute import Attribution
from analyze.contract import TABLE_SCHEMAS
from analyze.parse import Trace

# The tokens table's own columns: its schema less the run/sample keys and the model.
TOKEN_COLUMNS = tuple(c for c in TABLE_SCHEMAS["tokens"] if c not in ("run_id", "sample_id", "model"))


def generate_span_us(attr: Attribution) -> tuple[float, float] | None:
    """(start, end) of the first ``stage4:generate`` label, or None."""
    gen = attr.annotations[attr.annotations["name"] == voc.GENERATE]
    if gen.empty:
        return None
    first = gen.loc[gen["start_us"].idxmin()]
    return float(first["start_us"]), float(first["end_us"])


def locate_steps(
    start: np.ndarray, end: np.ndarray, thread: np.ndarray, q_thread: np.ndarray, q_ts: np.ndarray
) -> np.ndarray:
    """For each host point (q_thread, q_ts), the step (row of start/end/thread) whose label
    contains it on the same thread, or -1. Steps do not overlap one another."""
    by_start = np.argsort(start, kind="stable")
    pos = np.searchsorted(start[by_start], q_ts, side="right") - 1
    k = by_start[np.maximum(pos, 0)]
    inside = (pos >= 0) & (q_ts < end[k]) & (q_thread == thread[k])
    return np.where(inside, k, -1)


def token_steps(
    trace: Trace, attr: Attribution, act: bound.Activity | None = None
) -> tuple[pd.DataFrame, bool]:
    """One row per generation step (TOKEN_COLUMNS) and whether emissions used the device.

    Times are relative to the start of ``stage4:generate`` (else of the first step, and then
    step 0 has no latency since there is no TTFT without the generate label). ``act``: the
    trace's :func:`bound.activity`, if already computed.
    """
    ann = attr.annotations
    names = ann["name"].unique()
    step_of = {n: voc.decode_step(n) for n in names}
    step = ann["name"].map(step_of)
    steps = ann[step.notna()].assign(step=step[step.notna()].astype(np.int64))
    if steps.empty:
        schema = TABLE_SCHEMAS["tokens"]
        return pd.DataFrame({c: pd.Series(dtype=schema[c]) for c in TOKEN_COLUMNS}), False
    steps = steps.sort_values("start_us", kind="stable").drop_duplicates("step").sort_values("step")
    start = steps["start_us"].to_numpy()
    end = steps["end_us"].to_numpy()
    thread = steps["thread"].to_numpy()

    # Assign each launched device event to the step label (on its thread) that contains its launch.
    launched = attr.dev_launch_thread >= 0
    dev_step = np.full(len(attr.dev_index), -1, dtype=np.int64)
    dev_step[launched] = locate_steps(
        start, end, thread, attr.dev_launch_thread[launched], attr.dev_launch_ts_us[launched]
    )
    n = len(steps)
    act = bound.activity(trace, attr) if act is None else act
    # A step's token is out when its last device event ends (its span's end), else at its label's end.
    sp = bound.spans(act, n, dev_step, start, end, thread)
    emitted = sp.end_us
    inside = dev_step >= 0
    k, is_kernel = dev_step[inside], act.dev_is_kernel[inside]
    kernel_us = np.bincount(k, weights=np.where(is_kernel, act.dev_dur_us[inside], 0.0), minlength=n)
    n_kernels = np.bincount(k[is_kernel], minlength=n)

    gen = generate_span_us(attr)
    origin = gen[0] if gen is not None else float(start.min())
    emitted_ms = (emitted - origin) / 1000.0
    latency = np.diff(emitted_ms, prepend=0.0)
    if gen is None or steps["step"].iloc[0] != 0:
        latency[0] = np.nan
    ct = bound.counts(act, n, dev_step, locate_steps(start, end, thread, act.call_thread, act.call_ts_us))
    evidence = bound.evidence_frame(act, sp, ct)
    table = pd.DataFrame(
        {
            "step": steps["step"].to_numpy(),
            "phase": np.where(steps["step"].to_numpy() == 0, "prefill", "decode"),
            "start_ms": (start - origin) / 1000.0,
            "emitted_ms": emitted_ms,
            "latency_ms": latency,
            "host_ms": (end - start) / 1000.0,
            "gpu_kernel_ms": kernel_us / 1000.0,
            "n_kernels": n_kernels.astype(np.int64),
            **{c: evidence[c].to_numpy() for c in bound.EVIDENCE_COLUMNS},
        }
    )
    return table, bool(sp.has_device_work.any())

