"""Verdicts: what bounds each generation step and each stage, with the evidence (DESIGN.md, Verdicts).

For a group of device work (a generation step, or the label occurrences of a stage) the evidence is:

- ``bound_span_ms``: from the first launch (the host time stamp of the call that launched the
  group's first device event) to the last end of the group's device events; for a group that
  launched nothing, the host span of its label(s).
- ``gpu_busy_share``: the time the device was busy with anything (the union of every kernel,
  memcpy and memset interval of the trace, all streams, counted once) inside that span, over
  the span. NaN on CPU-only traces.
- ``launch_ms`` / ``n_launches``: host time in, and number of, the group's launch calls: kernel
  launches, graph launches (``cudaGraphLaunch``, ``hipGraphLaunch``: ONE call however many
  kernels the graph replays; ``n_graph_launches`` counts them apart) and asynchronous copies
  and fills (``cudaMemcpyAsync``, ``cudaMemsetAsync``, ``hipMemcpyAsync``, ...).
- ``kernel_mean_us`` / ``kernel_median_us``: over the group's own kernels (copies left out).
- ``sync_ms``: host time blocked in synchronising calls on the group's thread inside its span:
  ``cuda|hip`` Device/Stream/Event/Ctx ``Synchronize``, their driver-API twins, and synchronous
  copies (``cudaMemcpy``, ``cuMemcpyDtoH``, ``hipMemcpy``, ``hipMemcpyWithStream``, ...). A
  synchronous copy is a sync call, not a launch. ``cudaStreamWaitEvent`` does not block the host
  (a stream waits on the device), so it is neither.

The verdict ``bound``, first rule that applies:

1. no device work of its own, and less than half the span in sync calls -> ``host``
2. ``gpu_busy_share >= 0.7`` -> ``device``
3. ``gpu_busy_share < 0.3`` and ``sync_ms >= 0.5 * bound_span_ms`` -> ``sync``
4. ``gpu_busy_share < 0.3`` and at least one launch -> ``launch``
5. otherwise -> ``mixed``

Rule 1's proviso is for host time spent waiting: ``stage4:other`` blocked in a synchronize while
the GPU finishes the prefill's kernels launched nothing itself, yet it is device-bound, not host
work. On a CPU-only trace every group is ``host``.

Everything is vectorised over events (sorts, searchsorted and bincount); the only Python loops
run over the distinct call names and the threads that make sync calls, which are few.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze import vocabulary as voc
from analyze.attribute import Attribution
from analyze.contract import VERDICT_COLUMNS
from analyze.parse import CUDA_DRIVER, CUDA_RUNTIME, KERNEL, Trace

DEVICE, LAUNCH, SYNC, HOST, MIXED = "device", "launch", "sync", "host", "mixed"
VERDICTS = (DEVICE, LAUNCH, SYNC, HOST, MIXED)
NO_VERDICT = ""  # the unattributed stage: its device work has no launch point, hence no span

DEVICE_BUSY_SHARE = 0.7  # at or above: device-bound
IDLE_BUSY_SHARE = 0.3  # below: the GPU mostly idled
SYNC_SPAN_SHARE = 0.5  # at or above (with an idle GPU): sync-bound

EVIDENCE_COLUMNS = VERDICT_COLUMNS  # name -> dtype, declared in the tables' contract

# Call kinds (codes per distinct call name).
NOT_A_CALL, KERNEL_LAUNCH, GRAPH_LAUNCH, COPY_LAUNCH, SYNC_CALL = range(5)

_KERNEL_LAUNCHES = frozenset(
    {
        "cudaLaunchKernel",
        "cudaLaunchKernelExC",
        "cudaLaunchCooperativeKernel",
        "cudaLaunchCooperativeKernelMultiDevice",
        "cuLaunchKernel",
        "cuLaunchKernelEx",
        "cuLaunchCooperativeKernel",
        "hipLaunchKernel",
        "hipExtLaunchKernel",
        "hipModuleLaunchKernel",
        "hipExtModuleLaunchKernel",
        "hipLaunchCooperativeKernel",
        "hipModuleLaunchCooperativeKernel",
    }
)
_GRAPH_LAUNCHES = frozenset({"cudaGraphLaunch", "cuGraphLaunch", "hipGraphLaunch"})
_SYNCS = frozenset(
    {
        "cudaDeviceSynchronize",
        "cudaStreamSynchronize",
        "cudaEventSynchronize",
        "cudaThreadSynchronize",
        "cuCtxSynchronize",
        "cuStreamSynchronize",
        "cuEventSynchronize",
        "hipDeviceSynchronize",
        "hipStreamSynchronize",
        "hipEventSynchronize",
        "hipCtxSynchronize",
        "hipMemcpyWithStream",  # PyTorch's blocking copy on ROCm
    }
)
_COPY_RE = re.compile(r"^(?:cuda|cu|hip)Mem(?:cpy|set)\w*$")
_SUFFIX_RE = re.compile(r"(?:_v\d+)?(?:_pt[sd]z)?$")  # CUPTI's versioned / per-thread names


def call_kind(name: str) -> int:
    """The kind of a runtime or driver call by its name (NOT_A_CALL, KERNEL_LAUNCH, ...)."""
    base = _SUFFIX_RE.sub("", name)
    if base in _GRAPH_LAUNCHES:
        return GRAPH_LAUNCH
    if base in _KERNEL_LAUNCHES:
        return KERNEL_LAUNCH
    if base in _SYNCS:
        return SYNC_CALL
    if _COPY_RE.match(base):
        # cudaMemcpyAsync, cudaMemsetAsync, cudaMemset: enqueued; cudaMemcpy, cuMemcpyDtoH: blocking
        return COPY_LAUNCH if base.endswith("Async") or "Memset" in base else SYNC_CALL
    return NOT_A_CALL


def verdict(
    has_device_work: np.ndarray, busy_share: np.ndarray, sync_share: np.ndarray, n_launches: np.ndarray
) -> np.ndarray:
    """The ``bound`` of each group (object array of VERDICTS), by the rules in the module doc."""
    busy = np.nan_to_num(busy_share, nan=-1.0)  # NaN (no span, no GPU) never passes a threshold
    idle = (busy >= 0) & (busy < IDLE_BUSY_SHARE)
    blocked = np.nan_to_num(sync_share) >= SYNC_SPAN_SHARE
    conditions = [
        ~has_device_work & (~blocked | (busy < 0)),
        busy >= DEVICE_BUSY_SHARE,
        idle & blocked,
        idle & (n_launches > 0),
    ]
    return np.select(conditions, [HOST, DEVICE, SYNC, LAUNCH], default=MIXED).astype(object)


# ---------------------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class _Union:
    """Disjoint sorted intervals with the covered length before each: measure any window fast."""

    start: np.ndarray
    end: np.ndarray
    before: np.ndarray  # covered length before start[i]

    @classmethod
    def of(cls, start: np.ndarray, end: np.ndarray) -> _Union:
        if len(start) == 0:
            empty = np.zeros(0)
            return cls(empty, empty, empty)
        order = np.argsort(start, kind="stable")
        s, e = start[order], np.maximum(end[order], start[order])
        reach = np.maximum.accumulate(e)
        new = np.ones(len(s), dtype=bool)
        new[1:] = s[1:] > reach[:-1]
        first = np.flatnonzero(new)
        last = np.append(first[1:] - 1, len(s) - 1)
        m_start, m_end = s[first], reach[last]
        before = np.concatenate([[0.0], np.cumsum(m_end - m_start)[:-1]])
        return cls(m_start, m_end, before)

    def covered_until(self, t: np.ndarray) -> np.ndarray:
        """Covered length in (-inf, t] for each t."""
        if len(self.start) == 0:
            return np.zeros(len(t))
        i = np.searchsorted(self.start, t, side="right") - 1
        j = np.maximum(i, 0)
        inside = np.clip(t - self.start[j], 0.0, self.end[j] - self.start[j])
        return np.where(i >= 0, self.before[j] + inside, 0.0)

    def covered(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Covered length inside each window [a, b] (0 where b <= a)."""
        return np.where(b > a, self.covered_until(b) - self.covered_until(a), 0.0)


# ---------------------------------------------------------------------------------------- one trace
@dataclass(frozen=True)
class Activity:
    """What the evidence of any group of one trace is computed from.

    Device side, one entry per ``attr.dev_index``: end time, launch time, kernel or not; and the
    union of all device intervals. Host side: the classified launch and sync calls (host events
    of category cuda_runtime / cuda_driver), with their position in ``attr.op_index``, and the
    union of the sync calls per thread.
    """

    has_gpu: bool
    busy: _Union
    dev_end_us: np.ndarray
    dev_launch_us: np.ndarray
    dev_dur_us: np.ndarray
    dev_is_kernel: np.ndarray
    call_op: np.ndarray  # position in attr.op_index of each launch call
    call_thread: np.ndarray
    call_ts_us: np.ndarray
    call_dur_us: np.ndarray
    call_graph: np.ndarray  # bool: a graph launch
    sync_by_thread: dict[int, _Union]


def activity(trace: Trace, attr: Attribution) -> Activity:
    """The device timeline and the launch / sync calls of one attributed trace."""
    d = attr.dev_index
    start, dur = trace.ts_us[d], trace.dur_us[d]
    kinds = np.fromiter((call_kind(str(n)) for n in trace.name.names), np.int64, len(trace.name.names))
    ops = attr.op_index
    is_call = trace.cat.isin(CUDA_RUNTIME, CUDA_DRIVER)[ops]
    kind = np.where(is_call, kinds[trace.name.codes[ops]] if len(kinds) else NOT_A_CALL, NOT_A_CALL)
    launches = np.flatnonzero(np.isin(kind, (KERNEL_LAUNCH, GRAPH_LAUNCH, COPY_LAUNCH)))
    syncs = ops[kind == SYNC_CALL]
    sync_thread = trace.thread[syncs]
    sync_by_thread = {
        int(th): _Union.of(trace.ts_us[syncs[sync_thread == th]], _end(trace, syncs[sync_thread == th]))
        for th in np.unique(sync_thread).tolist()
    }
    li = ops[launches]
    return Activity(
        has_gpu=len(d) > 0,
        busy=_Union.of(start, start + dur),
        dev_end_us=start + dur,
        dev_launch_us=attr.dev_launch_ts_us,
        dev_dur_us=dur,
        dev_is_kernel=trace.cat.isin(KERNEL)[d],
        call_op=launches,
        call_thread=trace.thread[li],
        call_ts_us=trace.ts_us[li],
        call_dur_us=trace.dur_us[li],
        call_graph=kind[launches] == GRAPH_LAUNCH,
        sync_by_thread=sync_by_thread,
    )


def _end(trace: Trace, index: np.ndarray) -> np.ndarray:
    return trace.ts_us[index] + trace.dur_us[index]


@dataclass(frozen=True)
class Spans:
    """Per group: the span the verdict is judged on and what happened inside it (microseconds)."""

    start_us: np.ndarray
    end_us: np.ndarray
    busy_us: np.ndarray
    sync_us: np.ndarray
    has_device_work: np.ndarray


def spans(
    act: Activity,
    n: int,
    dev_group: np.ndarray,
    host_start_us: np.ndarray,
    host_end_us: np.ndarray,
    thread: np.ndarray,
) -> Spans:
    """Spans of ``n`` groups: first launch to last device end of the device events whose
    ``dev_group`` is the group (one entry per ``attr.dev_index``, -1: none), else the group's
    host span; with the device busy time and the host sync time (on the group's ``thread``)
    inside each."""
    own = dev_group >= 0
    g = dev_group[own]
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first, g, act.dev_launch_us[own])
    np.maximum.at(last, g, act.dev_end_us[own])
    has = np.bincount(g, minlength=n) > 0
    start = np.where(has, first, host_start_us).astype(np.float64)
    end = np.where(has, last, host_end_us).astype(np.float64)
    sync = np.zeros(n)
    for th, union in act.sync_by_thread.items():
        mine = thread == th
        sync[mine] = union.covered(start[mine], end[mine])
    return Spans(start, end, act.busy.covered(start, end), sync, has)


@dataclass(frozen=True)
class Counts:
    """Per group: launch calls and kernel durations."""

    launch_us: np.ndarray
    n_launches: np.ndarray
    n_graph_launches: np.ndarray
    kernel_mean_us: np.ndarray
    kernel_median_us: np.ndarray


def counts(act: Activity, n: int, dev_group: np.ndarray, call_group: np.ndarray) -> Counts:
    """Launch calls per group (``call_group``: one per ``act`` launch call, -1 none) and the
    mean and median duration of the kernels per group (``dev_group``, one per device event)."""
    c = call_group >= 0
    cg = call_group[c]
    k = (dev_group >= 0) & act.dev_is_kernel
    kg, kd = dev_group[k], act.dev_dur_us[k]
    n_kernels = np.bincount(kg, minlength=n)
    total = np.bincount(kg, weights=kd, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_kernels > 0, total / np.maximum(n_kernels, 1), np.nan)
    return Counts(
        launch_us=np.bincount(cg, weights=act.call_dur_us[c], minlength=n),
        n_launches=np.bincount(cg, minlength=n).astype(np.int64),
        n_graph_launches=np.bincount(cg[act.call_graph[c]], minlength=n).astype(np.int64),
        kernel_mean_us=mean,
        kernel_median_us=median_by_group(kg, kd, n),
    )


def median_by_group(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per group 0..n-1 (NaN for an empty group), one sort for all groups."""
    out = np.full(n, np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, group))
    v = values[order]
    size = np.bincount(group, minlength=n)
    offset = np.cumsum(size) - size
    has = size > 0
    lo = offset[has] + (size[has] - 1) // 2
    hi = offset[has] + size[has] // 2
    out[has] = (v[lo] + v[hi]) / 2.0
    return out


def evidence_frame(act: Activity, sp: Spans, ct: Counts) -> pd.DataFrame:
    """The EVIDENCE_COLUMNS of groups from their spans and counts, with the verdict."""
    span_us = sp.end_us - sp.start_us
    with np.errstate(invalid="ignore", divide="ignore"):
        busy_share = np.where(span_us > 0, sp.busy_us / span_us, np.nan) if act.has_gpu else np.nan
        sync_share = np.where(span_us > 0, sp.sync_us / span_us, np.nan)
    busy_share = np.broadcast_to(busy_share, span_us.shape).astype(np.float64)
    bound = verdict(sp.has_device_work, busy_share, sync_share, ct.n_launches)
    return pd.DataFrame(
        {
            "bound": bound,
            "bound_span_ms": span_us / 1000.0,
            "gpu_busy_share": busy_share,
            "launch_ms": ct.launch_us / 1000.0,
            "n_launches": ct.n_launches,
            "n_graph_launches": ct.n_graph_launches,
            "kernel_mean_us": ct.kernel_mean_us,
            "kernel_median_us": ct.kernel_median_us,
            "sync_ms": sp.sync_us / 1000.0,
        }
    )


# ---------------------------------------------------------------------------------------- stages
RESIDUALS = (voc.OTHER, voc.UNLABELLED)


def stage_evidence(trace: Trace, attr: Attribution, act: Activity | None = None) -> pd.DataFrame:
    """EVIDENCE_COLUMNS for every stage of ``attr.stage_names`` (one row each, in code order).

    A labelled stage's span is the sum over its label occurrences (each decode step, each tower
    call) of each occurrence's span: first launch to last device end of the device work that
    occurrence launched (innermost label), or its host span where it launched nothing. The
    residuals ``stage4:other`` and ``unlabelled`` have no label of their own: their span is the
    host time they fill on the main thread (their self time), and busy and sync time are measured
    inside those pieces. ``unattributed`` has no launch point, so no span and no verdict
    (NO_VERDICT); its kernel statistics are still given.
    """
    act = activity(trace, attr) if act is None else act
    n_stages = len(attr.stage_names)
    code = {s: i for i, s in enumerate(attr.stage_names)}
    labels = attr.labels
    l_stage = labels["stage"].map(code).to_numpy(np.int64)
    residual = np.isin(np.asarray(attr.stage_names, dtype=object), RESIDUALS)

    # Labelled stages: one group per label occurrence, then summed per stage.
    n_labels = len(labels)
    occ = spans(
        act,
        n_labels,
        attr.dev_label,
        labels["start_us"].to_numpy(),
        labels["end_us"].to_numpy(),
        labels["thread"].to_numpy(),
    )
    keep = ~residual[l_stage]
    # Residuals: the main thread's pieces that their stage owns.
    seg_start, seg_end, seg_stage = attr.segments
    mine = residual[seg_stage]
    seg = spans(
        act,
        int(mine.sum()),
        np.full(len(attr.dev_index), -1),
        seg_start[mine],
        seg_end[mine],
        np.full(int(mine.sum()), attr.main_thread),
    )
    group_stage = np.concatenate([l_stage[keep], seg_stage[mine]])

    def total(occ_values: np.ndarray, seg_values: np.ndarray) -> np.ndarray:
        values = np.concatenate([occ_values[keep], seg_values])
        return np.bincount(group_stage, weights=values, minlength=n_stages)

    span_us = total(occ.end_us - occ.start_us, seg.end_us - seg.start_us)
    call_stage = attr.op_stage[act.call_op]
    ct = counts(act, n_stages, attr.dev_stage, call_stage)
    has_dev = np.bincount(attr.dev_stage, minlength=n_stages) > 0
    summed = Spans(
        start_us=np.zeros(n_stages),
        end_us=span_us,
        busy_us=total(occ.busy_us, seg.busy_us),
        sync_us=total(occ.sync_us, seg.sync_us),
        has_device_work=has_dev,
    )
    frame = evidence_frame(act, summed, ct)
    unattributed = code[voc.UNATTRIBUTED]
    frame.loc[unattributed, ["bound_span_ms", "gpu_busy_share"]] = np.nan
    frame.loc[unattributed, "bound"] = NO_VERDICT
    return frame
