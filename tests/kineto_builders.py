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


# Verdict scenarios (analyze.bound): one GPU sample whose every verdict is known by construction.
# load [0, 1000) and preprocess [1000, 11000) are host work; generate starts at 11000; the prefill
# label [11000, 11200) launches 10 back-to-back 5 ms kernels (11100 .. 61100, launched at 11010,
# 11020, ...); stage4:other then waits in cudaStreamSynchronize [11210, 61110); decode step k
# starts at DECODE_START_US + (k - 1) * STEP_STRIDE_US and is shaped by ``decode``.
DECODE_START_US = 61_200
STEP_STRIDE_US = 10_200
DECODE_SHAPES = ("launch", "graph", "sync", "mixed", "host")


def write_ab_runs(root: Path, b_traces: list[KinetoTrace] | None = None) -> Path:
    """``root/a`` (run-a: two GPU samples, run.json) and ``root/b`` (no run.json; one CPU sample
    unless ``b_traces`` says otherwise); returns ``root``."""
    write_run(root / "a", [vlm_trace("4.x", sample=0), vlm_trace("5.x", sample=1)], manifest("run-a"))
    write_run(root / "b", b_traces if b_traces is not None else [vlm_trace("5.x", gpu=False)])
    return root


def write_mixed_runs(root: Path) -> list[Path]:
    """Three runs under ``root``: ``gpu`` (two samples, identity check failed), ``cpu`` (one
    sample) and ``foreign`` (one unlabelled op, no run.json)."""
    plain = KinetoTrace(device=None)
    plain.op("aten::mm", 0, 10)
    return [
        write_run(
            root / "gpu",
            [vlm_trace("4.x", sample=0), vlm_trace("5.x", sample=1)],
            manifest("gpu", identity_ok=False),
        ),
        write_run(root / "cpu", [vlm_trace("5.x", gpu=False)]),
        write_run(root / "foreign", [plain]),
    ]


def _sync_call(t: KinetoTrace, name: str, start_us: float, end_us: float) -> None:
    t.runtime(name, t._ns(start_us), round((end_us - start_us) * 1000), correlation=t.new_id())


def verdict_trace(decode: str = "launch", *, sample: int = 0, n_steps: int = 3) -> KinetoTrace:
    """A GPU sample: prefill device-bound, stage2:preprocess host, and ``n_steps`` decode steps:

    - "launch": label [s, s+10000), 200 launches (5 us each, every 50 us) of 2 us kernels, each
      10 us after its launch: span 9962 us, busy 400 us (4.0%), launch-bound.
    - "graph": label [s, s+100), ONE cudaGraphLaunch at s+10 (30 us) replaying 300 kernels of
      30 us back to back from s+50; stage4:other syncs until s+9060: span 9040 us, busy 9000 us,
      device-bound, 1 launch for 300 kernels.
    - "sync": label [s, s+10000), a kernel launched at s+10 ([s+20, s+30)), a blocking cudaMemcpy
      [s+40, s+9040) whose copy runs [s+9030, s+9040), a kernel launched at s+9050 ([s+9060,
      s+9070)): span 9060 us, busy 30 us, sync 9000 us: sync-bound, 2 launches.
    - "mixed": label [s, s+1000), kernels [s+20, s+270) and [s+600, s+850) launched at s+10 and
      s+500: span 840 us, busy 500 us (59.5%): mixed.
    - "host": label [s, s+1000) with a cpu_op and no device work: host.
    """
    if decode not in DECODE_SHAPES:
        raise ValueError(decode)
    t = KinetoTrace(device=H100)
    end = DECODE_START_US + n_steps * STEP_STRIDE_US
    t.label(f"sample#{sample}", 0, end + 100)
    t.label("stage1:load", 0, 1000)
    t.label("stage2:preprocess", 1000, 11_000)
    t.op("aten::resize", 1100, 10_900)
    t.label("stage4:generate", 11_000, end)
    t.label("stage4:prefill", 11_000, 11_200)
    for i in range(10):
        t.launch(11_010 + 10 * i, 11_100 + 5000 * i, 11_100 + 5000 * (i + 1), name="prefill_gemm")
    _sync_call(t, "cudaStreamSynchronize", 11_210, 61_110)
    for k in range(1, n_steps + 1):
        s = DECODE_START_US + (k - 1) * STEP_STRIDE_US
        if decode == "launch":
            t.label(f"stage4:decode#{k}", s, s + 10_000)
            for i in range(200):
                t.launch(s + 50 * i, s + 50 * i + 10, s + 50 * i + 12, name="decode_elementwise")
        elif decode == "graph":
            t.label(f"stage4:decode#{k}", s, s + 100)
            corr = t.new_id()
            t.runtime("cudaGraphLaunch", t._ns(s + 10), 30_000, correlation=corr, external_id=corr)
            for i in range(300):
                start = t._ns(s + 50 + 30 * i)
                t.kernel("graph_kernel", 7, start, 30_000, correlation=corr, external_id=corr)
            _sync_call(t, "cudaStreamSynchronize", s + 110, s + 9060)
        elif decode == "sync":
            t.label(f"stage4:decode#{k}", s, s + 10_000)
            t.launch(s + 10, s + 20, s + 30, name="decode_gemv")
            corr = t.new_id()
            t.runtime("cudaMemcpy", t._ns(s + 40), 9_000_000, correlation=corr, external_id=corr)
            t.memcpy("Memcpy DtoH (Device -> Pageable)", 7, t._ns(s + 9030), 10_000, correlation=corr)
            t.launch(s + 9050, s + 9060, s + 9070, name="decode_gemv")
        elif decode == "mixed":
            t.label(f"stage4:decode#{k}", s, s + 1000)
            t.launch(s + 10, s + 20, s + 270, name="decode_gemv")
            t.launch(s + 500, s + 600, s + 850, name="decode_gemv")
        else:
            t.label(f"stage4:decode#{k}", s, s + 1000)
            t.op("aten::argmax", s + 100, s + 900)
    return t


def write_verdict_runs(root: Path) -> list[Path]:
    """Two runs of one model on one GPU that differ only in their settings: ``eager`` (launch-bound
    decode, cache dynamic, no compile) and ``graphs`` (decode replayed as one graph launch per step:
    device-bound; cache static, compile on), one sample of verdict_trace each."""
    eager = manifest("eager", n_samples=1)
    graphs = manifest("graphs", n_samples=1)
    graphs["config"].update(cache="static", compile=True, attn_implementation="sdpa")
    eager["config"]["attn_implementation"] = "sdpa"
    return [
        write_run(root / "eager", [verdict_trace("launch")], eager),
        write_run(root / "graphs", [verdict_trace("graph")], graphs),
    ]
