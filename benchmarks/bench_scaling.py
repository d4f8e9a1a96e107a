"""Scaling of ``analyze``: time and peak memory from 1 to 1,000 traces, at ``--jobs 1`` and ``--jobs 2``,
for a first analysis and for a second one into the same folder (every trace unchanged: all reused).

The traces are synthetic 7B-shaped ones from ``gen_traces.py`` (default 0.5 MB each uncompressed,
gzipped). Every cell is one ``analyze PATH... --out OUT --jobs N`` process, timed from outside with
its peak RSS (the largest process of its tree). Time should grow linearly with the number of
traces and peak memory should not grow with it: each process holds one trace at a time, and the
rows go to Parquet files per trace instead of accumulating in memory.

    python benchmarks/bench_scaling.py [--counts 1,10,100,1000] [--jobs 1,2] [--mb 0.5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_analyze import analyze_cli, machine_info, write_json  # noqa: E402
from benchmarks.gen_traces import MB, TraceShape, TraceTruth, generate_set  # noqa: E402


def measure_scaling(
    truths: list[TraceTruth], work: Path, counts: list[int], jobs: list[int]
) -> dict[str, Any]:
    """Per (count, jobs): a first analyze process on the first ``count`` traces of ``truths``, then
    a second one into the same output folder, which reuses every trace (both ``-q``: the tables
    only), then a third that also reads the tables back for the terminal summary."""
    rows = []
    for n in counts:
        subset = truths[:n]
        paths = [Path(t.path) for t in subset]
        mb = sum(t.size_bytes for t in subset) / MB
        for j in jobs:
            out = work / f"analysis-{n}-j{j}"
            shutil.rmtree(out, ignore_errors=True)
            for run in ("first", "reuse", "summary"):
                name = f"{n} traces, --jobs {j}, {run}"
                m = analyze_cli(name, paths, out, jobs=j, fresh=False, quiet=run != "summary")
                if m.returncode != 0:
                    raise RuntimeError(
                        f"analyze on {n} traces, --jobs {j} ({run}) exited {m.returncode}: {m.stderr_tail}"
                    )
                rows.append({
                    "traces": n,
                    "jobs": j,
                    "run": run,
                    "mb": mb,
                    "seconds": m.wall_s,
                    "mb_per_s": mb / m.wall_s,
                    "ms_per_trace": m.wall_s * 1e3 / n,
                    "peak_rss_mb": m.peak_rss_mb,
                })  # fmt: skip
    cell = {(r["traces"], r["jobs"], r["run"]): r for r in rows}
    lo, hi = min(counts), max(counts)
    derived: dict[str, float] = {}
    for j in jobs:
        derived[f"time_{hi}_over_{lo}_j{j}"] = (
            cell[(hi, j, "first")]["seconds"] / cell[(lo, j, "first")]["seconds"]
        )
        derived[f"peak_{hi}_over_{lo}_j{j}"] = (
            cell[(hi, j, "first")]["peak_rss_mb"] / cell[(lo, j, "first")]["peak_rss_mb"]
        )
        derived[f"reuse_speedup_at_{hi}_j{j}"] = (
            cell[(hi, j, "first")]["seconds"] / cell[(hi, j, "reuse")]["seconds"]
        )
    if len(jobs) > 1:
        j1, j2 = min(jobs), max(jobs)
        derived[f"speedup_j{j2}_over_j{j1}_at_{hi}"] = (
            cell[(hi, j1, "first")]["seconds"] / cell[(hi, j2, "first")]["seconds"]
        )
    if hi >= 100:  # the marginal cost of a trace, without the process start-up
        mid = max(c for c in counts if c < hi) if len(counts) > 1 else lo
        for j in jobs:
            dt = cell[(hi, j, "first")]["seconds"] - cell[(mid, j, "first")]["seconds"]
            derived[f"marginal_ms_per_trace_j{j}"] = dt * 1e3 / (hi - mid)
    return {"rows": rows, "derived": derived, "trace_mb_each": truths[0].size_bytes / MB}


def format_result(res: dict[str, Any]) -> str:
    lines = [
        f"analyze scaling ({res['trace_mb_each']:.1f} MB traces, CLI process wall and peak RSS)",
        f"{'traces':>7} {'jobs':>5} {'run':>7} {'MB':>7} {'seconds':>9} {'MB/s':>7} {'ms/trace':>9} "
        f"{'peak RSS MB':>12}",
    ]
    for r in res["rows"]:
        lines.append(
            f"{r['traces']:>7} {r['jobs']:>5} {r['run']:>7} {r['mb']:>7.0f} {r['seconds']:>9.2f} "
            f"{r['mb_per_s']:>7.1f} {r['ms_per_trace']:>9.0f} {r['peak_rss_mb']:>12.0f}"
        )
    lines.append("  " + ", ".join(f"{k} {v:.2f}" for k, v in res["derived"].items()))
    lines.append(
        f"load average (1 min): {res['load_avg_1m_start']} at start, {res['load_avg_1m_end']} at end"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,10,100,1000", help="numbers of traces, comma-separated")
    parser.add_argument("--jobs", default="1,2", help="--jobs values, comma-separated")
    parser.add_argument("--mb", type=float, default=0.5, help="uncompressed size of each trace (MB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks/out/work-scaling")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/scaling.json")
    args = parser.parse_args(argv)
    counts = sorted(int(c) for c in args.counts.split(","))
    jobs = sorted(int(j) for j in args.jobs.split(","))

    folder = args.work / f"traces-{max(counts)}x{args.mb:g}mb-gz"
    t0 = time.perf_counter()
    truths = generate_set(folder, max(counts), TraceShape.for_size(args.mb, args.seed), gz=True)
    print(f"traces ready in {time.perf_counter() - t0:.1f} s: {folder}", flush=True)
    load_start = round(os.getloadavg()[0], 2)
    res = measure_scaling(truths, args.work, counts, jobs)
    res["load_avg_1m_start"] = load_start
    res["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    res["machine"] = machine_info()
    print(format_result(res))
    write_json(args.out, res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
