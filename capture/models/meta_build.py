"""Build a model at full size with random weights, never materialising a float32 copy.

The model is constructed on the meta device (shapes only, no memory) with its parameters
already in the requested dtype; ``to_empty`` then allocates them directly on the target device,
and transformers' own ``initialize_weights`` fills them as a fresh model would be (normal(0,
0.02) linear and embedding weights, unit norms, zero biases), drawn from a seeded generator. A
7B model in bf16 thus needs its 14 GB once, on the device it runs on.

Buffers need care: ``to_empty`` leaves them as garbage too, and they are not weights (rotary
``inv_freq``, kept in float32 whatever the model's dtype, and CLIP's ``position_ids``). Every
module that owns buffers is therefore rebuilt on the CPU from its own config (``type(m)(m.config)``,
a few kilobytes) and its buffers copied over, on every transformers version. A module with
buffers but no config cannot be rebuilt: that is an error, never a silent wrong model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` under the meta device: the full architecture, no memory allocated.

    ``factory`` decides the parameters' dtype (e.g. ``Cls._from_config(cfg, dtype=...)``)."""
    with torch.device("meta"):
        return factory()


def parameter_count(model: nn.Module) -> int:
    """Parameters of ``model`` (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())


def materialise(model: nn.Module, device: torch.device, seed: int) -> nn.Module:
    """Allocate a meta-built ``model`` on ``device`` in the dtypes it was built with, fill its
    weights with transformers' initialisation from ``seed``, and recompute its buffers."""
    model.to_empty(device=device)
    generator_device = device if device.type != "meta" else torch.device("cpu")
    if generator_device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        initialize = getattr(model, "initialize_weights", None)
        if initialize is None:
            raise TypeError(f"{type(model).__name__} is not a transformers model: cannot initialise it")
        # transformers 4.x already "initialised" the meta tensors during construction and marks
        # every module and parameter done; those marks would make it skip the real storage now.
        for obj in (*model.modules(), *model.parameters()):
            if getattr(obj, "_is_hf_initialized", False):
                obj._is_hf_initialized = False
        initialize()
        restore_buffers(model, device)
    return model.eval().requires_grad_(False)


def restore_buffers(model: nn.Module, device: torch.device) -> None:
    """Recompute every buffer of ``model`` by rebuilding its owning module from its config on the
    CPU; also re-point plain tensor attributes (e.g. transformers 4.x's ``original_inv_freq``)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # buffers are built as a float32 model builds them
    try:
        for name, module in model.named_modules():
            own = dict(module.named_buffers(recurse=False))
            if not own:
                continue
            config = getattr(module, "config", None)
            if config is None:
                raise TypeError(
                    f"{name or type(model).__name__} ({type(module).__name__}) has buffers "
                    f"{sorted(own)} but no config to recompute them from"
                )
            with torch.device("cpu"):
                fresh = type(module)(config)
            fresh_buffers = dict(fresh.named_buffers(recurse=False))
            for key, buf in own.items():
                buf.copy_(fresh_buffers[key].to(buf.dtype))
            for key, value in vars(fresh).items():  # plain tensor attributes, not buffers
                if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                    target = own.get(key)
                    if target is None and key not in fresh._buffers:
                        setattr(module, key, value.to(device))
    finally:
        torch.set_default_dtype(previous)
