"""Build synthetic Kineto (Chrome JSON) traces with known answers, for tests.

Times are given in microseconds relative to the trace's base; the builder adds the base (a
large epoch-like offset, as real traces have) when it writes events. ``vlm_trace`` builds the
labelled VLM scenario whose per-stage numbers are worked out by hand in ``VLM_EXPECTED``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

HOST_PID = 100
MAIN_TID = 100
GPU_PID = 0


class KinetoTrace:
    """A Kineto-shaped trace under construction: host thread(s), GPU streams, flows."""

    def __init__(self, *, base_us: float = 1_700_000_000_000.0, gpu: bool = True) -> None:
        self.base_us = base_us
        self.events: list[dict[str, Any]] = [
            {
                "ph": "M",
                "name": "process_name",
                "pid": HOST_PID,
                "tid": 0,
                "ts": base_us,
                "args": {"name": "python"},
            },
            {
                "ph": "M",
                "name": "thread_name",
                "pid": HOST_PID,
                "tid": MAIN_TID,
                "ts": base_us,
                "args": {"name": "main"},
            },
        ]
        self.gpu = gpu
        self._next_id = 1000

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _x(self, cat: str, name: str, start: float, end: float, pid: Any, tid: Any, args: dict) -> None:
        self.events.append(
            {
                "ph": "X",
                "cat": cat,
                "name": name,
                "pid": pid,
                "tid": tid,
                "ts": self.base_us + start,
                "dur": end - start,
                "args": args,
            }
        )

    def label(self, name: str, start: float, end: float, *, tid: Any = MAIN_TID) -> None:
        """A record_function range (cat user_annotation) on a host thread."""
        self._x("user_annotation", name, start, end, HOST_PID, tid, {"External id": self._new_id()})

    def op(
        self,
        name: str,
        start: float,
        end: float,
        *,
        tid: Any = MAIN_TID,
        cat: str = "cpu_op",
        external_id: int | None = None,
    ) -> None:
        """A host op (cpu_op by default)."""
        self._x(cat, name, start, end, HOST_PID, tid, {"External id": external_id or self._new_id()})

    def launch(
        self,
        at: float,
        start: float,
        end: float,
        *,
        stream: int = 7,
        name: str = "gemm_kernel",
        cat: str = "kernel",
        link: str = "correlation",
        external_id: int | None = None,
        tid: Any = MAIN_TID,
        runtime_us: float = 5.0,
    ) -> int:
        """A device event on ``stream`` over [start, end), launched from the host at ``at``.

        link: "correlation" (runtime call and kernel share args.correlation), "flow" (the
        kernel has no correlation; an ac2g s/f flow joins them), "external" (kernel carries
        only ``external_id``, which a cpu_op must have; no runtime call), "none" (a
        correlation that no host event has: unattributed).
        """
        corr = self._new_id()
        runtime = "cudaLaunchKernel" if cat == "kernel" else "cudaMemcpyAsync"
        if link in ("correlation", "flow"):
            self._x(
                "cuda_runtime",
                runtime,
                at,
                at + runtime_us,
                HOST_PID,
                tid,
                {"External id": corr, "cbid": 211, "correlation": corr},
            )
        args: dict[str, Any] = {"device": 0, "context": 1, "stream": stream}
        if link == "correlation":
            args |= {"correlation": corr, "External id": corr}
        elif link == "external":
            args |= {"External id": external_id}
        elif link == "none":
            args |= {"correlation": 999_999}
        self._x(cat, name, start, end, GPU_PID, stream, args)
        if link == "flow":
            self.events.append(
                {
                    "ph": "s",
                    "id": corr,
                    "pid": HOST_PID,
                    "tid": tid,
                    "ts": self.base_us + at,
                    "cat": "ac2g",
                    "name": "ac2g",
                }
            )
            self.events.append(
                {
                    "ph": "f",
                    "id": corr,
                    "pid": GPU_PID,
                    "tid": stream,
                    "ts": self.base_us + start,
                    "cat": "ac2g",
                    "name": "ac2g",
                    "bp": "e",
                }
            )
        return corr

    def to_dict(self) -> dict[str, Any]:
        props = [{"id": 0, "name": "Synthetic GPU", "totalGlobalMem": 1}] if self.gpu else []
        span = {
            "ph": "X",
            "cat": "Trace",
            "name": "PyTorch Profiler (0)",
            "pid": "Spans",
            "tid": "PyTorch Profiler",
            "ts": self.base_us - 50,
            "dur": 5000.0,
            "args": {"Op count": 0},
        }
        return {"schemaVersion": 1, "deviceProperties": props, "traceEvents": [*self.events, span]}

    def write(self, path: Path) -> Path:
        """Write as JSON, gzipped when ``path`` ends with .gz."""
        data = json.dumps(self.to_dict()).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
        return path


def vlm_trace(order: str = "5.x", *, sample: int = 0, gpu: bool = True, flows: bool = True) -> KinetoTrace:
    """One sample of a VLM run with stagetrace labels; answers in VLM_EXPECTED.

    order "4.x": stage3:vision nested inside stage4:prefill (transformers 4.x);
    order "5.x": stage3:vision before stage4:prefill, directly inside stage4:generate.
    gpu=False drops every launch and device event (a CPU-only trace). flows=False drops the
    ac2g flow of the one kernel that only a flow links (it then becomes unattributed).
    """
    t = KinetoTrace(gpu=gpu)
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
