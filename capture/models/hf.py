"""What the transformers-based adapters share: weight lookup, version shims, greedy generate."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from capture.errors import CaptureError

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``from_pretrained`` takes ``dtype`` in transformers 5.x and ``torch_dtype`` in 4.x."""
    return {"dtype": dtype} if TRANSFORMERS_MAJOR >= 5 else {"torch_dtype": dtype}


def hub_cache_dir() -> str:
    """Where transformers looks for downloaded weights."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def load_pretrained(cls: Any, name: str, source: str, **kwargs: Any) -> Any:
    """Load from a local folder or the Hugging Face cache only (never the network).

    A missing model becomes a CaptureError that says where we looked and how to point at weights.
    """
    local = Path(source).expanduser()
    where = str(local) if local.exists() else f"the Hugging Face cache ({hub_cache_dir()}) for {source!r}"
    try:
        return cls.from_pretrained(str(local) if local.exists() else source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise CaptureError(
            f"{name}: weights not found in {where} ({type(exc).__name__}); download them first or pass "
            f"--model-path DIR with a local copy, or use tiny-{name.removesuffix('-1.5')} for a demo"
        ) from None


def place(model: nn.Module, spec: Any) -> nn.Module:
    """``model`` on ``spec.device``, or with ``spec.device_map`` "auto" spread over every local GPU
    by accelerate (layers are not split; forward hooks still fire wherever a module runs)."""
    if spec.device_map is None:
        return model.to(spec.device)
    from accelerate import dispatch_model, infer_auto_device_map

    no_split = getattr(model, "_no_split_modules", None) or []
    return dispatch_model(model, infer_auto_device_map(model, no_split_module_classes=no_split))


def supports_mm_encoder_outputs(model: nn.Module) -> bool:
    """transformers 5.x lets generate() take precomputed vision features as ``mm_encoder_outputs``."""
    return "mm_encoder_outputs" in inspect.signature(model.forward).parameters


def inner_model(model: nn.Module) -> nn.Module:
    """The module that holds the vision tower and projector: ``model.model`` since transformers
    4.52 (LlavaModel, VideoLlavaModel), the top-level model before."""
    return model.model if hasattr(model, "model") else model


def greedy_generate(
    model: Any,
    inputs: dict[str, Any],
    *,
    echoed: int,
    max_new_tokens: int,
    min_new_tokens: int,
    **extra: Any,
) -> list[int]:
    """The model's ordinary ``generate()``, greedy; returns only the new token ids.

    ``echoed`` is how many leading ids of generate()'s output repeat the prompt (the adapter
    knows: the HF loop echoes ``input_ids`` but not ``inputs_embeds``). ``extra`` goes to
    generate() as is (the capture benchmark passes a logits processor that timestamps tokens).
    """
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_p=None,
        top_k=None,
        **extra,
    )
    return [int(t) for t in out[0, echoed:].tolist()]


def scatter_features(
    model: Any, input_ids: torch.Tensor, token_id: int, features: torch.Tensor
) -> torch.Tensor:
    """Prompt embeddings with the placeholder tokens replaced by vision features (4.x decoupled)."""
    embeds = model.get_input_embeddings()(input_ids)
    mask = (input_ids == token_id).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(mask, features.to(embeds.dtype).reshape(-1))
