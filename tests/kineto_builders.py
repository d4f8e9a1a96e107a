"""Test scenarios: Kineto traces with hand-computed answers, built with ``benchmarks.kineto``.

Times are microseconds after the trace's base (the builder adds the base, a large epoch-like
offset, as real traces have). ``vlm_trace`` is the labelled VLM scenario whose per-stage
numbers are worked out by hand in ``VLM_EXPECTED``; ``breakdown_trace`` is the one HTA's
breakdowns are checked on (``DEVICE_EVENTS``). ``manifest`` and ``write_run`` make run folders.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.kineto import SYNTHETIC_GPU, KinetoTrace


def vlm_trace(
    order: str = "5.x", *, sample: int = 0, gpu: bool = True, flows: bool = True, sample_label: bool = True
) -> KinetoTrace:
    """One sample of a VLM run with stagetrace labels; answers in VLM_EXPECTED.

    order "4.x": stage3:vision nested inside stage4:prefill (transformers 4.x);
    order "5.x": stage3:vision before stage4:prefill, directly inside stage4:generate.
    gpu=False drops every launch and device event (a CPU-only trace). flows=False drops the
    ac2g flow of the one kernel that only a flow links (it then becomes unattributed).
    sample_label=False leaves out the ``sample#i`` label (as a foreign trace would).
    """
    t = KinetoTrace(device=SYNTHETIC_GPU if gpu else None)
    if sample_label:
        t.label(f"sample#{sample}", 0, 1000)
    t.label("stage1:load", 10, 60)
    t.label("stage2:preprocess", 60, 160)
    t.op("aten::to", 100, 120, external_id=500)
    t.label("stage4:generate", 200, 900)
    if order == "4.x":
        t.label("stage4:prefill", 210, 500)
        t.label("stage3:vision", 220, 400)
        t.label("stage3:vision/tower", 230, 330)
    elif order == "5.x":
        t.label("stage3:vision", 210, 390)
        t.label("stage3:vision/tower", 220, 320)
        t.label("stage4:prefill", 400, 510)
    else:
        raise ValueError(order)
    t.label("stage4:decode#1", 550, 650)
    t.label("stage4:decode#2", 700, 800)
    t.op("aten::add", 300, 310, tid=200)  # another thread: not inside vision
    if gpu:
        t.launch(0, 130, 140, link="external", external_id=500)  # preprocess, via External id
        t.launch(170, 175, 180)  # unlabelled
        t.launch(240, 250, 330, stream=7)  # tower
        t.launch(250, 300, 350, stream=8)  # tower, overlapping on another stream
        t.launch(340, 345, 385, stream=7)  # vision itself
        t.launch(450, 455, 520, stream=7)  # prefill
        t.launch(460, 470, 480, stream=8, cat="gpu_memcpy", name="Memcpy HtoD (Pageable -> Device)")
        t.launch(520, 525, 530)  # stage4:other
        t.launch(560, 565, 600, stream=7)  # decode#1
        t.launch(570, 575, 610, stream=8)  # decode#1
        t.launch(710, 715, 760, stream=7)  # decode#2
        t.launch(720, 725, 735, stream=8, link="flow" if flows else "none")  # decode#2 via flow
        t.launch(0, 950, 970, link="none")  # unattributed
    return t


# Hand-computed answers for vlm_trace (milliseconds). Host self times are equal in both orders.
VLM_EXPECTED = {
    "total_ms": 1.0,
    "self_ms": {
        "stage1:load": 0.05,
        "stage2:preprocess": 0.10,
        "stage3:vision": 0.08,
        "stage3:vision/tower": 0.10,
        "stage4:prefill": 0.11,
        "stage4:decode": 0.20,
        "stage4:other": 0.21,
        "unlabelled": 0.15,
    },
    "host_ms": {"4.x": {"stage4:prefill": 0.29}, "5.x": {"stage4:prefill": 0.11}},
    "kernel_ms": {
        "stage2:preprocess": 0.010,
        "stage3:vision/tower": 0.130,
        "stage3:vision": 0.040,
        "stage4:prefill": 0.065,
        "stage4:other": 0.005,
        "stage4:decode": 0.125,
        "unlabelled": 0.005,
        "unattributed": 0.020,
    },
    "memcpy_ms": {"stage4:prefill": 0.010},
    "busy_ms": {
        "stage3:vision/tower": 0.100,
        "stage3:vision": 0.040,
        "stage4:prefill": 0.065,
        "stage4:decode": 0.090,
    },
    "span_ms": {"stage3:vision/tower": 0.100, "stage4:decode": 0.195},
    "gpu_kernel_ms": 0.400,
    "vision_gpu_ms": 0.170,
    "llm_gpu_ms": 0.195,
    "gpu_busy_ms": 0.330,
    "emitted_ms": [0.32, 0.41, 0.56],
    "latency_ms": [0.32, 0.09, 0.15],
    "ttft_ms": 0.32,
    "tpot_ms": 0.12,
    "step_kernel_ms": {"4.x": [0.235, 0.070, 0.055], "5.x": [0.065, 0.070, 0.055]},
}


# Device events of every breakdown_trace: (cat, name, stream, start_us, dur_us), relative to the
# first one. GPU span 0..350 us; busy 100 + 50 (compute) + 50 (memcpy): idle 150 us, compute
# 150 us, non-compute 50 us.
DEVICE_EVENTS: tuple[tuple[str, str, int, float, float], ...] = (
    ("kernel", "ampere_sgemm_128x64_tn", 7, 0.0, 100.0),
    (
        "kernel",
        "void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>",
        7,
        150.0,
        50.0,
    ),
    ("gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 7, 300.0, 50.0),
)
H100 = {"id": 0, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 85_000_000_000}


def breakdown_trace(sample: int = 0) -> KinetoTrace:
    """A small GPU trace for HTA's breakdowns: DEVICE_EVENTS launched in decode (answers above).

    Host: sample#i [0, 1000) > stage4:generate [100, 900) > stage4:prefill [100, 300) and
    stage4:decode#1 [300, 600); one cudaLaunchKernel / cudaMemcpyAsync per device event, linked
    by correlation. Device events start at 400.
    """
    t = KinetoTrace(device=H100)
    t.label(f"sample#{sample}", 0, 1000)
    t.label("stage4:generate", 100, 900)
    t.label("stage4:prefill", 100, 300)
    t.label("stage4:decode#1", 300, 600)
    for i, (cat, name, stream, start_us, dur_us) in enumerate(DEVICE_EVENTS):
        start_us += 400
        t.launch(310 + 20 * i, start_us, start_us + dur_us, stream=stream, name=name, cat=cat, runtime_us=10)
    return t


def manifest(
    run_id: str, model: str = "tiny-llava", *, n_samples: int = 2, identity_ok: bool | None = True
) -> dict:
    """A run.json as capture writes it (only the fields analyze reads matter)."""
    return {
        "schema": "stagetrace.run/1",
        "run_id": run_id,
        "status": "complete",
        "config": {"model": model, "mode": "fused", "samples": n_samples, "max_new_tokens": 3},
        "model": {"name": model, "class": "LlavaForConditionalGeneration"},
        "env": {
            "python": "3.11.7",
            "torch": "2.13.0",
            "transformers": "5.23.0",
            "device": "cuda",
            "gpu_name": "Synthetic GPU",
        },
        "samples": [
            {
                "index": i,
                "sample_id": f"synthetic-{i:05d}",
                "trace": f"sample-{i:05d}.pt.trace.json.gz",
                "status": "ok",
            }
            for i in range(n_samples)
        ],
        "verification": {
            "identity": {"ok": identity_ok, "checked": [0], "mismatches": []},
            "accounting": {"ok": True, "max_error_ms": 0.0},
            "overhead": {"profiled_ms": 31.0, "unprofiled_ms": 29.0, "ratio": 1.07},
        },
    }


def write_run(run_dir: Path, traces: list[KinetoTrace], run_json: dict | None = None) -> Path:
    """A run folder: ``sample-NNNNN.pt.trace.json.gz`` per trace, plus run.json when given."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for i, trace in enumerate(traces):
        trace.write(run_dir / f"sample-{i:05d}.pt.trace.json.gz")
    if run_json is not None:
        (run_dir / "run.json").write_text(json.dumps(run_json))
    return run_dir
