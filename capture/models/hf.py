"""What the transformers-based adapters share: weight lookup, version shims, the one generate()."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import PretrainedConfig

from capture.errors import CaptureError
from capture.generation import GenerationSettings

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


@dataclass(frozen=True)
class Generated:
    """What one generate() produced: the new token ids and the KV cache's size after it."""

    token_ids: list[int]
    kv_cache_bytes: int | None


def generate_new_ids(
    model: Any,
    inputs: dict[str, Any],
    settings: GenerationSettings,
    *,
    echoed: int,
    seed: int | None = None,
    **extra: Any,
) -> Generated:
    """The model's ordinary ``generate()`` with ``settings``; returns only the new token ids.

    ``echoed`` is how many leading ids of generate()'s output repeat the prompt (the adapter
    knows: the HF loop echoes ``input_ids`` but not ``inputs_embeds``). ``seed`` (sampled runs)
    seeds torch's generators right before the call. generate() is asked for its output as a
    dict only to read the KV cache's size; the tokens are the same. ``extra`` goes to
    generate() as is (the capture benchmark passes a logits processor that timestamps tokens).
    """
    if seed is not None:
        torch.manual_seed(seed)
    out = model.generate(**inputs, **settings.generate_kwargs(), return_dict_in_generate=True, **extra)
    sequences = out.sequences if hasattr(out, "sequences") else out
    cache = getattr(out, "past_key_values", None)
    ids = [int(t) for t in sequences[0, echoed:].tolist()]
    return Generated(ids, cache_bytes(cache) if cache is not None else None)


def cache_bytes(cache: Any) -> int:
    """Bytes held by a KV cache: a transformers ``Cache`` (``layers`` with ``keys`` and
    ``values`` since 4.56, ``key_cache``/``value_cache`` lists before) or the legacy tuples.
    Each tensor is counted once."""
    seen: dict[int, int] = {}

    def visit(obj: Any) -> None:
        if obj is None:
            return
        if isinstance(obj, torch.Tensor):
            if obj.numel() and obj.device.type != "meta":
                seen[id(obj)] = obj.numel() * obj.element_size()
            return
        if isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item)
            return
        layers = getattr(obj, "layers", None)
        if isinstance(layers, (list, tuple)):
            for layer in layers:
                visit(getattr(layer, "keys", None))
                visit(getattr(layer, "values", None))
            return
        for name in ("key_cache", "value_cache"):
            visit(getattr(obj, name, None))
        for name in ("self_attention_cache", "cross_attention_cache"):  # encoder-decoder caches
            inner = getattr(obj, name, None)
            if inner is not None and inner is not obj:
                visit(inner)

    visit(cache)
    return sum(seen.values())


def scatter_features(
    model: Any, input_ids: torch.Tensor, token_id: int, features: torch.Tensor
) -> torch.Tensor:
    """Prompt embeddings with the placeholder tokens replaced by vision features (4.x decoupled)."""
    embeds = model.get_input_embeddings()(input_ids)
    mask = (input_ids == token_id).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(mask, features.to(embeds.dtype).reshape(-1))


def set_attn_implementation(model: nn.Module, impl: str | None) -> None:
    """Make every transformers config in ``model`` (language model, vision towers, including ones
    nested in stagetrace's own EventGPT modules) use attention kernel ``impl``; None keeps the
    model's default. transformers' attention layers read the setting at every forward."""
    if impl is None:
        return
    found = (getattr(m, "config", None) for m in model.modules())
    configs = {id(c): c for c in found if isinstance(c, PretrainedConfig)}
    for config in configs.values():
        for sub in (config, *(getattr(config, k, None) for k in ("text_config", "vision_config"))):
            if isinstance(sub, PretrainedConfig):
                sub._attn_implementation = impl


def load_kwargs(spec: Any) -> dict[str, Any]:
    """``from_pretrained`` / ``_from_config`` arguments for a spec's settings: the attention kernel
    (when one is asked for), the device map (``--device-map auto``) and, for ``spec.load_in``
    ("4bit"/"8bit"), a BitsAndBytesConfig (4-bit computes in the spec's dtype) with the model placed
    on the spec's CUDA device unless a device map spreads it."""
    kwargs: dict[str, Any] = {}
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    if spec.device_map:  # --device-map auto: transformers places the layers over the local GPUs
        kwargs["device_map"] = spec.device_map
    if spec.load_in is None:
        return kwargs
    from transformers import BitsAndBytesConfig

    if spec.load_in == "4bit":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=spec.dtype)
    else:
        quant = BitsAndBytesConfig(load_in_8bit=True)
    return {"device_map": {"": str(spec.device)}, **kwargs, "quantization_config": quant}
