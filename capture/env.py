"""Where a trace came from: library versions, device and GPU, saved into run.json."""

from __future__ import annotations

import os
import platform
import socket

import torch

from analyze.contract import Environment
from capture.errors import CaptureError

# Environment variables that set how many threads the numeric libraries use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CaptureError(f"--device {name}: CUDA is not available here; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise CaptureError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on CUDA and fp32 on CPU (CPU half precision is slow and not what users serve)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise CaptureError(f"--dtype {name}: expected auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def environment(device: torch.device) -> Environment:
    """Versions and hardware, so every run says where it came from."""
    import transformers

    cuda = device.type == "cuda"
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        hostname=socket.gethostname(),
        torch=str(torch.__version__),
        transformers=transformers.__version__,
        device=device.type,
        cuda=torch.version.cuda if cuda else None,
        gpu_name=torch.cuda.get_device_name(device) if cuda else None,
        cpu_threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        load_avg=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else [],
        thread_env={k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    )
