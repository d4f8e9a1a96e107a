"""Synthetic Kineto traces shaped like a 7B LLaVA run of stagetrace on a GPU, with known answers.

Each trace is one sample as ``capture`` records it: ``sample#i`` > ``stage1:load``,
``stage2:preprocess``, ``stage4:generate`` > ``stage3:vision`` (``/tower``, ``/projector``),
``stage4:prefill``, ``stage4:decode#k``... as ``user_annotation`` labels on the main thread. Under
them run the eager transformers ops of a CLIP ViT-L/14 tower and a 32-layer LLaMA-7B in bf16:
nested ``cpu_op`` events, ``cudaLaunchKernel`` / ``cudaMemcpyAsync`` calls with ``correlation``
and ``External id``, kernels on two streams carrying the same correlation, ``ac2g`` flow pairs,
memcpy and memset, stream syncs, ``gpu_user_annotation`` envelopes. A host thread with a few
unlabelled ops and one device event with no launcher are included, as real traces have them. The
events go into a :class:`benchmarks.kineto.KinetoTrace`, whose writer adds Kineto's metadata and
multi-line layout.

The simulation is deterministic for a seed. Decode steps are added until the file reaches the
target size (or a fixed count is given), and :class:`TraceTruth` records what was put there, per
stage and per step, so tests can check what ``analyze`` attributes.

    python benchmarks/gen_traces.py --out DIR [--n 20] [--mb 50] [--gzip] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from analyze import vocabulary as vocab
from analyze.files import write_text_atomic
from benchmarks.kineto import A100, KinetoTrace
from capture.config import option

MB = 1_000_000  # sizes are decimal megabytes of uncompressed JSON

HOST_PID = 23817
HOST_TID = 23817
LOADER_TID = 23904  # a second host thread: pin-memory style work, outside every label
MAIN_STREAM = 7
SIDE_STREAM = 20
BASE_TS_NS = 4_532_721_000_000_000  # Kineto's relative clock (us ~ 4.5e9 s), as torch 2.x writes it
BASE_TIME_NS = 1_790_857_026_000_000_000


@dataclass(frozen=True)
class TraceShape:
    """What one synthetic trace looks like."""

    target_mb: float = option(50.0, "Uncompressed size to reach (decimal MB), by adding decode steps.")
    decode_steps: int | None = option(None, "Fixed number of decode steps instead of a target size.")
    llm_layers: int = option(32, "Decoder layers of the language model (LLaMA-7B: 32).")
    vision_layers: int = option(24, "Encoder layers of the vision tower (CLIP ViT-L/14: 24).")
    prompt_tokens: int = option(620, "Prompt length, image tokens included (sets prefill kernel times).")
    min_decode_steps: int = option(1, "At least this many decode steps whatever the size.")
    max_decode_steps: int = option(4096, "At most this many decode steps whatever the size.")
    seed: int = option(0, "Seed: same shape and seed give byte-identical files.")

    @classmethod
    def for_size(cls, target_mb: float, seed: int = 0) -> TraceShape:
        """The 7B shape from 40 MB up; below that, fewer layers so a small file still has many steps."""
        scale = min(1.0, target_mb / 40.0)
        return cls(
            target_mb=target_mb,
            llm_layers=max(2, round(32 * scale)),
            vision_layers=max(2, round(24 * scale)),
            seed=seed,
        )


@dataclass
class TraceTruth:
    """What the generator put into one trace: the answers analyze must find."""

    path: str
    sample_index: int
    size_bytes: int  # uncompressed JSON
    n_events: int  # traceEvents entries, metadata included
    decode_steps: int  # stage4:decode#1..N
    kernels_by_stage: dict[str, int] = field(default_factory=dict)  # attributed stage -> kernels
    kernel_us_by_stage: dict[str, float] = field(default_factory=dict)
    memcpy_by_stage: dict[str, int] = field(default_factory=dict)  # gpu_memcpy + gpu_memset
    kernels_by_step: list[int] = field(default_factory=list)  # step 0 = prefill
    kernel_us_by_step: list[float] = field(default_factory=list)
    step_emitted_ns: list[int] = field(default_factory=list)  # end of each step's last device event
    generate_start_ns: int = 0

    @property
    def n_kernels(self) -> int:
        return sum(self.kernels_by_stage.values())

    @property
    def kernel_us(self) -> float:
        return sum(self.kernel_us_by_stage.values())


# -- kernel catalogue -------------------------------------------------------------------------------
# (name, grid, block, registers per thread, shared memory) — names as CUDA 12 / PyTorch 2.x print them.
_EW = (
    "void at::native::vectorized_elementwise_kernel<4, {f}, at::detail::Array<char*, {n}> >"
    "(int, {f}, at::detail::Array<char*, {n}>)"
)
_K: dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int], int, int]] = {
    "gemm_prefill": (
        "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn", (32, 5, 1), (128, 1, 1), 238, 65536
    ),
    "gemm_prefill_mlp": (
        "ampere_bf16_s16816gemm_bf16_256x128_ldg8_f2f_stages_64x3_tn", (43, 5, 1), (256, 1, 1), 232, 98304
    ),
    "gemm_decode": (
        "ampere_bf16_s16816gemm_bf16_64x64_sliced1x2_ldg8_f2f_stages_64x5_tn",
        (64, 1, 4), (128, 1, 1), 126, 81920,
    ),
    "gemm_decode_mlp": (
        "sm80_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize32x32x64_stage6_warpsize2x2x1_tensor16x8x16_kernel",
        (344, 1, 2), (128, 1, 1), 96, 49152,
    ),
    "gemm_vision": (
        "void cutlass::Kernel2<cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_tn_align8>"
        "(cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_tn_align8::Params)",
        (16, 10, 1), (128, 1, 1), 168, 73728,
    ),
    "conv": (
        "sm80_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x32_stage4"
        "_warpsize2x2x1_g1_tensor16x8x16_kernel",
        (5, 8, 1), (128, 1, 1), 232, 81920,
    ),
    "flash_prefill": (
        "void pytorch_flash::flash_fwd_kernel<pytorch_flash::Flash_fwd_kernel_traits<128, 128, 64, 4, false, "
        "false, cutlass::bfloat16_t, pytorch_flash::Flash_kernel_traits<128, 128, 64, 4, "
        "cutlass::bfloat16_t> >, "
        "false, true, false, false, true, true, false, false>(pytorch_flash::Flash_fwd_params)",
        (5, 1, 32), (128, 1, 1), 255, 49152,
    ),
    "flash_decode": (
        "void pytorch_flash::flash_fwd_splitkv_kernel<pytorch_flash::Flash_fwd_kernel_traits<128, 64, 128, "
        "4, false, false, cutlass::bfloat16_t, pytorch_flash::Flash_kernel_traits<128, 64, 128, 4, "
        "cutlass::bfloat16_t> >, false, true, false, false, true, false, true, false>"
        "(pytorch_flash::Flash_fwd_params)",
        (1, 4, 32), (128, 1, 1), 255, 65536,
    ),
    "layer_norm": (
        "void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>"
        "(int, float, c10::BFloat16 const*, c10::BFloat16 const*, c10::BFloat16 const*, float*, float*, "
        "c10::BFloat16*)",
        (577, 1, 1), (256, 1, 1), 30, 0,
    ),
    "mean": (
        "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, "
        "float, float, float>, unsigned int, float, 4> >(at::native::ReduceOp<float, at::native::MeanOps<"
        "float, float, float, float>, unsigned int, float, 4>)",
        (620, 1, 1), (32, 16, 1), 32, 16,
    ),
    "argmax": (
        "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::ArgMaxOps<float>, "
        "unsigned int, long, 4> >(at::native::ReduceOp<float, at::native::ArgMaxOps<float>, unsigned int, "
        "long, 4>)",
        (1, 1, 1), (32, 16, 1), 40, 16,
    ),
    "add": (
        _EW.format(f="at::native::CUDAFunctor_add<c10::BFloat16>", n=3), (2480, 1, 1), (128, 1, 1), 26, 0
    ),
    "mul": (
        _EW.format(f="at::native::binary_internal::MulFunctor<c10::BFloat16>", n=3),
        (2480, 1, 1), (128, 1, 1), 24, 0,
    ),
    "pow": (
        _EW.format(f="at::native::(anonymous namespace)::pow_tensor_scalar_kernel_impl<float, float>"
                   "(at::TensorIteratorBase&, float)::{lambda(float)#1}", n=2),
        (2480, 1, 1), (128, 1, 1), 20, 0,
    ),
    "rsqrt": (
        _EW.format(f="at::native::rsqrt_kernel_cuda(at::TensorIteratorBase&)::{lambda()#2}::operator()() "
                   "const::{lambda()#2}::operator()() const::{lambda(float)#1}", n=2),
        (5, 1, 1), (128, 1, 1), 18, 0,
    ),
    "copy": (
        "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda("
        "at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#12}::operator()() const::"
        "{lambda(c10::BFloat16)#1}, at::detail::Array<char*, 2>, TrivialOffsetCalculator<1, unsigned int>, "
        "TrivialOffsetCalculator<1, unsigned int>, at::native::memory::LoadWithCast<1>, "
        "at::native::memory::StoreWithCast<1> >(int, ...)",
        (4960, 1, 1), (128, 1, 1), 28, 0,
    ),
    "neg": (_EW.format(f="at::native::neg_kernel_cuda(at::TensorIteratorBase&)::{lambda()#2}", n=2),
            (620, 1, 1), (128, 1, 1), 16, 0),
    "cat": (
        "void at::native::(anonymous namespace)::CatArrayBatchedCopy_aligned16_contig<at::native::("
        "anonymous namespace)::OpaqueType<2u>, unsigned int, 4, 64, 64>(at::native::(anonymous namespace)::"
        "OpaqueType<2u>*, at::native::(anonymous namespace)::CatArrInputTensorMetadata<at::native::("
        "anonymous namespace)::OpaqueType<2u>, unsigned int, 64, 64>, at::native::(anonymous namespace)::"
        "TensorSizeStride<unsigned int, 4u>, int, unsigned int)",
        (128, 2, 1), (512, 1, 1), 40, 0,
    ),
    "silu": (
        _EW.format(f="at::native::(anonymous namespace)::silu_kernel(at::TensorIteratorBase&)::{lambda()#1}"
                   "::operator()() const::{lambda()#5}::operator()() const::{lambda(c10::BFloat16)#1}", n=2),
        (6820, 1, 1), (128, 1, 1), 22, 0,
    ),
    "gelu": (
        _EW.format(f="at::native::GeluCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)::"
                   "{lambda()#2}::operator()() const::{lambda()#4}::operator()() const::"
                   "{lambda(c10::BFloat16)#1}", n=2),
        (4616, 1, 1), (128, 1, 1), 24, 0,
    ),
    "sigmoid": (
        _EW.format(f="at::native::sigmoid_kernel_cuda(at::TensorIteratorBase&)::{lambda()#2}::operator()() "
                   "const::{lambda()#6}::operator()() const::{lambda(c10::BFloat16)#1}", n=2),
        (4616, 1, 1), (128, 1, 1), 22, 0,
    ),
    "index": (
        "void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::BFloat16, long, unsigned int, 2, "
        "2, -2, true>(at::cuda::detail::TensorInfo<c10::BFloat16, unsigned int>, "
        "at::cuda::detail::TensorInfo<c10::BFloat16, unsigned int>, at::cuda::detail::TensorInfo<long, "
        "unsigned int>, int, int, unsigned int, unsigned int, long)",
        (2480, 1, 1), (128, 1, 1), 32, 0,
    ),
    "scatter": (
        "void at::native::(anonymous namespace)::masked_scatter_size_check(long const*, long const*)",
        (1, 1, 1), (1, 1, 1), 16, 0,
    ),
    "fill": (_EW.format(f="at::native::FillFunctor<long>", n=1), (1, 1, 1), (128, 1, 1), 16, 0),
    "eq": (_EW.format(f="at::native::CompareEqFunctor<long>", n=3), (1, 1, 1), (128, 1, 1), 18, 0),
}

# Kernel durations in ns (before jitter), per phase: A100-class numbers for a 7B model in bf16.
_DUR_NS = {
    "prefill": dict(gemm=88_000, gemm_mlp=215_000, flash=62_000, ew=5_200, norm=6_000, cat=9_000),
    "decode": dict(gemm=23_000, gemm_mlp=61_000, flash=8_500, ew=2_400, norm=2_800, cat=3_500),
    "vision": dict(gemm=11_000, gemm_mlp=26_000, flash=21_000, ew=3_600, norm=4_200, cat=4_000),
}

# An op tree node: (name, children, kernel key or None, duration class, stream).
Node = tuple[str, tuple["Node", ...], str | None, str, int]


def _op(name: str, *children: Node, k: str | None = None, d: str = "ew", s: int = MAIN_STREAM) -> Node:
    return (name, tuple(children), k, d, s)


def _linear(k: str, d: str, s: int = MAIN_STREAM, bias: bool = False) -> Node:
    t = _op("aten::t", _op("aten::transpose", _op("aten::as_strided")))
    if bias:
        return _op("aten::linear", t, _op("aten::addmm", k=k, d=d, s=s))
    return _op("aten::linear", t, _op("aten::matmul", _op("aten::view"), _op("aten::mm", k=k, d=d, s=s),
                                      _op("aten::_unsafe_view")))


def _to(kernel: bool = True) -> Node:
    copy = _op("aten::copy_", k="copy" if kernel else None)
    return _op("aten::to", _op("aten::_to_copy", _op("aten::empty_strided"), copy))


def _rms_norm() -> tuple[Node, ...]:
    return (
        _to(), _op("aten::pow", k="pow"), _op("aten::mean", _op("aten::sum"), k="mean", d="norm"),
        _op("aten::add", k="add"), _op("aten::rsqrt", k="rsqrt"), _op("aten::mul", k="mul"), _to(),
        _op("aten::mul", k="mul"),
    )


def _rotary() -> tuple[Node, ...]:
    half = _op("aten::slice", _op("aten::as_strided"))
    return (
        _op("aten::mul", k="mul"), half, half, _op("aten::neg", k="neg"), _op("aten::cat", k="cat", d="cat"),
        _op("aten::mul", k="mul"), _op("aten::add", k="add"),
    )


def _llama_layer(phase: str) -> tuple[Node, ...]:
    gemm, gemm_mlp = f"gemm_{phase}", f"gemm_{phase}_mlp"
    flash = "flash_prefill" if phase == "prefill" else "flash_decode"
    view = _op("aten::view")
    transpose = _op("aten::transpose", _op("aten::as_strided"))
    return (
        *_rms_norm(),
        _linear(gemm, "gemm"), view, transpose,
        _linear(gemm, "gemm", s=SIDE_STREAM), view, transpose,  # k and v projections on the side stream
        _linear(gemm, "gemm", s=SIDE_STREAM), view, transpose,
        _op("aten::unsqueeze", _op("aten::as_strided")), _op("aten::unsqueeze", _op("aten::as_strided")),
        *_rotary(), *_rotary(),
        _op("aten::cat", k="cat", d="cat"), _op("aten::cat", k="cat", d="cat"),  # DynamicCache.update
        _op("aten::scaled_dot_product_attention",
            _op("aten::_scaled_dot_product_flash_attention", _op("aten::transpose"), _op("aten::transpose"),
                _op("aten::_flash_attention_forward", _op("aten::empty"), _op("aten::empty"), k=flash,
                    d="flash"))),
        transpose, _op("aten::reshape", _op("aten::view")),
        _linear(gemm, "gemm"), _op("aten::add", k="add"),
        *_rms_norm(),
        _linear(gemm_mlp, "gemm_mlp"), _op("aten::silu", k="silu"), _linear(gemm_mlp, "gemm_mlp"),
        _op("aten::mul", k="mul"), _linear(gemm_mlp, "gemm_mlp"), _op("aten::add", k="add"),
    )


def _clip_layer() -> tuple[Node, ...]:
    ln = _op("aten::layer_norm", _op("aten::native_layer_norm", k="layer_norm", d="norm"))
    lin = _linear("gemm_vision", "gemm", bias=True)
    lin_mlp = _linear("gemm_vision", "gemm_mlp", bias=True)
    view = _op("aten::view")
    return (
        ln, lin, view, lin, view, lin, view,
        _op("aten::scaled_dot_product_attention",
            _op("aten::_scaled_dot_product_flash_attention",
                _op("aten::_flash_attention_forward", _op("aten::empty"), k="flash_prefill", d="flash"))),
        _op("aten::reshape", _op("aten::view")), lin, _op("aten::add", k="add"),
        ln, lin_mlp, _op("aten::mul", k="mul"), _op("aten::sigmoid", k="sigmoid"), _op("aten::mul", k="mul"),
        lin_mlp, _op("aten::add", k="add"),
    )


# -- the simulation ------------------------------------------------------------------------------
class _Sim:
    """A host thread launching onto two streams, recorded into a :class:`KinetoTrace`."""

    def __init__(self, rng: random.Random, sample_index: int) -> None:
        self.rng = rng
        self.trace = KinetoTrace(
            base_ns=BASE_TS_NS,
            device=A100,
            rank=sample_index,
            host_pid=HOST_PID,
            main_tid=HOST_TID,
            trace_name=trace_name(sample_index, gz=False),
            base_time_ns=BASE_TIME_NS,
        )
        self.t = BASE_TS_NS + 250_000
        self.free = {MAIN_STREAM: 0, SIDE_STREAM: 0}
        self.ext = 0
        self.corr = 0
        self.labels: list[tuple[str, dict[int, list[int]]]] = []  # open labels + their kernel envelopes
        self.ext_stack: list[int] = []
        self.step: int | None = None
        self.generate_start = 0
        self.truth_kernels: dict[str, int] = {}
        self.truth_kernel_ns: dict[str, int] = {}
        self.truth_memcpy: dict[str, int] = {}
        self.step_kernels: list[int] = []
        self.step_kernel_ns: list[int] = []
        self.step_emitted: list[int] = []

    def jitter(self, ns: int, spread: float = 0.25) -> int:
        return max(1000, int(ns * (1.0 + spread * (2.0 * self.rng.random() - 1.0))))

    # -- host ---------------------------------------------------------------------------------
    def _open(self, cat: str, name: str, tid: int = HOST_TID) -> tuple[int, int]:
        """A host range starting now: (handle, External id)."""
        self.ext += 1
        return self.trace.host_op(name, self.t, cat=cat, tid=tid, external_id=self.ext), self.ext

    @contextmanager
    def label(self, name: str) -> Iterator[int]:
        """A user_annotation around the body (yields its start), then its gpu_user_annotations."""
        start = self.t
        handle, ext = self._open("user_annotation", name)
        envelope: dict[int, list[int]] = {}
        self.labels.append((name, envelope))
        self.t += self.jitter(4_000)
        try:
            yield start
        finally:
            self.t += self.jitter(3_000)
            self.trace.end_op(handle, self.t)
            self.labels.pop()
            for stream, (first, last) in envelope.items():
                self.trace.gpu_label(name, stream, first, last - first, external_id=ext)
            self.t += self.jitter(2_000)

    def run(self, node: Node, phase: str) -> None:
        name, children, kernel, dclass, stream = node
        handle, ext = self._open("cpu_op", name)
        self.ext_stack.append(ext)
        self.t += self.jitter(3_500)
        for child in children:
            self.run(child, phase)
        if kernel is not None:
            self.launch(kernel, self.jitter(_DUR_NS[phase][dclass], 0.15), stream)
        self.t += self.jitter(2_500)
        self.ext_stack.pop()
        self.trace.end_op(handle, self.t)
        self.t += self.jitter(600)

    def ops(self, nodes: tuple[Node, ...], phase: str) -> None:
        for node in nodes:
            self.run(node, phase)

    def host_only(self, name: str, ns: int, tid: int = HOST_TID) -> None:
        """A host op with no device work (image decoding, tokenizer calls surface as a few of these)."""
        handle, _ = self._open("cpu_op", name, tid)
        if tid == HOST_TID:
            self.t += self.jitter(ns)
            self.trace.end_op(handle, self.t)
            self.t += self.jitter(800)
        else:
            self.trace.end_op(handle, self.t + self.jitter(ns))

    # -- device -------------------------------------------------------------------------------
    def _runtime(self, name: str, dur: int) -> tuple[int, int]:
        """A runtime call from the innermost open op, now: (its start, that op's External id)."""
        self.corr += 1
        ts = self.t
        ext = self.ext_stack[-1] if self.ext_stack else 0
        self.trace.runtime(name, ts, dur, correlation=self.corr, external_id=ext, tid=HOST_TID)
        self.t = ts + dur
        return ts, ext

    def _stage(self) -> str:
        return vocab.attributed_stage(self.labels[-1][0] if self.labels else None)

    def _count(self, start: int, dur: int, stream: int, memcpy: bool) -> None:
        stage = self._stage()
        if memcpy:
            self.truth_memcpy[stage] = self.truth_memcpy.get(stage, 0) + 1
        else:
            self.truth_kernels[stage] = self.truth_kernels.get(stage, 0) + 1
            self.truth_kernel_ns[stage] = self.truth_kernel_ns.get(stage, 0) + dur
            if self.step is not None:
                self.step_kernels[self.step] += 1
                self.step_kernel_ns[self.step] += dur
        if self.step is not None:
            self.step_emitted[self.step] = max(self.step_emitted[self.step], start + dur)
        for _, envelope in self.labels:
            span = envelope.get(stream)
            if span is None:
                envelope[stream] = [start, start + dur]
            else:
                span[1] = max(span[1], start + dur)

    def _schedule(self, launch_ts: int, dur: int, stream: int) -> int:
        start = max(launch_ts + self.jitter(6_000), self.free[stream] + self.jitter(1_200))
        self.free[stream] = start + dur
        return start

    def launch(self, key: str, dur: int, stream: int) -> None:
        kname, grid, block, regs, smem = _K[key]
        launch_ts, ext = self._runtime("cudaLaunchKernel", self.jitter(4_800))
        start = self._schedule(launch_ts, dur, stream)
        self.trace.kernel(
            kname, stream, start, dur, correlation=self.corr, external_id=ext,
            grid=grid, block=block, registers=regs, shared_memory=smem,
        )  # fmt: skip
        self.trace.flow(self.corr, launch_ts, start, stream, tid=HOST_TID)
        self._count(start, dur, stream, memcpy=False)

    def memcpy(self, kind: str, nbytes: int, stream: int = MAIN_STREAM, sync: bool = False) -> None:
        """cudaMemcpyAsync (HtoD / DtoH) or cudaMemsetAsync; DtoH waits for the stream, as .item() does."""
        is_set = kind == "memset"
        launch_ts, ext = self._runtime("cudaMemsetAsync" if is_set else "cudaMemcpyAsync", self.jitter(7_000))
        dur = self.jitter(1_500 + nbytes // 12)
        start = self._schedule(launch_ts, dur, stream)
        name = {"HtoD": "Memcpy HtoD (Pageable -> Device)", "DtoH": "Memcpy DtoH (Device -> Pageable)",
                "memset": "Memset (Device)"}[kind]
        self.trace.memcpy(
            name, stream, start, dur, nbytes=nbytes, cat="gpu_memset" if is_set else "gpu_memcpy",
            correlation=self.corr, external_id=ext,
        )  # fmt: skip
        self.trace.flow(self.corr, launch_ts, start, stream, tid=HOST_TID)
        self._count(start, dur, stream, memcpy=True)
        if sync:
            self.stream_sync(stream)

    def stream_sync(self, stream: int) -> None:
        """cudaStreamSynchronize: the host waits for the stream (a ``cuda_sync`` slice on the device)."""
        ts = self.t
        done = max(self.free[stream], ts) + self.jitter(3_000)
        _, ext = self._runtime("cudaStreamSynchronize", done - ts)
        start = max(ts, self.free[stream] - 1_000)
        self.trace.sync(stream, start, 1_000, correlation=self.corr, external_id=ext)
        self.t = done

    def orphan_kernel(self) -> None:
        """A device event whose launch was not recorded (no runtime call, no flow, no External id)."""
        dur = 2_000
        start = max(self.free[MAIN_STREAM], self.t) + 5_000
        self.free[MAIN_STREAM] = start + dur
        kname, grid, block, regs, smem = _K["fill"]
        self.trace.kernel(
            kname, MAIN_STREAM, start, dur, correlation=987654321,
            grid=grid, block=block, registers=regs, shared_memory=smem,
        )  # fmt: skip
        self.truth_kernels[vocab.UNATTRIBUTED] = self.truth_kernels.get(vocab.UNATTRIBUTED, 0) + 1
        self.truth_kernel_ns[vocab.UNATTRIBUTED] = self.truth_kernel_ns.get(vocab.UNATTRIBUTED, 0) + dur


# -- one sample -------------------------------------------------------------------------------------
def _vision(sim: _Sim, layers: int) -> None:
    with sim.label(vocab.VISION):
        with sim.label(vocab.VISION_TOWER):
            sim.ops((
                _op("aten::conv2d", _op("aten::convolution", _op("aten::_convolution",
                    _op("aten::cudnn_convolution", k="conv", d="gemm_mlp")))),
                _op("aten::flatten", _op("aten::view")), _op("aten::transpose", _op("aten::as_strided")),
                _op("aten::expand"), _op("aten::cat", k="cat", d="cat"),
                _op("aten::embedding", _op("aten::index_select", k="index")), _op("aten::add", k="add"),
                _op("aten::layer_norm", _op("aten::native_layer_norm", k="layer_norm", d="norm")),
            ), "vision")
            layer = _clip_layer()
            for _ in range(layers):
                sim.ops(layer, "vision")
        sim.ops((_op("aten::slice", _op("aten::as_strided")),
                 _op("aten::contiguous", _op("aten::clone", _op("aten::copy_", k="copy")))), "vision")
        with sim.label(vocab.VISION_PROJECTOR):
            sim.ops((_linear("gemm_vision", "gemm_mlp", bias=True), _op("aten::gelu", k="gelu"),
                     _linear("gemm_prefill", "gemm", bias=True)), "vision")


def _forward(sim: _Sim, step: int, layers: int) -> None:
    phase = "prefill" if step == 0 else "decode"
    sim.step = step
    sim.step_kernels.append(0)
    sim.step_kernel_ns.append(0)
    sim.step_emitted.append(0)
    with sim.label(vocab.step_label(step)):
        lookup = _op("aten::index_select", k="index")
        embed = [_op("aten::embedding", _op("aten::reshape", _op("aten::view")), lookup)]
        if step == 0:  # the image features go into the prompt embeddings
            check = _op("aten::_masked_scatter_size_check", k="scatter")
            embed += [_op("aten::eq", k="eq"), _op("aten::masked_scatter", check, k="copy")]
        embed += [_op("aten::arange", k="fill"), _op("aten::unsqueeze")]
        sim.ops(tuple(embed), phase)
        layer = _llama_layer(phase)
        for _ in range(layers):
            sim.ops(layer, phase)
        sim.ops((*_rms_norm(), _op("aten::slice"), _linear(f"gemm_{phase}_mlp", "gemm_mlp")), phase)
    sim.step = None


def _between_steps(sim: _Sim) -> None:
    """generate()'s own work after each forward: logits processing, argmax, stopping checks, .item()."""
    sim.ops((
        _op("aten::slice", _op("aten::as_strided")), _to(), _op("aten::argmax", k="argmax", d="norm"),
        _op("aten::mul", k="mul"), _op("aten::add", k="add"), _op("aten::cat", k="cat"),
        _op("aten::isin", _op("aten::eq", k="eq")), _op("aten::bitwise_not", k="eq"),
        _op("aten::max", k="argmax"),
    ), "decode")
    item, item_ext = sim._open("cpu_op", "aten::item")
    sim.ext_stack.append(item_ext)
    dense, dense_ext = sim._open("cpu_op", "aten::_local_scalar_dense")
    sim.ext_stack.append(dense_ext)
    sim.t += sim.jitter(2_000)
    sim.memcpy("DtoH", 1, sync=True)
    sim.t += sim.jitter(1_500)
    sim.trace.end_op(dense, sim.t)
    sim.ext_stack.pop()
    sim.t += sim.jitter(1_000)
    sim.trace.end_op(item, sim.t)
    sim.ext_stack.pop()
    sim.t += sim.jitter(9_000)


def _simulate(shape: TraceShape, sample_index: int) -> _Sim:
    rng = random.Random(shape.seed * 1_000_003 + sample_index)
    sim = _Sim(rng, sample_index)
    target = shape.target_mb * MB
    for _ in range(6):
        sim.host_only("aten::empty", 12_000, tid=LOADER_TID)
    with sim.label(vocab.sample_label(sample_index)):
        with sim.label(vocab.LOAD):
            sim.host_only("aten::from_file", 850_000)
        with sim.label(vocab.PREPROCESS):
            sim.host_only("aten::empty", 6_000)
            sim.host_only("aten::stack", 310_000)
            sim.ops((_op("aten::to", _op("aten::_to_copy", _op("aten::empty_strided"))),), "vision")
            sim.memcpy("HtoD", 3 * 336 * 336 * 4)
            sim.ops((_to(),), "vision")  # float32 -> bf16 on the device
            sim.memcpy("HtoD", 8 * shape.prompt_tokens)
            sim.memcpy("HtoD", 8 * shape.prompt_tokens)
        with sim.label(vocab.GENERATE) as generate_start:
            sim.generate_start = generate_start
            sim.memcpy("memset", 8)  # unfinished_sequences = ones(...)
            sim.ops((_op("aten::ones", _op("aten::fill_", k="fill")), _op("aten::cumsum", k="add")), "decode")
            _vision(sim, shape.vision_layers)
            step = 0
            while True:
                _forward(sim, step, shape.llm_layers)
                _between_steps(sim)
                step += 1
                if shape.decode_steps is not None:
                    if step > shape.decode_steps:
                        break
                    continue
                size = sim.trace.approx_size_bytes()
                per_step = size / (step + 1)
                if step > shape.max_decode_steps:
                    break
                if step > shape.min_decode_steps and size + per_step * 0.5 >= target:
                    break
        sim.orphan_kernel()
        sim.stream_sync(MAIN_STREAM)
    return sim


def write_trace(path: Path, shape: TraceShape, sample_index: int = 0) -> TraceTruth:
    """Write one synthetic trace to ``path`` (gzipped when it ends in ``.gz``), atomically.

    Returns what was put into it. Same shape, seed and index give the same bytes.
    """
    sim = _simulate(shape, sample_index)
    sim.trace.stop(max(sim.t, *sim.free.values()))
    written = sim.trace.dump(path)
    return TraceTruth(
        path=str(written.path),
        sample_index=sample_index,
        size_bytes=written.size_bytes,
        n_events=written.n_events,
        decode_steps=len(sim.step_kernels) - 1,
        kernels_by_stage=dict(sim.truth_kernels),
        kernel_us_by_stage={k: v / 1000 for k, v in sim.truth_kernel_ns.items()},
        memcpy_by_stage=dict(sim.truth_memcpy),
        kernels_by_step=list(sim.step_kernels),
        kernel_us_by_step=[v / 1000 for v in sim.step_kernel_ns],
        step_emitted_ns=list(sim.step_emitted),
        generate_start_ns=sim.generate_start,
    )


def trace_name(index: int, gz: bool) -> str:
    return f"sample-{index:05d}.pt.trace.json" + (".gz" if gz else "")


def truth_path(out_dir: Path) -> Path:
    """Where a set's truths are kept: beside its folder, so the folder holds only traces."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".truth.json")


def generate_set(out_dir: Path, n: int, shape: TraceShape, *, gz: bool = False) -> list[TraceTruth]:
    """``n`` traces in ``out_dir`` (sample-00000...), reused when an earlier call made the same set.

    The truths go to :func:`truth_path`; a different shape, count or compression regenerates.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = truth_path(out_dir)
    key = {"shape": asdict(shape), "n": n, "gzip": gz}
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        paths = [Path(t["path"]) for t in saved.get("traces", [])]
        if saved.get("key") == key and all(p.exists() for p in paths):
            return [TraceTruth(**t) for t in saved["traces"]]
    for stale in out_dir.glob("sample-*.pt.trace.json*"):
        stale.unlink()
    truths = [write_trace(out_dir / trace_name(i, gz), shape, i) for i in range(n)]
    write_text_atomic(manifest, json.dumps({"key": key, "traces": [asdict(t) for t in truths]}))
    return truths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the traces")
    parser.add_argument("--n", type=int, default=20, help="number of traces")
    parser.add_argument("--mb", type=float, default=50.0, help="uncompressed size of each trace (MB)")
    parser.add_argument("--gzip", action="store_true", help="write .json.gz, as capture does")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    truths = generate_set(args.out, args.n, TraceShape.for_size(args.mb, args.seed), gz=args.gzip)
    total = sum(t.size_bytes for t in truths) / MB
    print(f"{len(truths)} traces in {args.out}: {total:.1f} MB uncompressed, "
          f"{truths[0].decode_steps} decode steps, {truths[0].n_kernels} kernels each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
