"""``make bench``: every benchmark in its own process, then one summary table.

Runs bench_events, bench_capture, bench_throughput, bench_analyze, bench_scaling and bench_build
one after another (each in a fresh process, so each measures its own memory), streams their output,
reads the JSON each writes under benchmarks/out/, prints the headline figures with their targets,
and writes benchmarks/out/summary.json with the machine they came from and how long it all took.

    python benchmarks/run_all.py [--quick] [--only analyze,capture]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_analyze import machine_info, write_json  # noqa: E402

OUT = ROOT / "benchmarks/out"

# name -> (script, arguments for the full run, arguments for --quick)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "events": ("bench_events.py", [], ["--events", "300000", "--repeats", "2"]),
    "capture": (
        "bench_capture.py",
        ["--budget-s", "30", "--rounds", "5"],
        ["--sizes", "256x2", "--rounds", "2", "--tokens", "8"],
    ),
    "throughput": ("bench_throughput.py", [], ["--sizes", "256x2", "--samples", "6", "--tokens", "4"]),
    "analyze": (
        "bench_analyze.py",
        ["--n", "6", "--rounds", "4"],
        [
            *("--n", "3", "--mb", "10", "--single-mb", "2", "--repeats", "1"),
            *("--rounds", "1", "--rounds-large", "1"),
        ],
    ),
    # make bench stays within 15 minutes: scaling to 100 traces and builds on the meta device here;
    # the scripts' own defaults give the 1,000-trace and bf16 figures (about 5 minutes each, and
    # ~15 GB free memory for bf16).
    "scaling": ("bench_scaling.py", ["--counts", "1,10,100"], ["--counts", "1,10", "--mb", "0.5"]),
    "build": ("bench_build.py", ["--stages", "meta"], ["--stages", "meta"]),
}


def _row(bench: str, figure: str, value: str, target: str = "", ok: bool | None = None) -> dict[str, Any]:
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    return {"benchmark": bench, "figure": figure, "value": value, "target": target, "verdict": verdict}


def summarise(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline rows of each benchmark's JSON result."""
    rows: list[dict[str, Any]] = []
    ev = results.get("events")
    if ev:
        rows.append(_row("events", "vectorised vs per-event loop", f"{ev['speedup']:.0f}x faster",
                         f">= {ev['target_speedup']:.0f}x", bool(ev["meets_target"])))  # fmt: skip
    cap = results.get("capture")
    if cap:
        for label, res in cap["sizes"].items():
            for key in ("stagetrace/off", "bare/off", "stagetrace/bare"):
                r = res["ratios"][key]
                value = (
                    f"{r['wall']:.3f}x wall, {r['per_token']:.3f}x per-token "
                    f"(paired {r['wall_paired']:.3f}x, {r['per_token_paired']:.3f}x)"
                )
                checks = [t for t in res["targets"] if t["target"].startswith(key + " ")]
                target = ", ".join(t["target"].removeprefix(key + " ") for t in checks)
                ok = all(t["pass"] for t in checks) if checks else None
                rows.append(_row("capture", f"{label} ({res['device']}): {key}", value, target, ok))
    tp = results.get("throughput")
    if tp:
        for label, r in tp["sizes"].items():
            m = r["median_ms"]
            value = (
                f"{r['wall_over_generate']:.3f}x ({r['captured']} samples, {r['tokens']} tokens; generate "
                f"{m['generate']:.0f} ms, export {m['export_background']:.0f} ms and check "
                f"{m['check_background']:.0f} ms in the background)"
            )
            rows.append(_row("throughput", f"{label}: capture wall / sum of generate()", value,
                             f"<= {r['target']:.1f}x", bool(r["pass"])))  # fmt: skip
    an = results.get("analyze")
    if an and an.get("rows"):  # the many-traces comparison (not with --no-multi)
        secs = {r["reader"]: r for r in an["rows"]}
        for reader in (
            "analyze --jobs 1",
            "analyze --jobs 2",
            "HTA TraceAnalysis",
            "orjson.loads",
            "json.loads",
        ):
            r = secs[reader]
            figure = f"{reader} ({an['n_traces']} x {an['trace_mb_each']:.0f} MB)"
            value = f"{r['mb_per_s']:.1f} MB/s, {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB"
            rows.append(_row("analyze", figure, value))
        for t in an["targets"]:
            rows.append(_row("analyze", t["target"], f"{t['value']:.2f}x", "", t["pass"]))
    if an and an.get("single"):
        for r in an["single"]:
            lo, hi = r["hta_over_analyze_spread"]
            secs = r["seconds"]
            value = (
                f"{r['hta_over_analyze']:.2f}x ({lo:.2f}-{hi:.2f}; analyze {secs['analyze']:.2f} s, "
                f"-q {secs['analyze -q']:.2f} s, HTA {secs['HTA']:.2f} s)"
            )
            rows.append(_row("analyze", f"single trace {r['trace']} ({r['mb']:.1f} MB): HTA / analyze CLI",
                             value, ">= 5x", bool(r["pass"])))  # fmt: skip
        for r in an["inproc"]:
            if r["source"] != "analyze":
                continue
            value = (
                f"peak +{r['peak_above_start_mb']:.0f} MB = {r['peak_above_start_over_trace']:.2f}x the "
                "trace, "
                f"{r['mb_per_cpu_s']:.0f} MB per CPU s"
            )
            verdict = None
            if r["judged"]:
                fast = not r["gzip"] or r["mb_per_cpu_s"] >= 100
                verdict = r["peak_above_start_over_trace"] <= 2.0 and fast
            rows.append(_row("analyze", f"in-process {r['trace']} ({r['mb']:.1f} MB)", value,
                             "<= 2x, >= 100 MB/s" if r["judged"] else "", verdict))  # fmt: skip
    sc = results.get("scaling")
    if sc:
        for r in sc["rows"]:
            value = f"{r['seconds']:.1f} s, {r['mb_per_s']:.0f} MB/s, peak {r['peak_rss_mb']:.0f} MB"
            figure = f"{r['traces']} traces, --jobs {r['jobs']}, {r.get('run', 'first')}"
            rows.append(_row("scaling", figure, value))
    bu = results.get("build")
    if bu:
        for r in bu["rows"]:
            value = f"{r['build_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB ({r['parameters']:,} params)"
            rows.append(_row("build", f"{r['model']} random, {r['stage']}", value))
        for t in bu["targets"]:
            rows.append(_row("build", t["target"], f"{t['value']:.2f}x", "", t["pass"]))
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    widths = [max(len(str(r[k])) for r in rows) for k in ("benchmark", "figure", "value", "target")]
    head = ("benchmark", "figure", "value", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  verdict"]
    for r in rows:
        cells = [str(r[k]).ljust(w) for k, w in zip(head, widths, strict=True)]
        lines.append("  ".join(cells) + "  " + r["verdict"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the scripts run (seconds)")
    parser.add_argument("--only", default=",".join(BENCHES), help="benchmarks to run, comma-separated")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(BENCHES)}")

    out_dir = OUT / ("quick" if args.quick else "")
    machine = machine_info()
    print(f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {machine['memory_gb']} GB, "
          f"GPU {machine['gpu']}; load average {machine['load_avg_1m']}", flush=True)  # fmt: skip
    t_all = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    failed: list[str] = []
    for name in names:
        script, full, quick = BENCHES[name]
        out = out_dir / f"{name}.json"
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            *(quick if args.quick else full),
            "--out",
            str(out),
        ]
        print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, check=False)
        timings[name] = time.perf_counter() - t0
        print(f"== {name} took {timings[name]:.0f} s (exit {proc.returncode})", flush=True)
        if proc.returncode != 0 or not out.exists():
            failed.append(name)
            continue
        results[name] = json.loads(out.read_text())
    total_s = time.perf_counter() - t_all

    rows = summarise(results)
    print("\nsummary")
    print(format_summary(rows) if rows else "(no results)")
    print(f"\ntotal {total_s:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); "
          f"load average at the end {os.getloadavg()[0]:.2f}")  # fmt: skip
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    write_json(out_dir / "summary.json", {
        "machine": machine,
        "quick": args.quick,
        "total_s": total_s,
        "seconds_per_benchmark": timings,
        "rows": rows,
        "failed": failed,
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    })  # fmt: skip
    print(f"wrote {out_dir / 'summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
