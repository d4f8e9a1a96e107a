"""Capture options: one frozen dataclass, saved whole into run.json and validated on the way back."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import msgspec

from capture.data.sample import EventInput, FramePick, InputRequest, Modality
from capture.errors import CaptureError
from capture.generation import GenerationSettings

Mode = Literal["fused", "decoupled"]
Verify = Literal["first", "all", "none"]
Weights = Literal["pretrained", "random"]
AttnImplementation = Literal["eager", "sdpa", "flash_attention_2"]
Cache = Literal["dynamic", "static"]
LoadIn = Literal["4bit", "8bit"]
ImageSource = Literal["video", "event"]

# Models that --weights random builds at full size from the configs shipped in the package.
RANDOM_WEIGHT_MODELS = ("llava-1.5", "video-llava", "eventgpt")

MAX_SEED = 2**32 - 1  # NumPy's SeedSequence and torch.manual_seed both take it
MAX_FRAMES = 64
_SIZE_RE = re.compile(r"^(?P<w>\d{1,6})[xX](?P<h>\d{1,6})$")


def option(default: Any, help: str) -> Any:
    """A dataclass field with its help text, for frozen configs that describe themselves."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class CaptureConfig:
    """Everything that decides what a capture run measures."""

    model: str = option("tiny-llava", "Model to run; tiny-* ones have random weights and need no download.")
    model_path: str | None = option(
        None, "Weights folder (eventgpt needs one), or a hub id looked up in the local HF cache."
    )
    dataset: str | None = option(
        None, "Dataset folder in the EventGPT DSEC layout; default: built-in synthetic."
    )
    samples: int = option(8, "Number of samples to capture.")
    out: str = option("traces", "Folder that receives one run folder per invocation.")
    mode: Mode = option("fused", "fused: ordinary generate(); decoupled: vision first, then generate().")
    device: str = option("auto", "auto, cpu or cuda.")
    device_map: str | None = option(
        None,
        "auto: spread one model that does not fit one GPU over all this node's GPUs "
        "(transformers' device_map='auto'; needs CUDA and the accelerate package).",
    )
    dtype: str = option("auto", "auto (bf16 on CUDA, fp32 on CPU), float32, float16 or bfloat16.")
    max_new_tokens: int = option(16, "Tokens to generate per sample at most (stops at EOS).")
    min_new_tokens: int = option(0, "Force at least this many tokens (0: stop at EOS).")
    warmup: int = option(1, "Un-recorded generate() runs before the first sample.")
    verify: Verify = option(
        "first", "Samples whose tokens are re-generated with labels and profiler off and compared."
    )
    record_shapes: bool = option(False, "Record operator input shapes (larger traces).")
    with_stack: bool = option(False, "Record Python stacks (much larger traces, more overhead).")
    profile_memory: bool = option(False, "Record allocator events.")
    seed: int = option(
        0, "Seed for tiny-model weights and the synthetic dataset; with --do-sample, sample i is "
        "drawn with seed + i."
    )
    threads: int | None = option(
        None,
        "torch intra-op threads (default: torch's choice). 1 keeps CPU timings stable on a busy machine.",
    )
    weights: Weights = option(
        "pretrained",
        "pretrained: load the checkpoint (--model-path or the HF cache); random: the published "
        "architecture at full size with random weights, no files needed (llava-1.5, video-llava, eventgpt).",
    )
    attn_implementation: AttnImplementation | None = option(
        None, "Attention kernel: eager, sdpa or flash_attention_2 (CUDA, flash-attn); default: the model's."
    )
    cache: Cache = option("dynamic", "KV cache: dynamic (grows per token) or static (preallocated).")
    compile: bool = option(
        False, "torch.compile the decoding forward (needs --cache static; CUDA graphs on CUDA)."
    )
    load_in: LoadIn | None = option(None, "Load weights in 4bit or 8bit through bitsandbytes (CUDA only).")
    event_input: EventInput = option(
        "auto",
        "Event frames: image (the pre-rendered event_image/ PNGs, event_image_1f/ for 1 frame), npy "
        "(drawn from event_npy/ as EventGPT draws them), auto (the PNGs where the clip has them).",
    )
    frames: int | None = option(
        None, "Frames per sample; default: the model's (eventgpt 5 event frames, video-llava 8, llava-1.5 1)."
    )
    image_source: ImageSource | None = option(
        None, "llava-1.5 / video-llava: video (camera frames; the default) or event (event frames)."
    )
    sensor_size: str | None = option(
        None, "WxH canvas to draw events on; default: each frame's own extent, as EventGPT draws."
    )
    prompt: str | None = option(
        None, "Question for every sample; default: the sample's own, else 'What are the key elements "
        "in this scene?'."
    )
    do_sample: bool = option(False, "Sample instead of greedy decoding (each sample seeded: --seed + index).")
    temperature: float | None = option(None, "Sampling temperature (with --do-sample; default 1.0).")
    top_p: float | None = option(None, "Nucleus sampling threshold (with --do-sample; default 1.0).")
    repetition_penalty: float | None = option(None, "Repetition penalty (default 1.0: none).")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise CaptureError naming the first option whose value cannot work."""
        checks = (
            (self.samples >= 1, "--samples", self.samples, "must be at least 1"),
            (self.max_new_tokens >= 1, "--max-new-tokens", self.max_new_tokens, "must be at least 1"),
            (self.min_new_tokens >= 0, "--min-new-tokens", self.min_new_tokens, "must be 0 or more"),
            (self.warmup >= 0, "--warmup", self.warmup, "must be 0 or more"),
            (0 <= self.seed <= MAX_SEED, "--seed", self.seed, f"must be between 0 and {MAX_SEED}"),
            (self.threads is None or self.threads >= 1, "--threads", self.threads, "must be at least 1"),
        )
        for ok, flag, value, rule in checks:
            if not ok:
                raise CaptureError(f"{flag} {value}: {rule}")
        if self.device_map not in (None, "auto"):
            raise CaptureError(f"--device-map {self.device_map}: expected auto")
        if self.min_new_tokens > self.max_new_tokens:
            raise CaptureError(
                f"--min-new-tokens {self.min_new_tokens} exceeds --max-new-tokens {self.max_new_tokens}"
            )
        self._validate_settings()
        self._validate_inputs()
        self._validate_decoding()

    def _validate_settings(self) -> None:
        """Combinations of --weights, --cache, --compile and --load-in that cannot work anywhere
        (the ones that depend on this machine are checked by capture.settings.check)."""
        if self.weights == "random":
            if self.model.startswith("tiny-"):
                raise CaptureError(
                    f"--weights random: {self.model} always has random weights; for the real-size "
                    f"architecture use --model {' or '.join(RANDOM_WEIGHT_MODELS)}"
                )
            if self.model_path is not None:
                raise CaptureError(
                    "--weights random builds the published architecture from the configs shipped with "
                    "stagetrace and reads no files; drop --model-path (or use --weights pretrained)"
                )
        if self.compile and self.cache != "static":
            raise CaptureError(
                "--compile needs --cache static: a dynamic cache changes shape at every step, so the "
                "compiled decoding forward would recompile each time; add --cache static"
            )

    def _validate_inputs(self) -> None:
        if self.frames is not None and not 1 <= self.frames <= MAX_FRAMES:
            raise CaptureError(f"--frames {self.frames}: must be between 1 and {MAX_FRAMES}")
        if self.sensor_size is not None:
            self.sensor_hw  # noqa: B018 (parses and checks it)
        if self.prompt is not None and not self.prompt.strip():
            raise CaptureError("--prompt is empty: give a question, or leave it out for each sample's own")
        if self.event_input == "image" and self.sensor_size is not None:
            raise CaptureError(
                "--sensor-size applies to events drawn from event_npy/, not to --event-input image"
            )

    def _validate_decoding(self) -> None:
        if self.temperature is not None and not 0 < self.temperature <= 100:
            raise CaptureError(f"--temperature {self.temperature}: must be above 0 (and at most 100)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise CaptureError(f"--top-p {self.top_p}: must be above 0 and at most 1")
        if self.repetition_penalty is not None and not 0 < self.repetition_penalty <= 100:
            raise CaptureError(f"--repetition-penalty {self.repetition_penalty}: must be above 0")
        if not self.do_sample:
            for flag, value in (("--temperature", self.temperature), ("--top-p", self.top_p)):
                if value is not None:
                    raise CaptureError(
                        f"{flag} {value} needs --do-sample: decoding is greedy unless --do-sample is given"
                    )

    @property
    def sensor_hw(self) -> tuple[int, int] | None:
        """``--sensor-size WxH`` as (height, width), or None."""
        if self.sensor_size is None:
            return None
        match = _SIZE_RE.match(self.sensor_size.strip())
        if not match or not (0 < int(match["w"]) <= 65535 and 0 < int(match["h"]) <= 65535):
            raise CaptureError(f"--sensor-size {self.sensor_size}: expected WIDTHxHEIGHT, e.g. 640x480")
        return int(match["h"]), int(match["w"])

    def for_model(self, modality: Modality, default_frames: int) -> CaptureConfig:
        """This config with the model's defaults filled in (``frames``, ``image_source``), or
        CaptureError naming an option the model cannot use."""
        events = modality == "events"
        if events and self.image_source is not None:
            raise CaptureError(
                f"--image-source {self.image_source} applies to llava-1.5 and video-llava; "
                f"{self.model} reads events (choose them with --event-input)"
            )
        image_source = None if events else (self.image_source or "video")
        if image_source == "video":
            if self.event_input != "auto":
                raise CaptureError(
                    f"--event-input {self.event_input} applies to event frames: use it with eventgpt "
                    "or with --image-source event"
                )
            if self.sensor_size is not None:
                raise CaptureError(
                    "--sensor-size applies where events are drawn: eventgpt, or --image-source event"
                )
        return replace(self, frames=self.frames or default_frames, image_source=image_source)

    def input_request(self, modality: Modality, pick: FramePick) -> InputRequest:
        """What the model reads per sample (call on the config ``for_model`` returned)."""
        events = modality == "events" or self.image_source == "event"
        return InputRequest(
            source="events" if events else "camera",
            n_frames=self.frames or 1,
            pick=pick,
            event_input=self.event_input,
            sensor_hw=self.sensor_hw,
            question=self.prompt.strip() if self.prompt else None,
        )

    def generation(self) -> GenerationSettings:
        """The decoding settings every generate() of the run uses."""
        return GenerationSettings.from_options(
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            cache=self.cache,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain dict for run.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, source: str = "run.json") -> CaptureConfig:
        """Rebuild from run.json's ``config``, checking every type and choice (unknown keys are
        ignored: they come from a newer stagetrace). CaptureError names the bad field."""
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise CaptureError(f"{source}: invalid config: {str(exc).replace('`$.', '`config.')}") from None
        except CaptureError as exc:
            raise CaptureError(f"{source}: invalid config: {exc}") from None

    @property
    def out_dir(self) -> Path:
        return Path(self.out)


def help_of(name: str) -> str:
    """The help text of config field ``name`` (the CLI reuses it, so it is written once)."""
    for f in fields(CaptureConfig):
        if f.name == name:
            return str(f.metadata["help"])
    raise KeyError(name)
