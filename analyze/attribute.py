"""Attribute every host event and every device event of a trace to a stage.

Rules (DESIGN.md, Attribution): a host event belongs to the innermost label on its own
(pid, tid) whose interval contains its start; a device event (kernel, memcpy, memset) belongs
to the stage of its launch point, found through ``args.correlation`` (the launching runtime or
driver call), else the ``ac2g`` flow, else ``External id`` (a cpu_op); without a launch point it
is ``unattributed``. Host self time per stage is measured on the sample's main thread and clipped
to the sample's wall window, so the self times of a sample add up to its wall time.

Everything is vectorised (searchsorted over label breakpoints); the only Python loops run over
labels and threads, which are few.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyze import vocabulary as voc
from analyze.parse import (
    CPU_OP,
    DEVICE_CATS,
    NOT_WORK_CATS,
    USER_ANNOTATION,
    Trace,
)
from analyze.stagemap import StageMap, label_stage


@dataclass(frozen=True)
class Attribution:
    """Where each event of one trace goes.

    ``annotations`` has one row per host ``user_annotation`` event (columns ``index`` into the
    trace, ``name``, ``stage`` (None when it is no label), ``thread``, ``start_us``, ``end_us``).
    Host ops (host events that are not labels) and device events are given by their indices
    into the trace and a stage code into ``stage_names``; ``dev_label`` also says which label
    occurrence (a row of ``labels``) launched each device event. ``self_us`` maps each stage to its
    host self time on the sample's main thread (``main_thread``) inside ``window_us``; the values add
    up to the window length. ``segments`` are the pieces those self times sum: (start, end, stage
    code) of the main thread's time line inside the window cut at label boundaries, each owned by
    its innermost label's stage (``unlabelled`` outside every label).
    """

    stage_names: tuple[str, ...]
    annotations: pd.DataFrame
    op_index: np.ndarray
    op_stage: np.ndarray
    dev_index: np.ndarray
    dev_stage: np.ndarray
    dev_launch_thread: np.ndarray  # -1: no launcher found
    dev_launch_ts_us: np.ndarray  # NaN: no launcher found
    window_us: tuple[float, float]
    sample_index: int | None
    self_us: dict[str, float]
    dev_label: np.ndarray  # per device event: row of ``labels`` it was attributed through, -1 none
    main_thread: int  # the thread whose labels account for wall time (-1: no host events)
    segments: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def labels(self) -> pd.DataFrame:
        """The annotations that are stage labels."""
        return self.annotations[self.annotations["stage"].notna()]


def label_breakpoints(start_us: np.ndarray, end_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut one thread's time line at label boundaries.

    Returns (times, label): from ``times[i]`` until ``times[i+1]`` the innermost open label is
    ``label[i]`` (an index into the inputs, -1 for none). Labels nest by time; a label that
    starts later is inside one that is still open (outer first on equal starts). Partial
    overlaps, which well-formed traces do not have, resolve to the later-started label.
    """
    order = np.lexsort((-end_us, start_us))
    stack: list[int] = []
    times: list[float] = []
    owner: list[int] = []

    def close_until(t: float) -> None:
        while stack and end_us[stack[-1]] <= t:
            closed = end_us[stack.pop()]
            while stack and end_us[stack[-1]] <= closed:
                stack.pop()
            times.append(closed)
            owner.append(stack[-1] if stack else -1)

    for i in order.tolist():
        close_until(start_us[i])
        stack.append(i)
        times.append(start_us[i])
        owner.append(i)
    close_until(np.inf)
    return np.asarray(times, dtype=np.float64), np.asarray(owner, dtype=np.int64)


def innermost_label(
    label_thread: np.ndarray,
    label_start_us: np.ndarray,
    label_end_us: np.ndarray,
    thread: np.ndarray,
    ts_us: np.ndarray,
) -> np.ndarray:
    """For each point (thread, ts), the index of the innermost label containing it, or -1.

    A label [start, end) contains a point on the same thread with start <= ts < end.
    """
    out = np.full(len(ts_us), -1, dtype=np.int64)
    for th in np.unique(label_thread).tolist():
        members = np.flatnonzero(label_thread == th)
        times, owner = label_breakpoints(label_start_us[members], label_end_us[members])
        on_thread = np.flatnonzero(thread == th)
        seg = np.searchsorted(times, ts_us[on_thread], side="right") - 1
        local = np.where(seg >= 0, owner[np.maximum(seg, 0)], -1)
        out[on_thread] = np.where(local >= 0, members[np.maximum(local, 0)], -1)
    return out


def union_us(group: np.ndarray, start_us: np.ndarray, end_us: np.ndarray, n_groups: int) -> np.ndarray:
    """Length of the union of the intervals of each group (overlaps counted once).

    Sort by start within the group, keep a running maximum of the ends; each interval adds only
    what reaches past everything before it.
    """
    if len(start_us) == 0:
        return np.zeros(n_groups)
    order = np.lexsort((start_us, group))
    g, s, e = group[order], start_us[order], end_us[order]
    reach = pd.Series(e).groupby(g).cummax().to_numpy()
    before = np.empty_like(reach)
    before[0] = -np.inf
    before[1:] = np.where(g[1:] == g[:-1], reach[:-1], -np.inf)
    gain = np.maximum(reach - np.maximum(s, before), 0.0)
    return np.bincount(g, weights=gain, minlength=n_groups)


def _lookup(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position in ``keys`` of the first key equal to each query (-1 if none; keys < 0 never match)."""
    if len(keys) == 0 or len(queries) == 0:
        return np.full(len(queries), -1, dtype=np.int64)
    uniq, first = np.unique(keys, return_index=True)
    pos = np.minimum(np.searchsorted(uniq, queries), len(uniq) - 1)
    hit = (queries >= 0) & (uniq[pos] == queries)
    return np.where(hit, first[pos], -1)


def launch_points(trace: Trace, host: np.ndarray, dev_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(thread, ts) of the host call that launched each device event; (-1, NaN) if none.

    By ``args.correlation`` (any host event carrying one: runtime or driver calls), else by the
    ``ac2g`` flow (its "f" end sits at the device event's (thread, ts), its "s" start at the
    launch), else by ``External id`` (a cpu_op with the same id).
    """
    thread = np.full(len(dev_index), -1, dtype=np.int64)
    ts = np.full(len(dev_index), np.nan)

    def fill(missing: np.ndarray, src: np.ndarray, src_thread: np.ndarray, src_ts: np.ndarray) -> None:
        found = src >= 0
        rows = np.flatnonzero(missing)[found]
        thread[rows] = src_thread[src[found]]
        ts[rows] = src_ts[src[found]]

    launchers = np.flatnonzero(host & (trace.correlation >= 0))
    src = _lookup(trace.correlation[launchers], trace.correlation[dev_index])
    fill(np.ones(len(dev_index), dtype=bool), src, trace.thread[launchers], trace.ts_us[launchers])

    missing = thread < 0
    if missing.any() and (trace.flow_id >= 0).any():
        is_flow = trace.flow_id >= 0
        ends = np.flatnonzero(is_flow & trace.ph.isin("f"))
        starts = np.flatnonzero(is_flow & trace.ph.isin("s"))
        want = dev_index[missing]
        ends_df = pd.DataFrame(
            {"thread": trace.thread[ends], "ts": trace.ts_us[ends], "flow": trace.flow_id[ends]}
        ).drop_duplicates(["thread", "ts"])
        query = pd.DataFrame({"thread": trace.thread[want], "ts": trace.ts_us[want]})
        flow = query.merge(ends_df, on=["thread", "ts"], how="left")["flow"].fillna(-1).to_numpy(np.int64)
        fill(missing, _lookup(trace.flow_id[starts], flow), trace.thread[starts], trace.ts_us[starts])

    missing = thread < 0
    if missing.any():
        ops = np.flatnonzero(host & trace.cat.isin(CPU_OP) & (trace.external_id >= 0))
        src = _lookup(trace.external_id[ops], trace.external_id[dev_index[missing]])
        fill(missing, src, trace.thread[ops], trace.ts_us[ops])
    return thread, ts


def _sample_window(
    ann: pd.DataFrame, host_start: np.ndarray, host_end: np.ndarray
) -> tuple[tuple[float, float], int | None, int | None]:
    """(window, sample index, its thread): the longest ``sample#i`` label, else all host events."""
    index = ann["name"].map({n: voc.sample_index(n) for n in ann["name"].unique()})
    samples = ann[index.notna()]
    if len(samples):
        best = (samples["end_us"] - samples["start_us"]).idxmax()
        row = samples.loc[best]
        return (float(row["start_us"]), float(row["end_us"])), int(index[best]), int(row["thread"])
    if len(host_start) == 0:
        return (0.0, 0.0), None, None
    return (float(host_start.min()), float(host_end.max())), None, None


def attribute(trace: Trace, stage_map: StageMap | None = None) -> Attribution:
    """Attribute the events of ``trace`` to stages (built-in labels, or ``stage_map``'s)."""
    # Host events: complete ("X") events on CPU threads, whatever their category.
    on_cpu = ~trace.gpu_thread[trace.thread]
    host = trace.ph.isin("X") & on_cpu & ~trace.cat.isin(*NOT_WORK_CATS, *DEVICE_CATS)
    ann_index = np.flatnonzero(host & trace.cat.isin(USER_ANNOTATION))
    names = trace.name.values(ann_index)
    stage_of = {n: label_stage(n, stage_map) for n in pd.unique(names)}
    ann = pd.DataFrame(
        {
            "index": ann_index,
            "name": names,
            "stage": pd.Series(names, dtype=object).map(stage_of).to_numpy(dtype=object),
            "thread": trace.thread[ann_index],
            "start_us": trace.ts_us[ann_index],
            "end_us": trace.ts_us[ann_index] + trace.dur_us[ann_index],
        }
    )
    is_label = ann["stage"].notna().to_numpy()
    lab = ann[is_label]
    label_index = lab["index"].to_numpy()

    stage_names = tuple(dict.fromkeys([*lab["stage"], voc.UNLABELLED, voc.UNATTRIBUTED]))
    code = {s: i for i, s in enumerate(stage_names)}
    unlabelled, unattributed = code[voc.UNLABELLED], code[voc.UNATTRIBUTED]
    label_code = np.fromiter((code[s] for s in lab["stage"]), dtype=np.int64, count=len(lab))
    l_thread = lab["thread"].to_numpy()
    l_start, l_end = lab["start_us"].to_numpy(), lab["end_us"].to_numpy()

    not_label = host.copy()
    not_label[label_index] = False
    op_index = np.flatnonzero(not_label)
    dev_index = np.flatnonzero(trace.ph.isin("X") & trace.cat.isin(*DEVICE_CATS))
    dev_thread, dev_ts = launch_points(trace, host, dev_index)

    q_thread = np.concatenate([trace.thread[op_index], dev_thread])
    q_ts = np.concatenate([trace.ts_us[op_index], np.nan_to_num(dev_ts)])
    inner = innermost_label(l_thread, l_start, l_end, q_thread, q_ts)
    stage = np.full(len(inner), unlabelled, dtype=np.int64)
    stage[inner >= 0] = label_code[inner[inner >= 0]]
    op_stage, dev_stage = stage[: len(op_index)], stage[len(op_index) :].copy()
    dev_stage[dev_thread < 0] = unattributed
    dev_label = np.where(dev_thread < 0, -1, inner[len(op_index) :])

    host_idx = np.flatnonzero(host)
    window, sample_index, sample_thread = _sample_window(
        ann, trace.ts_us[host_idx], trace.ts_us[host_idx] + trace.dur_us[host_idx]
    )
    main = _main_thread(sample_thread, l_thread, l_start, l_end, trace.thread[host_idx])
    seg_start, seg_end, seg_stage = _segments(label_code, l_thread, l_start, l_end, main, window)
    self_us = _self_time(stage_names, seg_start, seg_end, seg_stage, window)
    return Attribution(
        stage_names=stage_names,
        annotations=ann,
        op_index=op_index,
        op_stage=op_stage,
        dev_index=dev_index,
        dev_stage=dev_stage,
        dev_launch_thread=dev_thread,
        dev_launch_ts_us=dev_ts,
        window_us=window,
        sample_index=sample_index,
        self_us=self_us,
        dev_label=dev_label,
        main_thread=main,
        segments=(seg_start, seg_end, np.where(seg_stage >= 0, seg_stage, unlabelled)),
    )


def _main_thread(
    sample_thread: int | None,
    l_thread: np.ndarray,
    l_start: np.ndarray,
    l_end: np.ndarray,
    host_thread: np.ndarray,
) -> int:
    """The thread whose labels account for wall time: the ``sample#`` label's, else the one
    with the most labelled time, else the one with the most host events."""
    if sample_thread is not None:
        return sample_thread
    if len(l_thread):
        threads, codes = np.unique(l_thread, return_inverse=True)
        covered = union_us(codes, l_start, l_end, len(threads))
        return int(threads[np.argmax(covered)])
    if len(host_thread):
        return int(np.bincount(host_thread).argmax())
    return -1


def _segments(
    label_code: np.ndarray,
    l_thread: np.ndarray,
    l_start: np.ndarray,
    l_end: np.ndarray,
    main: int,
    window: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The main thread's time line inside ``window`` cut at label boundaries.

    Returns (start, end, stage code) of consecutive pieces that tile the window; a piece outside
    every label has stage code -1. These are the pieces that host self times sum.
    """
    on_main = np.flatnonzero(l_thread == main)
    times, owner = label_breakpoints(l_start[on_main], l_end[on_main])
    edges = np.clip(np.concatenate([[window[0]], times, [window[1]]]), window[0], window[1])
    own = np.concatenate([[-1], owner]).astype(np.int64)
    stage = np.where(own >= 0, label_code[on_main[np.maximum(own, 0)]] if len(on_main) else -1, -1)
    return edges[:-1], edges[1:], stage


def _self_time(
    stage_names: tuple[str, ...],
    start: np.ndarray,
    end: np.ndarray,
    stage: np.ndarray,
    window: tuple[float, float],
) -> dict[str, float]:
    """Host self time per stage from the main thread's segments (stage -1: outside every label)
    within ``window``; the rest is unlabelled."""
    total = window[1] - window[0]
    inside = stage >= 0
    per_stage = np.bincount(
        stage[inside], weights=np.maximum(end - start, 0.0)[inside], minlength=len(stage_names)
    )
    result = dict(zip(stage_names, per_stage.tolist(), strict=True))
    labelled = sum(v for s, v in result.items() if s != voc.UNLABELLED)
    result[voc.UNLABELLED] = total - labelled
    return result
