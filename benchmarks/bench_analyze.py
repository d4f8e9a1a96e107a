"""Analysis throughput: ``analyze`` against HolisticTraceAnalysis and the bare JSON parse, same files.

Synthetic 7B-shaped traces (``gen_traces.py``; default 20 x 50 MB, gzipped as capture writes them)
are read, in one run, by:

* ``analyze DIR --out OUT --jobs N`` (the CLI a user runs: its process wall, imports and Parquet
  writing included), at ``--jobs 1`` and ``--jobs 2``;
* HolisticTraceAnalysis, ``TraceAnalysis(trace_dir=DIR, include_last_profiler_step=True)`` (its
  own parser; one trace per rank; it uses a process pool of ``min(cpu_count, ranks)`` by default);
* ``json.loads`` and ``orjson.loads`` of the same, already decompressed, bytes in memory: the
  parse floor (file reading and gzip excluded from their time).

Each runs in its own child process, whose wall time and peak RSS (``wait4``'s ``ru_maxrss``,
largest process of the child's tree, forked from a small launcher) are read from outside.
Throughput is uncompressed MB per second. Targets: analyze at least 5x faster than HTA loading
(both with 2 processes), within 2x of ``orjson.loads`` alone (analyze at ``--jobs 1``), and a
peak RSS of at most 3x the largest trace (``--jobs 1``; the import baseline of the interpreter
is reported beside it).

    python benchmarks/bench_analyze.py [--n 20] [--mb 50] [--plain] [--hta-max N] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyze.files import write_text_atomic  # noqa: E402
from benchmarks.gen_traces import MB, TraceShape, TraceTruth, generate_set  # noqa: E402

TARGET_VS_HTA = 5.0  # analyze at least this many times faster than HTA
TARGET_VS_ORJSON = 2.0  # analyze at most this many times orjson.loads' time
TARGET_PEAK_VS_TRACE = 3.0  # peak RSS at most this many times the largest trace

# Children: each prints one JSON line (its own timing) on stdout as the last line.
_HTA_CHILD = """
import json, logging, sys, time
logging.disable(logging.WARNING)
from hta.trace_analysis import TraceAnalysis
t0 = time.perf_counter()
analysis = TraceAnalysis(trace_dir=sys.argv[1], include_last_profiler_step=True)
work_s = time.perf_counter() - t0
print(json.dumps({"work_s": work_s, "ranks": len(analysis.t.get_ranks())}))
"""

_LOADS_CHILD = """
import gzip, json, sys, time
import orjson
loads = {"json": json.loads, "orjson": orjson.loads}[sys.argv[1]]
work_s = read_s = 0.0
for path in sys.argv[2:]:
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\\x1f\\x8b":
        data = gzip.decompress(data)
    t1 = time.perf_counter()
    doc = loads(data)
    t2 = time.perf_counter()
    del doc, data
    read_s += t1 - t0
    work_s += t2 - t1
print(json.dumps({"work_s": work_s, "read_s": read_s}))
"""

_BASELINE_CHILD = """
import json
import analyze.cli, analyze.tables, pyarrow.parquet
print(json.dumps({}))
"""


@dataclass
class Measured:
    """One child process: its wall time, its tree's peak RSS, and what it printed about itself."""

    name: str
    wall_s: float
    peak_rss_mb: float
    returncode: int
    reported: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""


# Runs argv[2:] as its own child and writes that child's wall time and rusage to argv[1]. Linux
# carries the exec-ing process's old peak RSS into ``ru_maxrss`` across exec, so a command
# started straight from a large process (pytest with torch, the trace generator) would report
# at least that process's size. Forking from this small launcher keeps the figure the command's.
_LAUNCHER = """
import json, os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
cpus = os.environ.pop("BENCH_CPUS", "")
if cpus:
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall_s = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
with open(report, "w") as fh:
    json.dump({"wall_s": wall_s, "maxrss_kib": usage.ru_maxrss, "returncode": code}, fh)
"""


def run_child(
    name: str,
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 1800,
    cwd: Path = ROOT,
) -> Measured:
    """Run ``cmd`` in a fresh process; its wall clock and the peak RSS of its process tree.

    The peak is ``ru_maxrss`` from ``wait4`` on the command alone (its waited-for descendants,
    such as worker pools, included): the largest single process, not a sum. The last line the
    command prints, when it is a JSON object, is returned as ``reported``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rusage.json"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            launcher = [sys.executable, "-c", _LAUNCHER, str(report), *cmd]
            proc = subprocess.Popen(
                launcher, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the launcher's own session: it and the command only
                proc.wait()
        stdout = out_path.read_text(errors="replace").strip().splitlines()
        stderr = err_path.read_text(errors="replace")
        usage = json.loads(report.read_text()) if report.exists() else {}
    returncode = int(usage.get("returncode", proc.returncode if proc.returncode else -9))
    reported: Any = {}
    if stdout:
        try:
            reported = json.loads(stdout[-1])
        except json.JSONDecodeError:
            reported = {}
    return Measured(
        name=name,
        wall_s=float(usage.get("wall_s", float("nan"))),
        peak_rss_mb=usage.get("maxrss_kib", 0) * 1024 / MB,  # Linux reports KiB
        returncode=returncode,
        reported=reported if isinstance(reported, dict) else {},
        stderr_tail=stderr[-2000:] if returncode else "",
    )


def python_env() -> dict[str, str]:
    """The children's environment: the repository importable, no stray threading differences."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TQDM_DISABLE", "1")
    return env


def analyze_cli(
    name: str, paths: list[Path], out_dir: Path, jobs: int, *, fresh: bool = True, quiet: bool = True
) -> Measured:
    """What a user runs: ``analyze PATH... --out OUT --jobs N [--quiet]`` in a fresh process.

    ``fresh``: OUT is removed first (else kept, so the run reuses what an earlier one left)."""
    if fresh:
        shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "analyze", *map(str, paths), "--out", str(out_dir), "--jobs", str(jobs)]
    return run_child(name, cmd + (["--quiet"] if quiet else []), env=python_env())


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU model, cores, memory, GPU (none unless torch sees one)."""
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    gpu = ""
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                           capture_output=True, text=True, check=False)  # fmt: skip
        gpu = q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else ""
    return {
        "cpu_model": model,
        "cpu_cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "gpu": gpu or "none",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("holistictraceanalysis", "orjson", "msgspec", "pandas", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = ""
    return out


def hta_dir(trace_paths: list[Path], work: Path, n: int) -> Path:
    """A folder holding (links to) the first ``n`` traces: one file per rank, nothing else."""
    folder = work / f"hta-{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p in trace_paths[:n]:
        (folder / p.name).symlink_to(p.resolve())
    return folder


def verify_tables(out_dir: Path, truths: list[TraceTruth]) -> str:
    """Check analyze's tables against what the generator put into the traces; "" when all agree."""
    from analyze.tables import read_tables

    tables = read_tables(out_dir)
    samples = tables.samples.set_index("sample_index")
    problems = []
    if len(samples) != len(truths):
        problems.append(f"{len(samples)} sample rows for {len(truths)} traces")
    for t in truths:
        if t.sample_index not in samples.index:
            problems.append(f"sample {t.sample_index} missing")
            continue
        row = samples.loc[t.sample_index]
        if row["tokens"] != t.decode_steps + 1:
            problems.append(f"sample {t.sample_index}: {row['tokens']} tokens, expected {t.decode_steps + 1}")
        if abs(row["gpu_kernel_ms"] - t.kernel_us / 1e3) > 1e-6 * max(1.0, t.kernel_us / 1e3):
            got, want = row["gpu_kernel_ms"], t.kernel_us / 1e3
            problems.append(f"sample {t.sample_index}: gpu_kernel_ms {got} != {want}")
    n_kernels = int(tables.stages["n_kernels"].sum())
    if n_kernels != sum(t.n_kernels for t in truths):
        problems.append(f"{n_kernels} kernels attributed, {sum(t.n_kernels for t in truths)} generated")
    for name in ("runs", "stages", "tokens", "ops"):
        if len(getattr(tables, name)) == 0:
            problems.append(f"{name} table is empty")
    return "; ".join(problems)


def measure(truths: list[TraceTruth], work: Path, *, hta_max: int | None = None) -> dict[str, Any]:
    """Time every reader on the traces of ``truths``; returns the rows and verdicts (JSON-ready).

    HTA is run on the first ``hta_max`` traces (all when None) and its time scaled linearly to
    the full set when it was given fewer.
    """
    work.mkdir(parents=True, exist_ok=True)
    paths = [Path(t.path) for t in truths]
    total_mb = sum(t.size_bytes for t in truths) / MB
    largest_mb = max(t.size_bytes for t in truths) / MB
    env = python_env()
    py = sys.executable
    load_start = os.getloadavg()[0]

    rows: list[Measured] = [
        run_child("import baseline (analyze + pyarrow)", [py, "-c", _BASELINE_CHILD], env=env),
        analyze_cli("analyze --jobs 1", [paths[0].parent], work / "analysis-j1", jobs=1),
        analyze_cli("analyze --jobs 2", [paths[0].parent], work / "analysis-j2", jobs=2),
    ]
    n_hta = len(paths) if hta_max is None else max(1, min(hta_max, len(paths)))
    rows.append(
        run_child("HTA TraceAnalysis", [py, "-c", _HTA_CHILD, str(hta_dir(paths, work, n_hta))], env=env)
    )
    for lib in ("json", "orjson"):
        rows.append(run_child(f"{lib}.loads", [py, "-c", _LOADS_CHILD, lib, *map(str, paths)], env=env))
    failed = [r for r in rows if r.returncode != 0]
    if failed:
        raise RuntimeError(
            "; ".join(f"{r.name} exited {r.returncode}: {r.stderr_tail.strip()[-400:]}" for r in failed)
        )

    by = {r.name: r for r in rows}
    hta_scale = len(paths) / n_hta
    hta = by["HTA TraceAnalysis"]
    if hta.reported.get("ranks") != n_hta:
        raise RuntimeError(f"HTA loaded {hta.reported.get('ranks')} ranks of {n_hta}")
    problems = verify_tables(work / "analysis-j1", truths)
    table = []
    for r in rows[1:]:
        # Analyze: the CLI process wall. HTA: its process wall (imports included, like the CLI's),
        # scaled when run on a subset. Loads: the parse alone.
        if r.name.startswith("analyze"):
            seconds = r.wall_s
        elif r is hta:
            seconds = r.wall_s * hta_scale
        else:
            seconds = float(r.reported["work_s"])
        table.append({
            "reader": r.name,
            "seconds": seconds,
            "mb_per_s": total_mb / seconds,
            "peak_rss_mb": r.peak_rss_mb,
            "process_wall_s": r.wall_s,
            "work_s": r.reported.get("work_s"),
        })  # fmt: skip
    secs = {row["reader"]: row["seconds"] for row in table}
    baseline_mb = by["import baseline (analyze + pyarrow)"].peak_rss_mb
    peak_mb = by["analyze --jobs 1"].peak_rss_mb
    vs_hta = secs["HTA TraceAnalysis"] / secs["analyze --jobs 2"]
    vs_orjson = secs["analyze --jobs 1"] / secs["orjson.loads"]
    targets = [
        {
            "target": f"analyze >= {TARGET_VS_HTA:g}x faster than HTA loading (2 processes each)",
            "value": vs_hta,
            "pass": vs_hta >= TARGET_VS_HTA,
        },
        {
            "target": f"analyze (--jobs 1, end to end) within {TARGET_VS_ORJSON:g}x of orjson.loads alone",
            "value": vs_orjson,
            "pass": vs_orjson <= TARGET_VS_ORJSON,
        },
        {
            "target": f"analyze peak RSS <= {TARGET_PEAK_VS_TRACE:g}x the largest trace "
            f"({largest_mb:.0f} MB)",
            "value": peak_mb / largest_mb,
            "pass": peak_mb <= TARGET_PEAK_VS_TRACE * largest_mb,
        },
    ]
    return {
        "n_traces": len(paths),
        "trace_mb_each": largest_mb,
        "total_mb": total_mb,
        "gzip": paths[0].name.endswith(".gz"),
        "decode_steps_per_trace": truths[0].decode_steps,
        "events_per_trace": truths[0].n_events,
        "kernels_per_trace": truths[0].n_kernels,
        "hta_traces_measured": n_hta,
        "hta_scaled": n_hta < len(paths),
        "hta_work_s": hta.reported.get("work_s"),
        "rows": table,
        "ratios": {
            "hta_over_analyze_j2": vs_hta,
            "hta_over_analyze_j1": secs["HTA TraceAnalysis"] / secs["analyze --jobs 1"],
            "analyze_j1_over_orjson": vs_orjson,
            "analyze_j1_over_json": secs["analyze --jobs 1"] / secs["json.loads"],
            "peak_over_largest_trace": peak_mb / largest_mb,
            "peak_above_baseline_over_largest_trace": (peak_mb - baseline_mb) / largest_mb,
        },
        "table_problems": problems,
        "import_baseline_rss_mb": baseline_mb,
        "targets": targets,
        "load_avg_1m_start": round(load_start, 2),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------ issue 14: single traces, memory
TARGET_SINGLE_VS_HTA = 5.0  # analyze CLI at least this many times faster than HTA, one trace each
TARGET_PEAK_ABOVE_START = 2.0  # peak RSS above start-up at most this many times the trace
TARGET_MB_PER_CPU_S = 100.0  # in-process, gzipped input: uncompressed MB per CPU second

# The in-process child: imports, a warm-up on a small trace (lazy imports, caches), then the trace
# itself analysed and its tables written. Peak memory is VmHWM reset after the warm-up, above the
# RSS the process then has; time is CPU time of the process (all threads), best of --repeats.
_INPROC_CHILD = """
import ctypes, gc, json, os, sys, time
from pathlib import Path
from analyze.tables import analyze_paths, write_tables
trace, warm, out, repeats = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key)) / 1024
def settle():
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
start_mb = status("VmRSS:")
write_tables(analyze_paths([warm])[0], out)
settle()
ready_mb = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
cpu, wall = [], []
for k in range(repeats):
    c0, t0 = time.process_time(), time.perf_counter()
    tables, warnings = analyze_paths([trace])
    write_tables(tables, out)
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - t0)
    if k == 0:
        peak_mb = status("VmHWM:")
    del tables
    settle()
print(json.dumps({"start_rss_mb": start_mb, "ready_rss_mb": ready_mb, "peak_rss_mb": peak_mb,
                  "cpu_s": cpu, "wall_s": wall, "samples": 1}))
"""


@functools.cache
def uncompressed_mb(path: Path) -> float:
    """Decimal MB of a trace's JSON text (inflated as a stream, once per trace and run)."""
    from analyze.parse import inflate

    return sum(len(piece) for piece in inflate(path)) / MB


def real_traces(folder: Path) -> list[Path]:
    """The real Kineto traces of ../shared/data (kineto-gpu, kineto-inference), if present."""
    return sorted(p for sub in ("kineto-gpu", "kineto-inference") for p in (folder / sub).glob("*.json.gz"))


def _rotation(items: list[str], k: int) -> list[str]:
    k %= len(items)
    return items[k:] + items[:k]


def measure_single(
    traces: list[tuple[str, Path]],
    work: Path,
    *,
    rounds: int,
    cpus: str,
    compare_src: Path | None = None,
) -> list[dict[str, Any]]:
    """Each trace on its own, each reader a fresh process, the readers alternating in every round.

    Readers: ``analyze TRACE --out DIR`` (summary printed, as a user runs it), the same with
    ``-q``, and HTA's ``TraceAnalysis`` load of a folder holding only that trace; with
    ``compare_src`` also ``analyze`` from that source tree. All pinned to ``cpus``. The ratio
    HTA / analyze is taken within each round (paired), then its median and spread over rounds.
    """
    env = python_env()
    env["BENCH_CPUS"] = cpus
    old_env = None
    if compare_src is not None:
        old_env = dict(env)
        old_env["PYTHONPATH"] = str(compare_src) + os.pathsep + os.environ.get("PYTHONPATH", "")
    py = sys.executable
    rows = []
    for name, trace in traces:
        folder = work / "single" / name
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "hta").mkdir(parents=True)
        (folder / "hta" / trace.name).symlink_to(trace.resolve())
        out = folder / "analysis"
        variants: dict[str, tuple[list[str], dict[str, str], Path]] = {
            "analyze": ([py, "-m", "analyze", str(trace), "--out", str(out)], env, ROOT),
            "analyze -q": ([py, "-m", "analyze", str(trace), "--out", str(out), "-q"], env, ROOT),
            "HTA": ([py, "-c", _HTA_CHILD, str(folder / "hta")], env, ROOT),
        }
        if old_env is not None and compare_src is not None:  # run from there: sys.path[0] is the cwd
            cmd = [py, "-m", "analyze", str(trace), "--out", str(out)]
            variants["analyze (compare)"] = (cmd, old_env, compare_src)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(rounds):
            for v in _rotation(list(variants), r):
                cmd, cmd_env, cwd = variants[v]
                m = run_child(f"{name}: {v}", cmd, env=cmd_env, cwd=cwd)
                if m.returncode != 0:
                    raise RuntimeError(f"{name}: {v} exited {m.returncode}: {m.stderr_tail.strip()[-400:]}")
                times[v].append(m.wall_s)
        paired = [h / a for h, a in zip(times["HTA"], times["analyze"], strict=True)]
        paired_q = [h / a for h, a in zip(times["HTA"], times["analyze -q"], strict=True)]
        row = {
            "trace": name,
            "path": str(trace),
            "mb": uncompressed_mb(trace),
            "seconds": {v: statistics.median(t) for v, t in times.items()},
            "all_seconds": times,
            "hta_over_analyze": statistics.median(paired),
            "hta_over_analyze_spread": [min(paired), max(paired)],
            "hta_over_analyze_quiet": statistics.median(paired_q),
            "hta_over_analyze_quiet_spread": [min(paired_q), max(paired_q)],
            "pass": statistics.median(paired) >= TARGET_SINGLE_VS_HTA,
        }
        if old_env is not None:
            row["compare_over_analyze"] = statistics.median(
                o / a for o, a in zip(times["analyze (compare)"], times["analyze"], strict=True)
            )
        rows.append(row)
        print(
            f"  {name}: HTA/analyze {row['hta_over_analyze']:.2f}x "
            f"({min(paired):.2f}-{max(paired):.2f}), -q {row['hta_over_analyze_quiet']:.2f}x; "
            + ", ".join(f"{v} {s:.2f} s" for v, s in row["seconds"].items()),
            flush=True,
        )
    return rows


def measure_inproc(
    traces: list[tuple[str, Path]],
    warm: Path,
    work: Path,
    *,
    repeats: int,
    cpus: str,
    compare_src: Path | None = None,
    judged: set[str] | None = None,
) -> list[dict[str, Any]]:
    """Peak memory above start-up and CPU throughput of analysis inside one process, per trace.

    ``judged``: the traces the targets are judged on (default all); small real traces are
    reported, but a few MB of tables weigh more than the trace there.
    """
    sources: dict[str, Path | None] = {"analyze": None}
    if compare_src is not None:
        sources["analyze (compare)"] = compare_src
    rows = []
    for name, trace in traces:
        mb = uncompressed_mb(trace)
        for label, src in sources.items():
            env = python_env()
            env["BENCH_CPUS"] = cpus
            if src is not None:
                env["PYTHONPATH"] = str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")
            out = work / "inproc" / name
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-c", _INPROC_CHILD, str(trace), str(warm), str(out), str(repeats)]
            m = run_child(f"{name}: {label} in-process", cmd, env=env, cwd=src or ROOT)
            if m.returncode != 0:
                why = m.stderr_tail.strip()[-400:]
                raise RuntimeError(f"{name}: in-process exited {m.returncode}: {why}")
            rep = m.reported
            above = rep["peak_rss_mb"] - rep["ready_rss_mb"]
            cpu_s = min(rep["cpu_s"])
            row = {
                "trace": name,
                "source": label,
                "mb": mb,
                "gzip": trace.name.endswith(".gz"),
                "start_rss_mb": rep["start_rss_mb"],
                "ready_rss_mb": rep["ready_rss_mb"],
                "peak_rss_mb": rep["peak_rss_mb"],
                "peak_above_start_mb": above,
                "peak_above_imports_mb": rep["peak_rss_mb"] - rep["start_rss_mb"],
                "peak_above_start_over_trace": above / mb,
                "cpu_s": rep["cpu_s"],
                "wall_s": rep["wall_s"],
                "mb_per_cpu_s": mb / cpu_s,
                "mb_per_cpu_s_spread": [mb / max(rep["cpu_s"]), mb / cpu_s],
                "judged": judged is None or name in judged,
            }
            rows.append(row)
            print(
                f"  {name} ({label}): {mb:.1f} MB, peak {above:.0f} MB above start-up "
                f"({row['peak_above_start_over_trace']:.2f}x the trace), "
                f"{row['mb_per_cpu_s']:.0f} MB per CPU second (cpu s: {rep['cpu_s']})",
                flush=True,
            )
    return rows


def single_targets(single: list[dict[str, Any]], inproc: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 14's analysis targets as PASS/MISS rows."""
    targets = []
    for row in single:
        targets.append({
            "target": f"analyze CLI >= {TARGET_SINGLE_VS_HTA:g}x faster than HTA on {row['trace']} "
            f"({row['mb']:.1f} MB), fresh processes",
            "value": row["hta_over_analyze"],
            "spread": row["hta_over_analyze_spread"],
            "pass": row["pass"],
        })  # fmt: skip
    for row in inproc:
        if row["source"] != "analyze" or not row["judged"]:
            continue
        targets.append({
            "target": f"peak above start-up <= {TARGET_PEAK_ABOVE_START:g}x the trace ({row['trace']}, "
            f"{row['mb']:.0f} MB)",
            "value": row["peak_above_start_over_trace"],
            "pass": row["peak_above_start_over_trace"] <= TARGET_PEAK_ABOVE_START,
        })  # fmt: skip
        if row["gzip"]:
            targets.append({
                "target": f"in-process >= {TARGET_MB_PER_CPU_S:g} MB per CPU second on gzip ({row['trace']})",
                "value": row["mb_per_cpu_s"],
                "spread": row["mb_per_cpu_s_spread"],
                "pass": row["mb_per_cpu_s"] >= TARGET_MB_PER_CPU_S,
            })  # fmt: skip
    return targets


def format_single(single: list[dict[str, Any]], inproc: list[dict[str, Any]]) -> str:
    lines = ["single traces, each reader a fresh process (median s over rounds; ratio paired by round):"]
    for r in single:
        secs = ", ".join(f"{v} {s:.2f}" for v, s in r["seconds"].items())
        lo, hi = r["hta_over_analyze_spread"]
        lines.append(
            f"  {r['trace']:<42} {r['mb']:>6.1f} MB  {secs}  HTA/analyze {r['hta_over_analyze']:.2f}x "
            f"({lo:.2f}-{hi:.2f}), -q {r['hta_over_analyze_quiet']:.2f}x"
        )
    lines.append("in-process analysis (tables written; peak above the RSS after imports and a warm-up):")
    for r in inproc:
        lines.append(
            f"  {r['trace']:<42} {r['source']:<18} {r['mb']:>6.1f} MB  peak "
            f"+{r['peak_above_start_mb']:.0f} MB = {r['peak_above_start_over_trace']:.2f}x  "
            f"{r['mb_per_cpu_s']:.0f} MB/CPU-s"
        )
    for t in single_targets(single, inproc):
        lines.append(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']:.2f}")
    return "\n".join(lines)


def format_result(res: dict[str, Any]) -> str:
    """The printed table, ratios and PASS/MISS lines."""
    lines = [
        f"analysis throughput: {res['n_traces']} traces x {res['trace_mb_each']:.1f} MB "
        f"({res['total_mb']:.0f} MB uncompressed, {'gzip' if res['gzip'] else 'plain JSON'}; "
        f"{res['events_per_trace']:,} events, {res['kernels_per_trace']:,} kernels, "
        f"{res['decode_steps_per_trace']} decode steps each)",
        f"{'reader':<22} {'seconds':>9} {'MB/s':>8} {'peak RSS MB':>12}",
    ]
    for row in res["rows"]:
        lines.append(
            f"{row['reader']:<22} {row['seconds']:>9.2f} {row['mb_per_s']:>8.1f} {row['peak_rss_mb']:>12.0f}"
        )
    r = res["ratios"]
    notes = [
        "analyze: CLI process wall (start-up, imports, gunzip, Parquet included); json/orjson: parse of the "
        "decompressed bytes only",
        f"import baseline of an analyze process: {res['import_baseline_rss_mb']:.0f} MB RSS; analyze's peak "
        f"above it = {r['peak_above_baseline_over_largest_trace']:.2f}x the largest trace",
    ]
    if res["hta_scaled"]:
        notes.append(
            f"HTA measured on {res['hta_traces_measured']} of {res['n_traces']} traces and scaled linearly"
        )
    notes.append("tables checked against the generator: " + (res["table_problems"] or "all agree"))
    lines += [f"  note: {n}" for n in notes]
    lines.append(
        f"ratios: HTA/analyze(j2) {r['hta_over_analyze_j2']:.1f}x, "
        f"HTA/analyze(j1) {r['hta_over_analyze_j1']:.1f}x, "
        f"analyze(j1)/orjson {r['analyze_j1_over_orjson']:.2f}x, "
        f"analyze(j1)/json {r['analyze_j1_over_json']:.2f}x, "
        f"peak/largest trace {r['peak_over_largest_trace']:.2f}x"
    )
    for t in res["targets"]:
        lines.append(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']:.2f}x")
    lines.append(
        f"load average (1 min): {res['load_avg_1m_start']} at start, {res['load_avg_1m_end']} at end"
    )
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON write (temporary name in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="number of traces")
    parser.add_argument("--mb", type=float, default=50.0, help="uncompressed size of each trace (MB)")
    parser.add_argument("--plain", action="store_true", help="plain .json instead of .json.gz")
    parser.add_argument("--hta-max", type=int, default=None, help="run HTA on this many traces and scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-multi", action="store_true", help="skip the many-traces comparison")
    parser.add_argument("--real-dir", type=Path, default=ROOT.parent / "shared" / "data",
                        help="real traces (kineto-gpu/, kineto-inference/) for single runs")  # fmt: skip
    parser.add_argument("--single-mb", type=float, default=5.0, help="also a generated trace this big")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per single trace up to 10 MB")
    parser.add_argument("--rounds-large", type=int, default=3, help="rounds per larger single trace")
    parser.add_argument("--repeats", type=int, default=3, help="in-process timings per trace")
    parser.add_argument("--cpus", default=str((os.cpu_count() or 1) - 1),
                        help="CPUs the single-trace and in-process children are pinned to")  # fmt: skip
    parser.add_argument("--compare-src", type=Path, default=None,
                        help="another source tree of stagetrace, measured beside this one")  # fmt: skip
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks/out/work-analyze",
                        help="folder for the generated traces and outputs (reused between runs)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/analyze.json")
    args = parser.parse_args(argv)

    gz = not args.plain
    folder = args.work / f"traces-{args.n}x{args.mb:g}mb{'-gz' if gz else ''}"
    t0 = time.perf_counter()
    truths = generate_set(folder, args.n, TraceShape.for_size(args.mb, args.seed), gz=gz)
    small_shape = TraceShape.for_size(args.single_mb)
    small = generate_set(args.work / f"single-{args.single_mb:g}mb", 1, small_shape, gz=True)
    warm = generate_set(args.work / "warm-0.2mb", 1, TraceShape.for_size(0.2), gz=True)
    print(f"traces ready in {time.perf_counter() - t0:.1f} s: {folder}", flush=True)
    res: dict[str, Any] = {"targets": []}
    if not args.no_multi:
        res = measure(truths, args.work, hta_max=args.hta_max)
    real = [(p.name.removesuffix(".json.gz"), p) for p in real_traces(args.real_dir)]
    generated = [
        (f"generated {t.size_bytes / MB:.0f} MB", Path(t.path)) for t in (small[0], truths[0])
    ]
    if not real:
        print(f"no real traces under {args.real_dir}: single-trace figures from generated traces only")
    print("single traces:", flush=True)
    single = measure_single(
        [(n, p) for n, p in real + generated if uncompressed_mb(p) <= 10], args.work,
        rounds=args.rounds, cpus=args.cpus, compare_src=args.compare_src,
    ) + measure_single(
        [(n, p) for n, p in real + generated if uncompressed_mb(p) > 10], args.work,
        rounds=args.rounds_large, cpus=args.cpus, compare_src=args.compare_src,
    )  # fmt: skip
    print("in-process:", flush=True)
    inproc = measure_inproc(
        real + generated, Path(warm[0].path), args.work, repeats=args.repeats, cpus=args.cpus,
        compare_src=args.compare_src, judged={generated[-1][0]},
    )  # fmt: skip
    res["single"], res["inproc"] = single, inproc
    res["single_targets"] = single_targets(single, inproc)
    res["pinned_cpus"] = args.cpus
    res["real_dir"] = str(args.real_dir)
    res["machine"] = machine_info()
    res["versions"] = _versions()
    res["trace_shape"] = asdict(TraceShape.for_size(args.mb, args.seed))
    if not args.no_multi:
        print(format_result(res))
    print(format_single(single, inproc))
    write_json(args.out, res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
