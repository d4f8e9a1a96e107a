"""The cost of ``--weights random``: building each real-size model on the meta device, and
materialising it in bf16 on the CPU.

Each (model, stage) runs in its own fresh process, one at a time, so each peak RSS is that
build's alone:

* ``meta``: the published architecture constructed on the meta device (no weights allocated);
  its peak RSS is the interpreter with torch and transformers imported, the baseline.
* ``bf16``: the same, then allocated in bf16 on the CPU and filled by transformers'
  initialisation (normal(0, 0.02)), with the rotary and position buffers recomputed; this is
  what ``capture --weights random --dtype bfloat16`` does before its first sample.

The target checks that no float32 copy is ever made: the bf16 build's peak RSS above the meta
baseline stays under 1.25x the bf16 weights (a float32 copy on the way would need 3x).

    python benchmarks/bench_build.py [--models llava-1.5,video-llava,eventgpt] [--stages meta,bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_analyze import machine_info, python_env, run_child, write_json  # noqa: E402

MODELS = ("llava-1.5", "video-llava", "eventgpt")
STAGES = ("meta", "bf16")
TARGET_OVERHEAD = 1.25  # peak RSS above the meta baseline / bf16 weight bytes
MB = 1e6


def build_child(model: str, stage: str) -> dict[str, Any]:
    """In the child process: build ``model`` as ``capture --weights random`` does; phase times."""
    t0 = time.perf_counter()
    import torch

    from capture.models.base import ModelSpec
    from capture.models.registry import adapter_class

    t_import = time.perf_counter()
    device = torch.device("meta" if stage == "meta" else "cpu")
    spec = ModelSpec(model, None, device, torch.bfloat16, 0, weights="random")
    adapter = adapter_class(model).build(spec)
    t_built = time.perf_counter()
    params = list(adapter.model.parameters())
    inv_freq = next(b for n, b in adapter.model.named_buffers() if n.endswith("inv_freq"))
    return {
        "model": model,
        "stage": stage,
        "import_s": round(t_import - t0, 3),
        "build_s": round(t_built - t_import, 3),
        "parameters": sum(p.numel() for p in params),
        "weights_mb": sum(p.numel() * p.element_size() for p in params) / MB,
        "param_dtypes": sorted({str(p.dtype) for p in params}),
        "inv_freq_dtype": str(inv_freq.dtype),
        "threads": torch.get_num_threads(),
    }


def measure(models: list[str], stages: list[str]) -> dict[str, Any]:
    """One child per (model, stage), one at a time; rows with wall time and peak RSS."""
    rows = []
    for model in models:
        for stage in stages:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", model, "--stage", stage]
            m = run_child(f"{model}/{stage}", cmd, env=python_env(), timeout_s=3600)
            if m.returncode != 0:
                raise SystemExit(f"{model}/{stage} failed (exit {m.returncode}): {m.stderr_tail}")
            rows.append({**m.reported, "wall_s": round(m.wall_s, 2), "peak_rss_mb": round(m.peak_rss_mb, 1)})
            print(format_row(rows[-1]), flush=True)
    targets = []
    for model in models:
        by_stage = {r["stage"]: r for r in rows if r["model"] == model}
        if {"meta", "bf16"} <= by_stage.keys():
            meta, bf16 = by_stage["meta"], by_stage["bf16"]
            ratio = (bf16["peak_rss_mb"] - meta["peak_rss_mb"]) / bf16["weights_mb"]
            targets.append({
                "target": f"{model}: bf16 build's RSS above baseline <= {TARGET_OVERHEAD}x its weights",
                "value": round(ratio, 3),
                "pass": ratio <= TARGET_OVERHEAD,
            })  # fmt: skip
    return {"rows": rows, "targets": targets}


def format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['model']:<12} {r['stage']:<5} {r['parameters']:>14,} params  build {r['build_s']:7.1f} s  "
        f"(process {r['wall_s']:6.1f} s, imports {r['import_s']:.1f} s)  "
        f"peak RSS {r['peak_rss_mb']:8.0f} MB  "
        f"weights {r['weights_mb']:8.0f} MB {','.join(r['param_dtypes'])}, inv_freq {r['inv_freq_dtype']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--stages", default=",".join(STAGES), help="meta, bf16 (bf16 needs ~15 GB free)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/build.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stage", default="meta", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(build_child(args.child, args.stage)))
        return 0
    models = [m for m in args.models.split(",") if m]
    stages = [s for s in args.stages.split(",") if s]
    bad = (set(models) - set(MODELS)) | (set(stages) - set(STAGES))
    if bad:
        parser.error(f"unknown {sorted(bad)}; models: {', '.join(MODELS)}; stages: {', '.join(STAGES)}")
    machine = machine_info()
    print(f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {machine['memory_gb']} GB; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    res = measure(models, stages)
    for t in res["targets"]:
        print(f"{t['target']}: {t['value']:.2f}x {'PASS' if t['pass'] else 'MISS'}")
    write_json(args.out, {**res, "machine": machine, "load_avg_1m_end": round(os.getloadavg()[0], 2)})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
