"""Synthetic stagetrace tables (per the tables contract), DataFrames with known answers.

Used by the report, HTA and notebook tests. Two runs of 4 samples x 8 generation steps:

- RUN_CPU "tiny-llava-…": CPU only, cpu_op ops.
- RUN_GPU "tiny-eventgpt-…": CPU-only too by default; with ``gpu=True`` it has device events
  (kernels in ops, GPU columns filled) and, when ``gpu_traces=True``, one Kineto trace per
  sample in its run folder (``kineto_builders.breakdown_trace``) so HTA can read them.

Numbers are chosen so that medians and ratios are easy to check by hand:
ttft_ms: CPU run 10, 12, 14, 16 (median 13); other run 20, 24, 28, 32 (median 26; ratio 2).
tpot_ms: 4, 4, 5, 5 (median 4.5) and 6, 6, 7, 7 (median 6.5).
vision_ms: 20, 21, 22, 23 (median 21.5) and 40, 41, 42, 43 (median 41.5).
generate_ms = 100 + 10 * i and 200 + 20 * i; tokens = 8, so tokens_per_s = 8000 / generate_ms.
From run.json: prefill_tokens 29 each (CPU run) and 641, 641, 637, 637 (median 639);
kv_cache_mb 1, 2, 3, 4 (median 2.5) and 10, 20, 30, 40 (median 25); peak_mem_mb NaN (CPU run)
and 100, 110, 120, 130 (median 115).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from kineto_builders import breakdown_trace, write_run

from analyze.tables import Tables, conform, write_tables

RUN_CPU = "tiny-llava-20261122-231500"
RUN_GPU = "tiny-eventgpt-20261122-232000"
MODELS = {RUN_CPU: "tiny-llava", RUN_GPU: "tiny-eventgpt"}
N_SAMPLES = 4
N_STEPS = 8

TTFT_MS = {RUN_CPU: [10.0, 12.0, 14.0, 16.0], RUN_GPU: [20.0, 24.0, 28.0, 32.0]}
TPOT_MS = {RUN_CPU: [4.0, 4.0, 5.0, 5.0], RUN_GPU: [6.0, 6.0, 7.0, 7.0]}
VISION_MS = {RUN_CPU: [20.0, 21.0, 22.0, 23.0], RUN_GPU: [40.0, 41.0, 42.0, 43.0]}
GENERATE_MS = {RUN_CPU: [100.0, 110.0, 120.0, 130.0], RUN_GPU: [200.0, 220.0, 240.0, 260.0]}
PREFILL_TOKENS = {RUN_CPU: [29, 29, 29, 29], RUN_GPU: [641, 641, 637, 637]}
KV_CACHE_MB = {RUN_CPU: [1.0, 2.0, 3.0, 4.0], RUN_GPU: [10.0, 20.0, 30.0, 40.0]}
PEAK_MEM_MB = {RUN_CPU: [np.nan] * 4, RUN_GPU: [100.0, 110.0, 120.0, 130.0]}

STAGE_COLUMNS = ("load", "preprocess", "vision", "prefill", "decode", "other", "unlabelled")


def _runs(root: Path, gpu: bool) -> pd.DataFrame:
    ids = [RUN_CPU, RUN_GPU]
    return pd.DataFrame(
        {
            "run_id": ids,
            "model": [MODELS[r] for r in ids],
            "mode": ["fused", "decoupled"],
            "device": ["cpu", "cuda" if gpu else "cpu"],
            "gpu_name": ["", "NVIDIA H100 80GB HBM3" if gpu else ""],
            "torch_version": ["2.13.0", "2.13.0"],
            "transformers_version": ["5.23.0", "5.23.0"],
            "n_samples": [N_SAMPLES, N_SAMPLES],
            "n_skipped": [0, 0],
            "trace_dir": [str(root / r) for r in ids],
            "has_manifest": [True, True],
            "identity_ok": pd.array([True, pd.NA], dtype="boolean"),
            "accounting_ok": pd.array([True, False], dtype="boolean"),
            "overhead_ratio": [1.07, np.nan],
            "has_gpu": [False, gpu],
            "mixed_devices": [False, False],
            "dtype": ["float32", "bfloat16" if gpu else "float32"],
            "attn_implementation": ["sdpa", "sdpa"],
            "cache": ["dynamic", "dynamic"],
            "compile": [False, False],
            "load_in": ["", ""],
            "weights": ["pretrained", "pretrained"],
        }
    )


def _samples(gpu: bool) -> pd.DataFrame:
    rows = []
    for run in (RUN_CPU, RUN_GPU):
        run_gpu = gpu and run == RUN_GPU
        for i in range(N_SAMPLES):
            stage_ms = {
                "load": 5.0 + i,
                "preprocess": 10.0,
                "vision": VISION_MS[run][i],
                "prefill": 30.0,
                "decode": GENERATE_MS[run][i] - 40.0,
                "other": 6.0,
                "unlabelled": 4.0,
            }
            vision_gpu = 0.5 * stage_ms["vision"] if run_gpu else np.nan
            llm_gpu = 0.5 * (stage_ms["prefill"] + stage_ms["decode"]) if run_gpu else np.nan
            llm_host = stage_ms["prefill"] + stage_ms["decode"] + stage_ms["other"]
            rows.append(
                {
                    "run_id": run,
                    "sample_id": f"sample-{i:05d}",
                    "sample_index": i,
                    "trace_file": f"sample-{i:05d}.pt.trace.json.gz",
                    "model": MODELS[run],
                    "total_ms": sum(stage_ms.values()),
                    **{f"{k}_ms": v for k, v in stage_ms.items()},
                    "generate_ms": GENERATE_MS[run][i],
                    "gpu_kernel_ms": (vision_gpu + llm_gpu) if run_gpu else 0.0,
                    "gpu_busy_ms": 0.9 * (vision_gpu + llm_gpu) if run_gpu else 0.0,
                    "vision_gpu_ms": vision_gpu if run_gpu else 0.0,
                    "llm_gpu_ms": llm_gpu if run_gpu else 0.0,
                    "unattributed_gpu_ms": 0.0,
                    "ttft_ms": TTFT_MS[run][i],
                    "tpot_ms": TPOT_MS[run][i],
                    "tokens": N_STEPS,
                    "tokens_per_s": N_STEPS / GENERATE_MS[run][i] * 1000.0,
                    "vision_share_host": stage_ms["vision"] / (stage_ms["vision"] + llm_host),
                    "llm_share_host": llm_host / (stage_ms["vision"] + llm_host),
                    "vision_share_gpu": vision_gpu / (vision_gpu + llm_gpu) if run_gpu else np.nan,
                    "llm_share_gpu": llm_gpu / (vision_gpu + llm_gpu) if run_gpu else np.nan,
                    "timeline": "device" if run_gpu else "host",
                    "gpu_name": "NVIDIA H100 80GB HBM3" if run_gpu else "",
                    "prompt": f"USER: <image>\nquestion {i} ASSISTANT:",
                    "prefill_tokens": PREFILL_TOKENS[run][i],
                    "new_tokens": N_STEPS,
                    "kv_cache_mb": KV_CACHE_MB[run][i],
                    "peak_mem_mb": PEAK_MEM_MB[run][i],
                }
            )
    return pd.DataFrame(rows).astype({"sample_index": "int64", "tokens": "int64"})


def _tokens(gpu: bool) -> pd.DataFrame:
    rows = []
    for run in (RUN_CPU, RUN_GPU):
        run_gpu = gpu and run == RUN_GPU
        for i in range(N_SAMPLES):
            lat = [TTFT_MS[run][i]] + [TPOT_MS[run][i] + 0.1 * (k - 4) for k in range(1, N_STEPS)]
            emitted = np.cumsum(lat)
            for k in range(N_STEPS):
                host = 0.8 * lat[k]
                rows.append(
                    {
                        "run_id": run,
                        "sample_id": f"sample-{i:05d}",
                        "step": k,
                        "phase": "prefill" if k == 0 else "decode",
                        "start_ms": float(emitted[k] - lat[k]),
                        "emitted_ms": float(emitted[k]),
                        "latency_ms": float(lat[k]),
                        "host_ms": host,
                        # decode steps 1-3 are launch-bound on the GPU run: kernels a fifth of host time
                        "gpu_kernel_ms": (host * (0.2 if 1 <= k <= 3 else 0.9)) if run_gpu else 0.0,
                        "n_kernels": 12 if run_gpu else 0,
                        **evidence_columns(run_gpu, host, 0.04 if 1 <= k <= 3 else 0.9),
                    }
                )
    return pd.DataFrame(rows).astype({"step": "int64", "n_kernels": "int64", "n_launches": "int64"})


# The verdicts of the GPU run: decode steps 1-3 launch-bound (GPU busy 4%), the others device-bound
# (90%); per stage, vision and prefill device-bound, decode launch-bound (20%). CPU run: all host.
STAGE_BUSY = {"stage3:vision": 0.9, "stage4:prefill": 0.9, "stage4:decode": 0.2}


def evidence_columns(run_gpu: bool, span_ms: float, busy_share: float) -> dict[str, object]:
    """The verdict columns of a step or stage that spans ``span_ms`` with this GPU-busy share."""
    if not run_gpu:
        return {
            "bound": "host",
            "bound_span_ms": span_ms,
            "gpu_busy_share": np.nan,
            "launch_ms": 0.0,
            "n_launches": 0,
            "n_graph_launches": 0,
            "kernel_mean_us": np.nan,
            "kernel_median_us": np.nan,
            "sync_ms": 0.0,
        }
    return {
        "bound": "device" if busy_share >= 0.7 else "launch",
        "bound_span_ms": span_ms,
        "gpu_busy_share": busy_share,
        "launch_ms": 0.06,
        "n_launches": 12,
        "n_graph_launches": 0,
        "kernel_mean_us": 1000.0 * busy_share * span_ms / 12,
        "kernel_median_us": 1000.0 * busy_share * span_ms / 12,
        "sync_ms": 0.0,
    }


def _ops_and_stages(gpu: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    op_rows = []
    stage_rows = []
    cpu_ops = {"aten::linear": 40.0, "aten::addmm": 30.0, "aten::softmax": 5.0, "aten::layer_norm": 3.0}
    kernels = {
        "ampere_sgemm_128x64_tn": 60.0,
        "void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>": 9.0,
        "flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64, 64, 4>>": 20.0,
    }
    stages = {"stage3:vision": 1.0, "stage4:prefill": 2.0, "stage4:decode": 5.0}
    for run in (RUN_CPU, RUN_GPU):
        run_gpu = gpu and run == RUN_GPU
        for i in range(N_SAMPLES):
            sid = f"sample-{i:05d}"
            for stage, scale in stages.items():
                for name, us in cpu_ops.items():
                    op_rows.append((run, sid, stage, "cpu_op", name, 4, 4 * us * scale, us * scale))
                if run_gpu:
                    op_rows.append((run, sid, stage, "cuda_runtime", "cudaLaunchKernel", 12, 60.0, 5.0))
                    for name, us in kernels.items():
                        op_rows.append((run, sid, stage, "kernel", name, 4, 4 * us * scale, us * scale))
                host = 10.0 * scale
                stage_rows.append(
                    {
                        "run_id": run,
                        "sample_id": sid,
                        "stage": stage,
                        "host_ms": host,
                        "host_self_ms": host,
                        "gpu_kernel_ms": 0.3 * host if run_gpu else 0.0,
                        "gpu_memcpy_ms": 0.0,
                        "gpu_busy_ms": 0.3 * host if run_gpu else 0.0,
                        "gpu_span_ms": 0.5 * host if run_gpu else 0.0,
                        "n_labels": 7 if stage == "stage4:decode" else 1,
                        "n_host_ops": 16,
                        "n_kernels": 12 if run_gpu else 0,
                        "n_device_events": 12 if run_gpu else 0,
                        **evidence_columns(run_gpu, host, STAGE_BUSY[stage]),
                    }
                )
    ops = pd.DataFrame(
        op_rows, columns=["run_id", "sample_id", "stage", "kind", "name", "count", "total_us", "mean_us"]
    ).astype({"count": "int64"})
    return ops, pd.DataFrame(stage_rows).astype(
        {c: "int64" for c in ("n_labels", "n_host_ops", "n_kernels", "n_device_events")}
    )


def make_tables(
    root: Path, *, gpu: bool = False, gpu_traces: bool = False, runs: Sequence[str] = (RUN_CPU, RUN_GPU)
) -> Tables:
    """Synthetic Tables of the two fixture runs (or the subset ``runs``), run folders under ``root``."""
    ops, stages = _ops_and_stages(gpu)
    tables = {
        "runs": _runs(root, gpu),
        "samples": _samples(gpu),
        "stages": stages,
        "tokens": _tokens(gpu),
        "ops": ops,
    }
    for name in ("stages", "tokens", "ops"):
        tables[name]["model"] = tables[name]["run_id"].map(MODELS)
    tables = {k: conform(df.loc[df["run_id"].isin(runs)], k) for k, df in tables.items()}
    if gpu and gpu_traces and RUN_GPU in runs:
        write_run(root / RUN_GPU, [breakdown_trace(i) for i in range(N_SAMPLES)])
    return Tables(**tables)


def write_parquet_tables(tables: Tables, out_dir: Path) -> Path:
    """The five tables as analyze writes them (``tables/<name>/run_id=<id>/``); returns ``out_dir``."""
    write_tables(tables, out_dir)
    return out_dir
