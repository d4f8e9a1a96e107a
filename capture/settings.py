"""The settings users compare: attention kernel, KV cache, torch.compile, 4/8-bit loading.

``check`` runs at start, before any model is built: a setting this machine cannot honour is a
one-line CaptureError (the CLI turns it into exit status 2; the cache itself is a decoding
setting, capture.generation), and ``compile_decoding`` compiles the decoding
forward so that the stage labels survive: the labels' forward hooks sit on the top-level model,
whose ``__call__`` (and so its hooks) stays eager; only the ``forward`` it calls for a one-token
decoding step is the compiled function. The prefill, and with it the vision encoder, runs eager
as transformers' own generate-time compilation does it, so every label is still there.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from typing import Any

import torch
from torch import nn

from capture.config import CaptureConfig
from capture.errors import CaptureError
from capture.models.base import ModelAdapter

# transformers' own generate-time compile settings (CompileConfig's defaults): on CUDA,
# "reduce-overhead" replays the static-cache decoding step as a CUDA graph.
COMPILE_OPTIONS: dict[str, Any] = {"fullgraph": False, "dynamic": None, "mode": "reduce-overhead"}

# Models whose weights transformers' from_pretrained loads (and so can quantise on load).
QUANTISABLE_MODELS = ("llava-1.5", "video-llava")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU (``$CXX``, else g++ or clang++), if any."""
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def check(cfg: CaptureConfig, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse, in one line naming the flag, a setting this machine or this model cannot run."""
    cuda = device.type == "cuda"
    if cfg.load_in is not None:
        flag = f"--load-in {cfg.load_in}"
        if not cuda:
            raise CaptureError(
                f"{flag}: stagetrace runs 4/8-bit (bitsandbytes) models on CUDA only (its policy, to "
                "compare like with like); use --device cuda on a GPU machine, or drop --load-in"
            )
        if not _installed("bitsandbytes"):
            raise CaptureError(f"{flag} needs the bitsandbytes package: pip install 'stagetrace[gpu]'")
        if cfg.model not in QUANTISABLE_MODELS:
            raise CaptureError(
                f"{flag}: only models loaded by transformers are quantised on load "
                f"({', '.join(QUANTISABLE_MODELS)}); {cfg.model} is not one"
            )
        if cfg.weights == "random":
            raise CaptureError(
                f"{flag} quantises weights as transformers loads them; --weights random loads none: "
                "drop one of the two"
            )
    if cfg.attn_implementation == "flash_attention_2":
        flag = "--attn-implementation flash_attention_2"
        if not cuda:
            raise CaptureError(f"{flag} runs on CUDA only; use sdpa or eager on {device.type}")
        if not _installed("flash_attn"):
            raise CaptureError(f"{flag} needs the flash-attn package (pip install flash-attn); or use sdpa")
        if dtype not in (torch.float16, torch.bfloat16):
            raise CaptureError(
                f"{flag} needs --dtype float16 or bfloat16, not {str(dtype).removeprefix('torch.')}"
            )
    if cfg.compile and not cuda and cxx_compiler() is None:
        raise CaptureError(
            "--compile on the CPU needs a C++ compiler for torch.compile's inductor backend (g++ or "
            "clang++, or $CXX); install one (e.g. apt-get install g++) or drop --compile"
        )


def run_warnings(cfg: CaptureConfig) -> list[str]:
    """What a run with these settings should tell its reader (kept in run.json's warnings)."""
    out = []
    if cfg.weights == "random" and cfg.min_new_tokens == 0:
        out.append(
            "--weights random without --min-new-tokens: random weights may emit the end-of-text token "
            "at any step, so generation lengths (and per-token figures) vary by chance; pass "
            "--min-new-tokens equal to --max-new-tokens to fix the length"
        )
    if cfg.compile and cfg.warmup == 0:
        out.append(
            "--compile with --warmup 0: the decoding forward compiles during the first sample, whose "
            "decode steps then include compilation time; use --warmup 1 or more"
        )
    return out


def apply(adapter: ModelAdapter, cfg: CaptureConfig) -> None:
    """Compile a built adapter's decoding forward when --compile asks (the adapter's step module is
    the one whose hooks label every step)."""
    if cfg.compile:
        compile_decoding(adapter.step_module())


class CompiledDecoding:
    """Stands in for a model's ``forward``: a one-token decoding step runs the torch.compile'd
    forward, anything else (the prefill, with its vision encoding) the eager one."""

    def __init__(self, forward: Any) -> None:
        self.eager = forward
        self.compiled = torch.compile(forward, **COMPILE_OPTIONS)
        functools.update_wrapper(self, forward)  # generate() inspects forward's signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids")
        decoding = ids is not None and ids.shape[-1] == 1 and kwargs.get("inputs_embeds") is None
        return (self.compiled if decoding else self.eager)(*args, **kwargs)


def compile_decoding(model: nn.Module) -> None:
    """Make ``model``'s one-token decoding steps run compiled; its hooks stay outside the graph."""
    if not isinstance(model.forward, CompiledDecoding):
        model.forward = CompiledDecoding(model.forward)
