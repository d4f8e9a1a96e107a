"""Capture throughput: the wall time of a whole capture against the sum of its profiled generate() times.

For each model size (bench_capture's LLaVA-shaped random-weight models), capture's own loop,
``capture.runner.Capture.run``, captures ``--samples`` samples of the built-in synthetic dataset:
the warm-up (one plain and one discarded profiled generate()), every sample under the profiler
with its labels, the trace export and accounting check in the background (capture.exporter),
run.json after every sample, and the identity check of sample 0 at the end. The target: that
wall time at most 1.2x the sum of the samples' profiled generate() times (``wall_ms.generate``
in run.json).

Beside the ratio it reports, per sample (medians): load, preprocess and generate (host clocks),
the rest of the profiled span (labels, the profiler's stop), the loop's own time outside it
(handing over the trace, run.json), and, off the critical path, ``export_ms`` (Kineto's JSON
plus gzip) and ``check_ms`` (the analysis). For reference it also times, on a few extra samples,
what the old path did on the critical path: torch's own ``.json.gz`` export (JSON to the system
temp folder, gzip level 9 in Python) and the check re-reading that file through analyze_paths.

    python benchmarks/bench_throughput.py [--samples 200] [--tokens 8] [--sizes 1024x4,2048x8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from analyze.tables import analyze_paths  # noqa: E402
from benchmarks.bench_analyze import machine_info, write_json  # noqa: E402
from benchmarks.bench_capture import ModelSize, build_adapter  # noqa: E402
from capture.config import CaptureConfig  # noqa: E402
from capture.data.registry import open_dataset  # noqa: E402
from capture.env import resolve_device, resolve_dtype  # noqa: E402
from capture.exporter import GZIP_LEVEL  # noqa: E402
from capture.manifest import RunFolder  # noqa: E402
from capture.runner import Capture  # noqa: E402

TARGET_WALL_OVER_GENERATE = 1.2
OLD_PATH_SAMPLES = 3


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _timed(obj: object, methods: tuple[str, ...]) -> dict[str, float]:
    """Wrap ``obj``'s methods so that their total wall time (s) accumulates in the returned dict."""
    spent = dict.fromkeys(methods, 0.0)
    for name in methods:
        real = getattr(obj, name)

        def timed(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _real(*args, **kw)
            finally:
                spent[_name] += time.perf_counter() - t0

        setattr(obj, name, timed)
    return spent


def old_path_costs(cap: Capture, first_index: int, n: int, work: Path) -> dict[str, float | None]:
    """Median ms of the old critical-path steps on ``n`` extra profiled samples: torch's own
    ``.json.gz`` export (level 9, through the system temp folder) and the check re-reading it."""
    export_ms, check_ms = [], []
    with torch.no_grad():
        for k in range(n):
            _outcome, prof = cap.run_profiled(first_index + k)
            path = work / f"old-{k}.pt.trace.json.gz"
            t0 = time.perf_counter()
            prof.export_chrome_trace(str(path))
            t1 = time.perf_counter()
            analyze_paths([path])
            t2 = time.perf_counter()
            export_ms.append((t1 - t0) * 1e3)
            check_ms.append((t2 - t1) * 1e3)
            path.unlink()
    return {"export_ms": _median(export_ms), "check_ms": _median(check_ms)}


def measure_size(
    size: ModelSize, *, samples: int, tokens: int, device: torch.device, seed: int
) -> dict[str, Any]:
    """One capture of ``samples`` samples at ``size``; its wall time against its generate() times."""
    dtype = resolve_dtype("auto", device)
    adapter = build_adapter(size, device, dtype, seed)
    extra = OLD_PATH_SAMPLES
    dataset = open_dataset(None, seed=seed, n_samples=samples + extra)
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        out = Path(tmp)
        cfg = CaptureConfig(
            model="tiny-llava",  # recorded only; the adapter is the benchmark's own model
            samples=samples,
            out=str(out),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            warmup=1,
            verify="first",
            seed=seed,
        )
        run_dir = out / "run"
        run_dir.mkdir()
        folder = RunFolder.create(run_dir, "run", cfg.to_json())
        cap = Capture(cfg, folder, adapter, dataset)
        phases = _timed(cap, ("warmup", "_verify"))
        t0 = time.perf_counter()
        cap.run()
        wall_s = time.perf_counter() - t0
        trace_mb = [p.stat().st_size / 1e6 for p in run_dir.glob("sample-*.pt.trace.json.gz")]
        old = old_path_costs(cap, samples, extra, out)
    done = [s for s in folder.samples if s.status == "ok"]
    gen = [s.wall_ms["generate"] for s in done]
    total = [s.wall_ms["total"] for s in done]
    inner = [  # the profiled span less load, preprocess and generate(): labels, the profiler's stop
        s.wall_ms["total"] - s.wall_ms["load"] - s.wall_ms["preprocess"] - s.wall_ms["generate"] for s in done
    ]
    gen_s = sum(gen) / 1e3
    loop_s = wall_s - sum(total) / 1e3  # warm-up, handing traces over, run.json, verification
    between_ms = (loop_s - phases["warmup"] - phases["_verify"]) * 1e3 / max(len(done), 1)
    ratio = wall_s / gen_s if gen_s else float("nan")
    median_gen = _median(gen) or float("nan")
    old_extra = (old["export_ms"] or 0.0) + (old["check_ms"] or 0.0)
    return {
        "label": size.label,
        "size": asdict(size),
        "parameters": sum(p.numel() for p in adapter.model.parameters()),
        "device": device.type,
        "samples": samples,
        "captured": len(done),
        "tokens": tokens,
        "wall_s": wall_s,
        "generate_sum_s": gen_s,
        "wall_over_generate": ratio,
        "target": TARGET_WALL_OVER_GENERATE,
        "pass": len(done) == samples and ratio <= TARGET_WALL_OVER_GENERATE,
        "median_ms": {
            "generate": median_gen,
            "load": _median([s.wall_ms["load"] for s in done]),
            "preprocess": _median([s.wall_ms["preprocess"] for s in done]),
            "rest_of_profiled_sample": _median(inner),  # labels, the profiler's start and stop
            "export_background": _median([s.export_ms for s in done if s.export_ms is not None]),
            "check_background": _median([s.check_ms for s in done if s.check_ms is not None]),
        },
        "loop_outside_samples_s": loop_s,
        "warmup_s": phases["warmup"],
        "verification_s": phases["_verify"],
        # Per sample, outside its profiled span: handing the trace over, run.json, the next sample's
        # hooks; the drain of the last traces is spread over the samples too.
        "between_samples_ms": between_ms,
        "trace_mb_median": _median(trace_mb),
        "gzip_level": GZIP_LEVEL,
        "old_path_ms": old,
        # The old loop did both on the critical path of every sample.
        "old_path_extra_over_generate": old_extra / median_gen if median_gen else None,
        "accounting_ok": folder.manifest.verification.accounting.ok
        if folder.manifest.verification.accounting
        else None,
    }


def format_result(res: dict[str, Any]) -> str:
    lines = []
    for r in res["sizes"].values():
        m = r["median_ms"]
        old = r["old_path_ms"]
        verdict = "PASS" if r["pass"] else "MISS"
        lines += [
            f"{r['label']} ({r['parameters'] / 1e6:.0f} M parameters, {r['device']}): "
            f"{r['captured']}/{r['samples']} samples, {r['tokens']} new tokens, traces "
            f"{r['trace_mb_median']:.1f} MB (gzip level {r['gzip_level']})",
            f"  wall {r['wall_s']:.1f} s, sum of profiled generate() {r['generate_sum_s']:.1f} s: "
            f"{r['wall_over_generate']:.3f}x  ({verdict}, target <= {r['target']:.1f}x)",
            f"  per sample (median ms): generate {m['generate']:.0f}, load {m['load']:.1f}, preprocess "
            f"{m['preprocess']:.1f}, rest of the profiled sample {m['rest_of_profiled_sample']:.1f}; in the "
            f"background: export {m['export_background']:.0f}, check {m['check_background']:.0f}",
            f"  outside the samples: warm-up {r['warmup_s']:.1f} s, verification "
            f"{r['verification_s']:.1f} s, "
            f"between samples {r['between_samples_ms']:.1f} ms each (handing traces over, run.json)",
            f"  the old path on the critical path (median ms): torch .gz export {old['export_ms']:.0f}, "
            f"check re-reading it {old['check_ms']:.0f} = {r['old_path_extra_over_generate']:.2f}x a "
            "generate()",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per capture")
    parser.add_argument("--tokens", type=int, default=8, help="new tokens per generate() (min = max)")
    parser.add_argument("--sizes", default="1024x4,2048x8", help="text model sizes, HIDDENxLAYERS,...")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/throughput.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    res: dict[str, Any] = {
        "machine": machine_info(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sizes": {},
    }
    for text in args.sizes.split(","):
        size = ModelSize.parse(text)
        r = measure_size(size, samples=args.samples, tokens=args.tokens, device=device, seed=args.seed)
        res["sizes"][size.label] = r
        print(format_result({"sizes": {size.label: r}}), flush=True)
    res["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    write_json(args.out, res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
