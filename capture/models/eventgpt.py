"""EventGPT's model adapter (``--model eventgpt`` and ``tiny-eventgpt``): preprocessing, prompt,
tokenizer set-up, hook points and generation around :mod:`capture.models.eventgpt_model`.

Everything follows EventGPT's official inference code (XduSyL/EventGPT ``inference.py``,
``common/common.py``, ``dataset/conversation.py``):

- frames: the event stream drawn as N frames (:func:`capture.data.events.render_event_frames`;
  5 by default, ``--frames``), or the dataset's pre-rendered event PNGs; each goes through the
  CLIP image processor (shortest edge 336, bicubic, centre crop 336, CLIP mean/std);
- prompt: the ``eventgpt_v1`` conversation, ``{system} USER: <ev_start><event><ev_end>\n{question}
  ASSISTANT:``, tokenized as ``tokenizer_event_token`` does (each piece around ``<event>`` on
  its own, one BOS, the placeholder id -200 between them);
- tokenizer: loaded with ``use_fast=False``; ``<ev_patch>`` is added when the checkpoint's
  config does not turn ``mm_use_im_patch_token`` off, ``<ev_start>``/``<ev_end>`` when
  ``mm_use_im_start_end`` is on, and the embeddings are resized to the tokenizer.

``tiny-eventgpt`` is the same code at toy size (28 px frames, 5 tokens per frame, a 64-wide
2-layer LLaMA) with random weights seeded by ``spec.seed``, built in-process for CPU demos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, LlamaConfig, PreTrainedTokenizerBase

from analyze.errors import first_line
from capture.data.events import EVENTGPT_N_CHUNKS
from capture.data.sample import Modality, RawSample
from capture.errors import CaptureError
from capture.models import hf, meta_build
from capture.models.base import Inputs, ModelAdapter, ModelSpec, VisionParts
from capture.models.eventgpt_model import (
    EventGPTForCausalLM,
    build_eventgpt,
    load_checkpoint,
    tokens_per_frame,
)
from capture.models.published import published_config, random_weights_label
from capture.models.tiny import build_tiny_tokenizer, seeded
from capture.models.vocab import build_vocab_tokenizer

__all__ = [
    "EventGPTAdapter",
    "build_prompt",
    "build_random_eventgpt",
    "build_tiny_eventgpt",
    "clip_image_processor",
    "tokenize_event_prompt",
]

EVENT_PLACEHOLDER = "<event>"
EV_START, EV_END, EV_PATCH = "<ev_start>", "<ev_end>", "<ev_patch>"
VICUNA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
TINY_IMAGE_SIZE = 28

TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": TINY_IMAGE_SIZE,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
}
TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
}


def build_prompt(question: str) -> str:
    """EventGPT's ``eventgpt_v1`` conversation (``prepare_event_prompt``): the system message,
    then ``USER: <ev_start><event><ev_end>\n{question} ASSISTANT:``. The start/end markers are
    always there; whether they are single tokens depends on the tokenizer (see
    :func:`add_event_tokens`)."""
    return f"{VICUNA_V1_SYSTEM} USER: {EV_START}{EVENT_PLACEHOLDER}{EV_END}\n{question} ASSISTANT:"


def tokenize_event_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str, event_token_index: int
) -> list[int]:
    """EventGPT's ``tokenizer_event_token``: tokenize the pieces around ``<event>`` and insert
    ``event_token_index`` between them, keeping only the first piece's BOS."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split(EVENT_PLACEHOLDER)]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(event_token_index)
        ids.extend(chunk[offset:])
    return ids


def add_event_tokens(tokenizer: PreTrainedTokenizerBase, config: Any) -> list[str]:
    """What EventGPT's ``inference.py`` does to the tokenizer: add ``<ev_patch>`` unless the
    config sets ``mm_use_im_patch_token`` false (absent means true), and ``<ev_start>``,
    ``<ev_end>`` if it sets ``mm_use_im_start_end`` (absent means false), all as special tokens.
    Returns the tokens added (the caller resizes the embeddings to ``len(tokenizer)``)."""
    wanted = []
    if getattr(config, "mm_use_im_patch_token", True):
        wanted.append(EV_PATCH)
    if getattr(config, "mm_use_im_start_end", False):
        wanted += [EV_START, EV_END]
    vocab = tokenizer.get_vocab()
    added = [token for token in wanted if token not in vocab]
    if wanted:
        tokenizer.add_tokens(wanted, special_tokens=True)
    return added


def clip_image_processor(image_size: int) -> Any:
    """CLIP's image processor from parameters: shortest edge ``image_size`` (bicubic), centre
    crop ``image_size``, rescale 1/255, CLIP mean/std. The PIL backend is used explicitly where
    transformers has one (5.x), as EventGPT's own (4.x, PIL-based) processor did."""
    try:
        from transformers import CLIPImageProcessorPil as processor_class
    except ImportError:  # transformers 4.x: CLIPImageProcessor is the PIL one
        from transformers import CLIPImageProcessor as processor_class
    return processor_class(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=3,  # PIL bicubic
        do_center_crop=True,
        do_convert_rgb=True,
    )


def build_tiny_eventgpt(
    seed: int, device: torch.device, dtype: torch.dtype
) -> tuple[EventGPTForCausalLM, PreTrainedTokenizerBase]:
    """A toy EventGPT with random weights drawn from ``seed`` and the tiny word-level tokenizer;
    its placeholder id is the tokenizer's ``<event>`` token."""
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_TEXT,
    )
    config.event_token_index = tokenizer.convert_tokens_to_ids(EVENT_PLACEHOLDER)
    seeded(seed)
    model = build_eventgpt(config, CLIPVisionConfig(**TINY_VISION), device, dtype)
    return model, tokenizer


def build_random_eventgpt(dtype: torch.dtype, device: torch.device | str = "meta") -> EventGPTForCausalLM:
    """EventGPT from the shipped real-size config, parameters uninitialised, in ``dtype`` on
    ``device`` (the meta device for ``--weights random``; see meta_build)."""
    raw = published_config("eventgpt")
    vision_config = CLIPVisionConfig(**raw.pop("vision_config"))
    raw.pop("architectures", None)
    return build_eventgpt(LlamaConfig(**raw), vision_config, torch.device(device), dtype, init_weights=False)


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, loaded as EventGPT's ``inference.py`` does
    (``use_fast=False``: the SentencePiece ``tokenizer.model`` where there is one; transformers
    5.x builds the same tokenizer either way). A folder with only ``tokenizer.json`` loads with
    the default class. Never downloads."""
    errors = []
    for kwargs in ({"use_fast": False}, {}):
        try:
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
        except Exception as exc:  # transformers raises many types here
            errors.append(first_line(exc))
    raise CaptureError(
        f"cannot load the tokenizer in EventGPT checkpoint {folder} ({errors[-1]}); "
        "it needs tokenizer.model (sentencepiece) or tokenizer.json"
    )


class EventGPTAdapter(ModelAdapter):
    """EventGPT (real checkpoint folder) and tiny-eventgpt (random, in-process)."""

    modality: ClassVar[Modality] = "events"
    default_frames: ClassVar[int] = EVENTGPT_N_CHUNKS
    names: ClassVar[tuple[str, ...]] = ("eventgpt", "tiny-eventgpt")

    def __init__(
        self,
        spec: ModelSpec,
        model: EventGPTForCausalLM,
        tokenizer: PreTrainedTokenizerBase,
        image_size: int,
        weights_source: str,
    ) -> None:
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = clip_image_processor(image_size)
        self.weights_source = weights_source
        self.set_up_generation(tokenizer)

    @classmethod
    def build(cls, spec: ModelSpec) -> EventGPTAdapter:
        """``tiny-eventgpt``: random weights from ``spec.seed``. ``eventgpt``: the checkpoint
        folder ``spec.model_path`` (CaptureError saying where it looked when it is missing)."""
        # With --device-map the model is built on the CPU, then spread over the GPUs.
        build_on = torch.device("cpu") if spec.device_map else spec.device
        if spec.name == "tiny-eventgpt":
            model, tokenizer = build_tiny_eventgpt(spec.seed, build_on, spec.dtype)
            model = hf.place(model, spec) if spec.device_map else model
            return cls(spec, model, tokenizer, TINY_IMAGE_SIZE, f"random (seed {spec.seed})")
        if spec.name != "eventgpt":
            raise CaptureError(f"EventGPTAdapter builds {', '.join(cls.names)}, not {spec.name!r}")
        if spec.weights == "random":
            return cls.build_random(spec)
        if not spec.model_path:
            raise CaptureError(
                "eventgpt needs its checkpoint folder: pass --model-path DIR (config.json, "
                "*.safetensors or pytorch_model*.bin, tokenizer files); nothing is downloaded"
            )
        folder = Path(spec.model_path).expanduser()
        if not folder.is_dir():
            raise CaptureError(
                f"EventGPT checkpoint folder not found: looked in {folder.resolve()}; "
                "pass --model-path DIR with an EventGPT checkpoint folder"
            )
        if not (folder / "config.json").is_file():
            raise CaptureError(
                f"no config.json in {folder.resolve()}: not an EventGPT checkpoint folder; "
                "pass --model-path DIR with an EventGPT checkpoint folder"
            )
        tokenizer = load_tokenizer(folder)
        model = load_checkpoint(folder, build_on, spec.dtype)
        add_event_tokens(tokenizer, model.config)
        model.resize_vocabulary(len(tokenizer), seed=spec.seed)
        model = hf.place(model, spec) if spec.device_map else model
        image_size = model.vision_config.image_size
        return cls(spec, model, tokenizer, image_size, str(folder.resolve()))

    @classmethod
    def build_random(cls, spec: ModelSpec) -> EventGPTAdapter:
        """EventGPT-7B at full size with random weights (``--weights random``): the shipped config,
        built on the meta device and allocated in ``spec.dtype`` on ``spec.device``; a 32000-token
        tokenizer built in-process (pad = ``<unk>``, as EventGPT's LLaVA-derived code sets it)."""
        model = meta_build.build_on_meta(lambda: build_random_eventgpt(spec.dtype))
        meta_build.materialise(model, spec.device, spec.seed)
        tokenizer = build_vocab_tokenizer(model.config.vocab_size, (), pad_token="<unk>")
        return cls(spec, model, tokenizer, model.vision_config.image_size, random_weights_label(spec.seed))

    def vision_parts(self) -> VisionParts:
        m = self.model.model
        return VisionParts(
            enter=(m.visual_tower,),
            exit=m.aggregator,
            parts=(
                ("tower", m.visual_tower),
                ("projector", m.visual_projector),
                ("projector", m.feature_adaptor),
                ("aggregate", m.aggregator),
            ),
        )

    def step_module(self) -> torch.nn.Module:
        return self.model

    def prepare(self, raw: RawSample) -> Inputs:
        """Events -> N frames (or the pre-rendered event frames) -> CLIP pixels (N, 3, S, S);
        prompt -> ids with the placeholder."""
        frames = self.frames_for(raw)
        if not frames:
            raise CaptureError(f"sample {raw.sample_id}: no events; EventGPT needs events or event frames")
        pixels = self.image_processor(
            images=frames, return_tensors="pt", input_data_format="channels_last"
        )["pixel_values"]
        prompt = self.prompt_text(raw.prompt)
        ids = tokenize_event_prompt(self.tokenizer, prompt, self.model.event_token_index)
        device = self.spec.device
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "event_pixel_values": pixels.to(device=device, dtype=self.spec.dtype),
        }

    def encode_vision(self, inputs: Inputs) -> Inputs:
        out = {k: v for k, v in inputs.items() if k != "event_pixel_values"}
        with torch.no_grad():
            out["event_features"] = self.model.encode_events(inputs["event_pixel_values"])
        return out

    def echoed_prompt_length(self, inputs: Inputs) -> int:
        """None: EventGPT's generate() hands the prompt to the HF loop as embeddings."""
        return 0

    def prompt_text(self, question: str, n_frames: int = 1) -> str:
        """The ``eventgpt_v1`` prompt (one ``<event>`` whatever the number of frames)."""
        return build_prompt(question)

    def prefill_tokens(self, inputs: Inputs) -> int:
        """Text ids less the placeholder, plus the event tokens: T temporal + 577 spatial
        (5 frames: 582; 1 frame: 578)."""
        n_text = int(inputs["input_ids"].shape[1]) - 1
        if "event_features" in inputs:
            return n_text + int(inputs["event_features"].shape[-2])
        n_frames = int(inputs["event_pixel_values"].shape[-4])
        return n_text + n_frames + tokens_per_frame(self.model.vision_config)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True).strip()
