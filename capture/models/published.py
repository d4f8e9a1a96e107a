"""The published real-size architectures behind ``--weights random``, shipped as configs.

``capture/models/configs/<model>.json`` hold the published configs (package data; each says
where it comes from in its ``_source`` entry). With them and :mod:`capture.models.meta_build`,
a real-size model is built with random weights and without any checkpoint, tokenizer or
processor file; :mod:`capture.models.vocab` gives it a tokenizer of the real vocabulary size.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from capture.config import RANDOM_WEIGHT_MODELS


def published_config(name: str) -> dict[str, Any]:
    """The shipped config of real-size model ``name`` as a dict (without its ``_source`` note)."""
    if name not in RANDOM_WEIGHT_MODELS:
        raise KeyError(f"no published config for {name!r}; there are: {', '.join(RANDOM_WEIGHT_MODELS)}")
    text = (resources.files("capture.models") / "configs" / f"{name}.json").read_text(encoding="utf-8")
    raw: dict[str, Any] = json.loads(text)
    raw.pop("_source", None)
    return raw


def random_weights_label(seed: int) -> str:
    """run.json's ``model.weights`` for a --weights random run."""
    return f"random (published config, seed {seed})"
