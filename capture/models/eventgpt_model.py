"""stagetrace's own implementation of the EventGPT architecture, and its checkpoint format.

EventGPT (Liu et al., 2024) is a LLaVA-style model for event cameras: a CLIP ViT-L/14-336
tower encodes each of T event frames (577 tokens, CLS kept, last layer), a two-layer MLP
projector and a linear feature adaptor map them to the LLaMA width, and a parameter-free
spatio-temporal aggregation turns the T x 577 features into T temporal tokens (mean over each
frame's tokens) plus 577 spatial tokens (mean over frames). These T + 577 embeddings replace
the ``<event>`` placeholder of the prompt.

The model subclasses transformers' ``LlamaForCausalLM`` so ``generate()`` is the ordinary
Hugging Face loop (one ``forward`` per generated token), and its state-dict names are those of
the official checkpoint: ``model.visual_tower.visual_tower.vision_model.*``,
``model.visual_projector.{0,2}.*``, ``model.feature_adaptor.*``, ``model.embed_tokens``,
``model.layers.*``, ``model.norm``, ``lm_head``. Frames are encoded one at a time, as the
official inference code does (it passes the 5 frames as a list).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, LlamaModel

from analyze.errors import first_line
from analyze.files import write_atomic, write_text_atomic
from capture.errors import CaptureError
from capture.models.hf import dtype_kwarg

EVENT_TOKEN_INDEX = -200
"""The placeholder id the official tokenization inserts where ``<event>`` stood."""

WEIGHTS_FILE = "model.safetensors"
"""File name of the weights written by :func:`save_checkpoint`."""

# Buffers, not weights: older transformers saved them, newer ones recompute them.
_IGNORED_CHECKPOINT_KEYS = re.compile(r"(\.position_ids|rotary_emb\.inv_freq)$")
TOWER_PREFIX = "model.visual_tower.visual_tower."
_MAX_NAMES_IN_ERROR = 5


def clip_vit_l14_336_config() -> CLIPVisionConfig:
    """The vision config of ``openai/clip-vit-large-patch14-336``, built in (nothing is downloaded)."""
    return CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=768,
    )


def tokens_per_frame(vision_config: CLIPVisionConfig) -> int:
    """Tokens the tower yields per frame: one per patch plus CLS (577 at 336 px, patch 14)."""
    return (vision_config.image_size // vision_config.patch_size) ** 2 + 1


class SpatioTemporalAggregator(nn.Module):
    """EventGPT's aggregation: (..., T, P, H) frame features -> (..., T + P, H).

    The first T tokens are temporal (each frame's mean over its P tokens), the last P are
    spatial (each token position's mean over the T frames). No parameters; a module of its own
    so forward hooks can label it.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        temporal = features.mean(dim=-2)
        spatial = features.mean(dim=-3)
        return torch.cat([temporal, spatial], dim=-2)


class _ClipHolder(nn.Module):
    """Holds the CLIP vision transformer as ``vision_model`` so the state-dict names read
    ``visual_tower.vision_model.*`` with transformers 4.x (where ``CLIPVisionModel`` nests it)
    and 5.x (where ``CLIPVisionModel`` is the transformer itself) alike."""

    def __init__(self, vision_config: CLIPVisionConfig) -> None:
        super().__init__()
        clip = CLIPVisionModel(vision_config)
        self.vision_model = getattr(clip, "vision_model", clip)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values).last_hidden_state


class EventVisualTower(nn.Module):
    """CLIP tower (``model.visual_tower``): frames (N, 3, S, S) -> last-layer tokens (N, P, C), CLS kept."""

    def __init__(self, vision_config: CLIPVisionConfig) -> None:
        super().__init__()
        self.visual_tower = _ClipHolder(vision_config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_tower(pixel_values)


class EventGPTLlamaModel(LlamaModel):
    """LLaMA decoder plus EventGPT's vision parts, as ``model.*`` in the checkpoint."""

    def __init__(self, config: LlamaConfig, vision_config: CLIPVisionConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        self.visual_tower = EventVisualTower(vision_config)
        self.visual_projector = nn.Sequential(
            nn.Linear(vision_config.hidden_size, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.feature_adaptor = nn.Linear(hidden, hidden)
        self.aggregator = SpatioTemporalAggregator()


class EventGPTForCausalLM(LlamaForCausalLM):
    """EventGPT: ``generate()`` encodes the event frames (unless given features), splices them
    in place of the placeholder, and runs the ordinary Hugging Face ``generate()``."""

    def __init__(self, config: LlamaConfig, vision_config: CLIPVisionConfig | None = None) -> None:
        # Skip LlamaForCausalLM.__init__ (it would build a plain LlamaModel); as EventGPT does.
        super(LlamaForCausalLM, self).__init__(config)
        self.vision_config = vision_config or clip_vit_l14_336_config()
        self.model = EventGPTLlamaModel(config, self.vision_config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def resize_vocabulary(self, n_tokens: int, seed: int = 0) -> None:
        """Resize the input embeddings and ``lm_head`` to ``n_tokens`` rows, as EventGPT's loader
        does after adding its tokens (``resize_token_embeddings``). New rows are drawn from
        normal(0, ``initializer_range``), as transformers 4.37 initialised them, but from a
        generator seeded with ``seed`` so that a run can be repeated. No-op at the current size."""
        old = self.get_input_embeddings().weight.shape[0]
        if n_tokens == old:
            return
        self.resize_token_embeddings(n_tokens, mean_resizing=False)
        if n_tokens < old:
            return
        generator = torch.Generator().manual_seed(seed)
        std = float(getattr(self.config, "initializer_range", 0.02))
        with torch.no_grad():
            for weight in (self.get_input_embeddings().weight, self.get_output_embeddings().weight):
                rows = torch.empty(n_tokens - old, weight.shape[1]).normal_(0.0, std, generator=generator)
                weight[old:] = rows.to(device=weight.device, dtype=weight.dtype)

    @property
    def event_token_index(self) -> int:
        """The input id that marks where the event features go (-200 for official checkpoints)."""
        return int(getattr(self.config, "event_token_index", EVENT_TOKEN_INDEX))

    def encode_events(self, event_pixel_values: torch.Tensor) -> torch.Tensor:
        """Frames (T, 3, S, S) or (B, T, 3, S, S) -> event features (B, T + P, hidden).

        Per frame: tower -> projector -> adaptor, one frame at a time like the official code;
        then the spatio-temporal aggregation over the sample's frames.
        """
        if event_pixel_values.dim() == 4:
            event_pixel_values = event_pixel_values.unsqueeze(0)
        if event_pixel_values.dim() != 5:
            raise ValueError(
                "event_pixel_values must be (T, 3, S, S) or (B, T, 3, S, S), "
                f"got {tuple(event_pixel_values.shape)}"
            )
        m = self.model
        samples = []
        for frames in event_pixel_values:
            per_frame = [
                m.feature_adaptor(m.visual_projector(m.visual_tower(frame.unsqueeze(0))))[0]
                for frame in frames
            ]
            samples.append(m.aggregator(torch.stack(per_frame)))
        return torch.stack(samples)

    def splice_event_features(
        self,
        input_ids: torch.Tensor,
        event_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace each row's single placeholder id by that row's event features.

        ``input_ids`` (B, L) with exactly one ``event_token_index`` per row; ``event_features``
        (B, N, H) or (N, H). Returns ``inputs_embeds`` (B, L - 1 + N, H) and the matching
        attention mask (ones over the features).
        """
        if event_features.dim() == 2:
            event_features = event_features.unsqueeze(0)
        is_event = input_ids == self.event_token_index
        counts = is_event.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(
                f"each prompt needs exactly one event placeholder (id {self.event_token_index}); "
                f"found {counts.tolist()}"
            )
        if event_features.shape[0] != input_ids.shape[0]:
            raise ValueError(f"{event_features.shape[0]} event feature sets for {input_ids.shape[0]} prompts")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embed = self.get_input_embeddings()
        text_ids = input_ids.masked_fill(is_event, 0)  # the placeholder may be negative
        text_embeds = embed(text_ids)
        positions = is_event.int().argmax(dim=1).tolist()
        rows, masks = [], []
        for b, pos in enumerate(positions):
            feats = event_features[b].to(device=text_embeds.device, dtype=text_embeds.dtype)
            rows.append(torch.cat([text_embeds[b, :pos], feats, text_embeds[b, pos + 1 :]]))
            ones = attention_mask.new_ones(feats.shape[0])
            masks.append(torch.cat([attention_mask[b, :pos], ones, attention_mask[b, pos + 1 :]]))
        return torch.stack(rows), torch.stack(masks)

    @torch.no_grad()
    def generate(  # type: ignore[override]
        self,
        input_ids: torch.Tensor | None = None,
        event_pixel_values: torch.Tensor | None = None,
        event_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **gen_kwargs: Any,
    ) -> torch.Tensor:
        """Encode (fused mode) or take (decoupled mode) the event features, splice them into
        the prompt and call the ordinary ``generate()`` on ``inputs_embeds``.

        Returns only the new token ids (B, n_new): the prompt is passed as embeddings.
        """
        if input_ids is None:
            raise ValueError("EventGPT generate() needs input_ids holding the event placeholder")
        if event_features is None:
            if event_pixel_values is None:
                raise ValueError("EventGPT generate() needs event_pixel_values or event_features")
            event_features = self.encode_events(event_pixel_values)
        inputs_embeds, attention_mask = self.splice_event_features(input_ids, event_features, attention_mask)
        return super().generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **gen_kwargs)


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_eventgpt(
    config: LlamaConfig,
    vision_config: CLIPVisionConfig | None,
    device: torch.device,
    dtype: torch.dtype,
    *,
    init_weights: bool = True,
) -> EventGPTForCausalLM:
    """Construct the model directly on ``device`` in ``dtype``; ``init_weights=False`` leaves the
    parameters uninitialised (fast) for weights that are loaded next."""
    with _default_dtype(dtype), torch.device(device):
        if init_weights:
            model = EventGPTForCausalLM(config, vision_config)
        else:
            try:
                from transformers.initialization import no_init_weights
            except ImportError:  # transformers 4.x
                from transformers.modeling_utils import no_init_weights

            with no_init_weights():
                model = EventGPTForCausalLM(config, vision_config)
    return model.eval().requires_grad_(False)


# --- checkpoint folders ---------------------------------------------------------------------


def _name_list(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
    more = len(names) - _MAX_NAMES_IN_ERROR
    return shown + (f" (and {more} more)" if more > 0 else "")


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise CaptureError(
            f"no weights in EventGPT checkpoint folder {folder} (looked for *.safetensors and "
            "pytorch_model*.bin); pass --model-path with a complete checkpoint folder"
        )
    return files


def _iter_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, CPU tensor) pairs of one weights file, read one tensor at a time where possible."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                yield name, f.get_tensor(name)
    else:
        yield from torch.load(path, map_location="cpu", weights_only=True, mmap=True).items()


def _checkpoint_keys(path: Path) -> list[str]:
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    return list(torch.load(path, map_location="cpu", weights_only=True, mmap=True).keys())


def read_checkpoint_config(folder: Path) -> tuple[LlamaConfig, CLIPVisionConfig]:
    """The language and vision configs of a checkpoint folder.

    ``config.json`` is EventGPT's (a LLaMA config with extra keys such as ``mm_visual_tower``);
    a ``vision_config`` entry (written by :func:`save_checkpoint`) overrides the built-in CLIP
    ViT-L/14-336 config, which official checkpoints do not spell out.
    """
    path = folder / "config.json"
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CaptureError(
            f"cannot read {path} ({first_line(exc)}); "
            "pass --model-path DIR with an EventGPT checkpoint folder"
        ) from None
    vision = raw.pop("vision_config", None)
    vision_config = CLIPVisionConfig(**vision) if vision else clip_vit_l14_336_config()
    for key in ("architectures", "auto_map", "model_type", "torch_dtype", "dtype", "transformers_version"):
        raw.pop(key, None)
    return LlamaConfig(**raw), vision_config


def load_checkpoint(folder: str | Path, device: torch.device, dtype: torch.dtype) -> EventGPTForCausalLM:
    """Build EventGPT from a checkpoint folder (config.json + weights) on ``device`` in ``dtype``.

    Every parameter must come from the checkpoint and every checkpoint tensor must have a
    home; otherwise CaptureError lists the first names. Nothing is downloaded.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CaptureError(
            f"EventGPT checkpoint not found: no config.json in {folder.resolve()}; "
            "pass --model-path DIR with an EventGPT checkpoint folder"
        )
    config, vision_config = read_checkpoint_config(folder)
    if hasattr(config, "use_event_qformer"):
        raise CaptureError(
            f"EventGPT checkpoint {folder}: config.json has use_event_qformer: Q-Former checkpoints are "
            "not supported (EventGPT's own code cannot build them either)"
        )
    files = _weight_files(folder)
    stored = [k for f in files for k in _checkpoint_keys(f) if not _IGNORED_CHECKPOINT_KEYS.search(k)]
    clip_source = None
    if not any(k.startswith(TOWER_PREFIX) for k in stored):
        # As EventGPT's loader does: the tower is CLIP from config.mm_visual_tower.
        clip_source, vision_config = resolve_visual_tower(folder, getattr(config, "mm_visual_tower", None))
    model = build_eventgpt(config, vision_config, device, dtype, init_weights=False)
    targets = dict(model.state_dict(keep_vars=True))
    if model.config.tie_word_embeddings:
        targets.pop("lm_head.weight", None)
    if clip_source is not None:
        targets = {k: v for k, v in targets.items() if not k.startswith(TOWER_PREFIX)}
    missing = sorted(set(targets) - set(stored) - {k for k in targets if _IGNORED_CHECKPOINT_KEYS.search(k)})
    unexpected = sorted(set(stored) - set(targets))
    if missing:
        raise CaptureError(
            f"EventGPT checkpoint {folder} lacks {len(missing)} weights: {_name_list(missing)}"
        )
    if unexpected:
        raise CaptureError(
            f"EventGPT checkpoint {folder} has {len(unexpected)} unexpected weights: {_name_list(unexpected)}"
        )
    with torch.no_grad():
        for f in files:
            for name, tensor in _iter_tensors(f):
                if name not in targets:
                    continue
                target = targets[name]
                if target.shape != tensor.shape:
                    raise CaptureError(
                        f"EventGPT checkpoint {folder}: {name} has shape {tuple(tensor.shape)}, "
                        f"the config needs {tuple(target.shape)}"
                    )
                target.copy_(tensor)
    if clip_source is not None:
        load_visual_tower(model, clip_source)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return model


def resolve_visual_tower(folder: Path, name: object) -> tuple[str, CLIPVisionConfig]:
    """Where ``config.mm_visual_tower`` names the CLIP tower, and its vision config.

    Tried in order, local files only (never the network): the name as a path (absolute, or
    relative to the current folder), relative to the checkpoint folder and to its parent
    (EventGPT's loader looks in ``./checkpoints/<name>``, beside ``./checkpoints/EventGPT-7b``),
    then the name as a Hugging Face hub id in the local cache (a bare
    ``clip-vit-large-patch14-336`` also as ``openai/clip-vit-large-patch14-336``).
    """
    if not isinstance(name, str) or not name.strip():
        raise CaptureError(
            f"EventGPT checkpoint {folder} has no CLIP tower weights "
            f"({TOWER_PREFIX}*) and its config.json names no mm_visual_tower to load them from"
        )
    candidates = [Path(name).expanduser(), folder / name, folder.parent / name]
    sources = [str(c) for c in dict.fromkeys(candidates) if c.is_dir()]
    if not Path(name).is_absolute():
        sources.append(name)
        if "/" not in name:
            sources.append(f"openai/{name}")
    for source in sources:
        try:
            return source, CLIPVisionConfig.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError):
            continue
    cached = [f"the HF cache for {s!r}" for s in sources if not Path(s).is_dir()]
    looked = ", ".join([str(c) for c in dict.fromkeys(candidates)] + cached)
    raise CaptureError(
        f"EventGPT checkpoint {folder} has no CLIP tower weights and mm_visual_tower {name!r} was not "
        f"found (looked in {looked}); download openai/clip-vit-large-patch14-336 and set "
        "mm_visual_tower in config.json to its folder"
    )


def load_visual_tower(model: EventGPTForCausalLM, source: str) -> None:
    """Copy the CLIP vision weights of ``source`` (a folder or cached hub id) into the tower."""
    tower = model.model.visual_tower.visual_tower.vision_model
    param = next(tower.parameters())
    try:
        clip = CLIPVisionModel.from_pretrained(source, local_files_only=True, **dtype_kwarg(param.dtype))
    except (OSError, ValueError) as exc:
        raise CaptureError(f"cannot load the CLIP tower from {source} ({first_line(exc)})") from None
    weights = getattr(clip, "vision_model", clip).state_dict()
    result = tower.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not _IGNORED_CHECKPOINT_KEYS.search("." + k)]
    if missing:
        raise CaptureError(f"the CLIP tower in {source} lacks {len(missing)} weights: {_name_list(missing)}")
    tower.to(device=param.device)


def save_checkpoint(model: EventGPTForCausalLM, folder: str | Path) -> Path:
    """Write ``config.json`` (with a ``vision_config`` entry) and ``model.safetensors`` in the
    official key names, so :func:`load_checkpoint` rebuilds the same model. Atomic per file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config["vision_config"] = model.vision_config.to_dict()
    # The tokenizer saved beside it already holds every token the model has: tell the loader
    # not to add <ev_patch> (EventGPT's default when the key is absent) unless the config says.
    config.setdefault("mm_use_im_patch_token", False)
    config["event_token_index"] = model.event_token_index
    config["architectures"] = [type(model).__name__]
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    write_atomic(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    write_text_atomic(folder / "config.json", json.dumps(config, indent=2, default=str))
    return folder
