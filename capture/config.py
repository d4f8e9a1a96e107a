"""Capture options: one frozen dataclass, saved whole into run.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

Mode = Literal["fused", "decoupled"]


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class CaptureConfig:
    """Everything that decides what a capture run measures."""

    model: str = _opt("tiny-llava", "Model name (see `capture --help` for the list).")
    model_path: str | None = _opt(
        None, "Local weights folder or Hugging Face id; default: the model's hub id."
    )
    dataset: str | None = _opt(
        None, "Dataset folder in the EventGPT DSEC layout; default: built-in synthetic."
    )
    samples: int = _opt(8, "Number of samples to capture.")
    out: str = _opt("traces", "Folder that receives one run folder per invocation.")
    mode: Mode = _opt("fused", "fused: ordinary generate(); decoupled: encode vision first, then generate().")
    device: str = _opt("auto", "auto, cpu or cuda.")
    dtype: str = _opt("auto", "auto (bf16 on CUDA, fp32 on CPU), float32, float16 or bfloat16.")
    max_new_tokens: int = _opt(16, "Tokens to generate per sample (greedy).")
    min_new_tokens: int = _opt(0, "Force at least this many tokens (0: stop at EOS).")
    warmup: int = _opt(1, "Un-recorded generate() runs before the first sample.")
    verify: Literal["first", "all", "none"] = _opt(
        "first", "Samples whose tokens are re-generated with labels and profiler off and compared."
    )
    record_shapes: bool = _opt(False, "Record operator input shapes (larger traces).")
    with_stack: bool = _opt(False, "Record Python stacks (much larger traces, more overhead).")
    profile_memory: bool = _opt(False, "Record allocator events.")
    seed: int = _opt(0, "Seed for tiny-model weights and the synthetic dataset.")

    def to_json(self) -> dict[str, Any]:
        """Plain dict for run.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaptureConfig:
        """Rebuild from run.json, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def out_dir(self) -> Path:
        return Path(self.out)


def help_of(name: str) -> str:
    """The help text of config field ``name`` (the CLI reuses it, so it is written once)."""
    for f in fields(CaptureConfig):
        if f.name == name:
            return str(f.metadata["help"])
    raise KeyError(name)
