"""The files on disk: the one declaration of each, imported by capture and analyze alike.

- The five Parquet tables of an analysis: ``TABLE_SCHEMAS`` maps each table to its columns
  (name -> pandas dtype), in order. Every time column carries its unit in its name.
- run.json, the manifest of a capture run: see the Structs below.

Torch-free, like :mod:`analyze.vocabulary` (the label contract).
"""

from __future__ import annotations

STR, INT, FLOAT, BOOL, NULLABLE_BOOL = "str", "int64", "float64", "bool", "boolean"

TABLE_SCHEMAS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": STR,
        "model": STR,
        "mode": STR,
        "device": STR,
        "gpu_name": STR,
        "torch_version": STR,
        "transformers_version": STR,
        "n_samples": INT,
        "n_skipped": INT,
        "trace_dir": STR,
        "has_manifest": BOOL,
        "identity_ok": NULLABLE_BOOL,
        "accounting_ok": NULLABLE_BOOL,
        "overhead_ratio": FLOAT,
        "has_gpu": BOOL,
    },
    "samples": {
        "run_id": STR,
        "sample_id": STR,
        "sample_index": INT,
        "trace_file": STR,
        "model": STR,
        "total_ms": FLOAT,
        "load_ms": FLOAT,
        "preprocess_ms": FLOAT,
        "vision_ms": FLOAT,
        "prefill_ms": FLOAT,
        "decode_ms": FLOAT,
        "other_ms": FLOAT,
        "unlabelled_ms": FLOAT,
        "generate_ms": FLOAT,
        "gpu_kernel_ms": FLOAT,
        "vision_gpu_ms": FLOAT,
        "llm_gpu_ms": FLOAT,
        "unattributed_gpu_ms": FLOAT,
        "ttft_ms": FLOAT,
        "tpot_ms": FLOAT,
        "tokens": INT,
        "tokens_per_s": FLOAT,
        "vision_share_host": FLOAT,
        "llm_share_host": FLOAT,
        "vision_share_gpu": FLOAT,
        "llm_share_gpu": FLOAT,
        "timeline": STR,
        "gpu_busy_ms": FLOAT,
    },
    "stages": {
        "run_id": STR,
        "sample_id": STR,
        "stage": STR,
        "host_ms": FLOAT,
        "host_self_ms": FLOAT,
        "gpu_kernel_ms": FLOAT,
        "gpu_memcpy_ms": FLOAT,
        "gpu_busy_ms": FLOAT,
        "gpu_span_ms": FLOAT,
        "n_labels": INT,
        "n_host_ops": INT,
        "n_kernels": INT,
        "n_device_events": INT,
        "model": STR,
    },
    "tokens": {
        "run_id": STR,
        "sample_id": STR,
        "step": INT,
        "phase": STR,
        "start_ms": FLOAT,
        "emitted_ms": FLOAT,
        "latency_ms": FLOAT,
        "host_ms": FLOAT,
        "gpu_kernel_ms": FLOAT,
        "n_kernels": INT,
        "model": STR,
    },
    "ops": {
        "run_id": STR,
        "sample_id": STR,
        "stage": STR,
        "kind": STR,
        "name": STR,
        "count": INT,
        "total_us": FLOAT,
        "mean_us": FLOAT,
        "model": STR,
    },
}

TABLE_NAMES = tuple(TABLE_SCHEMAS)
