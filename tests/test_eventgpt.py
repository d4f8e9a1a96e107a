"""EventGPT architecture and adapter: aggregation, splice, tiny generation, checkpoints, hooks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, LlamaConfig

from capture.data.sample import EVENT_DTYPE, RawSample
from capture.errors import CaptureError
from capture.generation import GenerationSettings
from capture.models.base import ModelSpec
from capture.models.eventgpt import (
    TINY_TEXT,
    TINY_VISION,
    EventGPTAdapter,
    build_prompt,
    build_tiny_eventgpt,
    tokenize_event_prompt,
)
from capture.models.eventgpt_model import (
    EVENT_TOKEN_INDEX,
    WEIGHTS_FILE,
    SpatioTemporalAggregator,
    build_eventgpt,
    clip_vit_l14_336_config,
    save_checkpoint,
    tokens_per_frame,
)

CPU = torch.device("cpu")
N_NEW = 16
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_spec(seed: int = 0) -> ModelSpec:
    return ModelSpec("tiny-eventgpt", None, CPU, torch.float32, seed=seed)


def synthetic_events(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Random events in the top-left 200x200 of the 640x480 sensor (the bottom-right stays white)."""
    rng = np.random.default_rng(seed)
    events = np.zeros(n, EVENT_DTYPE)
    events["x"] = rng.integers(0, 200, n)
    events["y"] = rng.integers(0, 200, n)
    events["t"] = np.arange(n) * 10
    events["p"] = rng.integers(0, 2, n)
    return events


@pytest.fixture(scope="module")
def adapter() -> EventGPTAdapter:
    return EventGPTAdapter.build(tiny_spec())


@pytest.fixture(scope="module")
def raw() -> RawSample:
    return RawSample(
        "s0",
        "Describe what happens in the scene.",
        events=synthetic_events(),
        sensor_hw=(480, 640),
        n_frames=5,
    )


@pytest.fixture(scope="module")
def fused_tokens(adapter: EventGPTAdapter, raw: RawSample) -> list[int]:
    return adapter.generate(adapter.prepare(raw), GenerationSettings(N_NEW, N_NEW)).token_ids


@pytest.fixture(scope="module")
def checkpoint(adapter: EventGPTAdapter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_checkpoint(adapter.model, tmp_path_factory.mktemp("tiny-ckpt"))
    adapter.tokenizer.save_pretrained(folder)
    return folder


# --- aggregation ------------------------------------------------------------------------------


def test_aggregation_known_values() -> None:
    # T=2 frames, P=3 tokens, H=1: frame means 2 and 20; token means over frames 5.5, 11, 16.5.
    feats = torch.tensor([[[1.0], [2.0], [3.0]], [[10.0], [20.0], [30.0]]])
    out = SpatioTemporalAggregator()(feats)
    assert out.squeeze(-1).tolist() == [2.0, 20.0, 5.5, 11.0, 16.5]


def test_aggregation_full_size_shape() -> None:
    feats = torch.randn(5, 577, 8, generator=torch.Generator().manual_seed(0))
    out = SpatioTemporalAggregator()(feats)
    assert out.shape == (5 + 577, 8)
    torch.testing.assert_close(out[:5], feats.mean(dim=1))
    torch.testing.assert_close(out[5:], feats.mean(dim=0))
    assert list(SpatioTemporalAggregator().parameters()) == []


def test_full_size_vision_gives_t_plus_577_tokens() -> None:
    assert tokens_per_frame(clip_vit_l14_336_config()) == 577
    # Full-size vision parts (2 LLaMA layers) on the meta device: shapes only, no memory, no time.
    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=2, num_attention_heads=32
    )
    model = build_eventgpt(config, None, torch.device("meta"), torch.bfloat16, init_weights=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["model.visual_projector.0.weight"] == (4096, 1024)
    assert shapes["model.visual_projector.2.weight"] == (4096, 4096)
    assert shapes["model.feature_adaptor.weight"] == (4096, 4096)
    assert shapes["model.visual_tower.visual_tower.vision_model.embeddings.position_embedding.weight"] == (
        577,
        1024,
    )
    frames = torch.empty(5, 3, 336, 336, device="meta", dtype=torch.bfloat16)
    assert model.encode_events(frames).shape == (1, 5 + 577, 4096)


# --- prompt and splice --------------------------------------------------------------------------


class _BosTokenizer:
    """A stand-in for LLaMA's tokenizer: one id per word, BOS (1) prepended to every call."""

    bos_token_id = 1

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str) -> object:
        ids = [self.vocab.setdefault(w, 10 + len(self.vocab)) for w in text.split()]
        return type("Enc", (), {"input_ids": [self.bos_token_id, *ids]})()


def test_tokenize_event_prompt_keeps_one_bos_and_inserts_sentinel() -> None:
    ids = tokenize_event_prompt(_BosTokenizer(), "a b <event>\nc", EVENT_TOKEN_INDEX)
    assert ids == [1, 10, 11, EVENT_TOKEN_INDEX, 12]


def test_prompt_is_the_official_eventgpt_v1_template() -> None:
    # prepare_event_prompt("What are the key elements in this scene?", "eventgpt_v1"), 240 characters.
    official = (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the human's questions. "
        "USER: <ev_start><event><ev_end>\nWhat are the key elements in this scene? ASSISTANT:"
    )
    assert build_prompt("What are the key elements in this scene?") == official and len(official) == 240
    adapter = EventGPTAdapter.build(tiny_spec())
    assert adapter.prompt_text("What are the key elements in this scene?", 1) == official


def test_splice_puts_features_at_placeholder(adapter: EventGPTAdapter) -> None:
    model = adapter.model
    event_id = model.event_token_index
    ids = torch.tensor([[5, 9, event_id, 12, 13]])
    feats = torch.randn(1, 10, model.config.hidden_size)
    embeds, mask = model.splice_event_features(ids, feats, torch.ones_like(ids))
    text = model.get_input_embeddings()(torch.tensor([[5, 9, 12, 13]]))
    assert embeds.shape == (1, 4 + 10, model.config.hidden_size)
    assert torch.equal(embeds[0, :2], text[0, :2])
    assert torch.equal(embeds[0, 2:12], feats[0])
    assert torch.equal(embeds[0, 12:], text[0, 2:])
    assert mask.tolist() == [[1] * 14]


def test_splice_refuses_missing_or_repeated_placeholder(adapter: EventGPTAdapter) -> None:
    model = adapter.model
    feats = torch.zeros(1, 10, model.config.hidden_size)
    event_id = model.event_token_index
    for ids in ([[5, 9, 12]], [[event_id, 9, event_id]]):
        with pytest.raises(ValueError, match="exactly one event placeholder"):
            model.splice_event_features(torch.tensor(ids), feats)


def test_splice_with_official_negative_sentinel() -> None:
    model, _ = build_tiny_eventgpt(0, CPU, torch.float32)
    model.config.event_token_index = EVENT_TOKEN_INDEX
    ids = torch.tensor([[1, 7, EVENT_TOKEN_INDEX, 8]])
    feats = torch.randn(10, model.config.hidden_size)
    embeds, _ = model.splice_event_features(ids, feats)
    assert torch.equal(embeds[0, 2:12], feats)
    assert torch.equal(embeds[0, 12], model.get_input_embeddings().weight[8])


# --- adapter: prepare, generate ----------------------------------------------------------------


def test_prepare_shapes_and_clip_normalisation(adapter: EventGPTAdapter, raw: RawSample) -> None:
    inputs = adapter.prepare(raw)
    pixels = inputs["event_pixel_values"]
    assert pixels.shape == (5, 3, 28, 28) and pixels.dtype == torch.float32
    # The bottom-right corner has no events: white, i.e. (1 - mean) / std per channel.
    white = [(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)]
    torch.testing.assert_close(pixels[:, :, -1, -1], torch.tensor([white] * 5), atol=1e-5, rtol=0)
    ids = inputs["input_ids"]
    event_id = adapter.tokenizer.convert_tokens_to_ids("<event>")
    assert (ids == event_id).sum().item() == 1
    assert inputs["attention_mask"].shape == ids.shape


def test_prepare_without_events_is_a_capture_error(adapter: EventGPTAdapter) -> None:
    with pytest.raises(CaptureError, match="no events"):
        adapter.prepare(RawSample("s9", "What?", events=None))


def test_prepare_checks_the_events_against_the_sensor(adapter: EventGPTAdapter) -> None:
    events = synthetic_events()  # x up to 199
    message = r"^sample s8: event x spans \d+\.\.199, outside the 100x480 sensor"
    with pytest.raises(CaptureError, match=message):
        adapter.prepare(RawSample("s8", "What?", events=events, sensor_hw=(480, 100), n_frames=5))


def test_generation_pads_with_the_tokenizer_and_runs_the_asked_attention() -> None:
    spec = ModelSpec("tiny-eventgpt", None, CPU, torch.float32, attn_implementation="eager")
    built = EventGPTAdapter.build(spec)
    tok = built.tokenizer
    want = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    assert want is not None and built.model.generation_config.pad_token_id == want
    assert built.describe().attn_implementation == "eager"


def test_tiny_generate_is_deterministic(adapter: EventGPTAdapter, raw: RawSample) -> None:
    other = EventGPTAdapter.build(tiny_spec())
    inputs = adapter.prepare(raw)
    first = adapter.generate(inputs, GenerationSettings(N_NEW, N_NEW)).token_ids
    second = other.generate(other.prepare(raw), GenerationSettings(N_NEW, N_NEW)).token_ids
    assert len(first) == N_NEW
    assert first == second
    different = EventGPTAdapter.build(tiny_spec(seed=1))
    assert not torch.equal(different.model.lm_head.weight, adapter.model.lm_head.weight), (
        "another seed must give other weights"
    )


def test_decoupled_equals_fused(adapter: EventGPTAdapter, raw: RawSample, fused_tokens: list[int]) -> None:
    inputs = adapter.prepare(raw)
    decoupled = adapter.encode_vision(inputs)
    assert "event_pixel_values" not in decoupled
    assert decoupled["event_features"].shape == (1, 5 + 5, adapter.model.config.hidden_size)
    tokens = adapter.generate(decoupled, GenerationSettings(N_NEW, N_NEW)).token_ids
    assert tokens == fused_tokens


def test_decode_skips_special_tokens(adapter: EventGPTAdapter) -> None:
    tok = adapter.tokenizer
    ids = [tok.bos_token_id, *tok.convert_tokens_to_ids(["red", "car"]), tok.eos_token_id]
    assert adapter.decode(ids) == "red car"


def test_hooks_fire_vision_first_then_one_step_per_token(adapter: EventGPTAdapter, raw: RawSample) -> None:
    parts = adapter.vision_parts()
    assert parts.enter == (adapter.model.model.visual_tower,)
    assert parts.exit is adapter.model.model.aggregator
    assert [name for name, _ in parts.parts] == ["tower", "projector", "projector", "aggregate"]
    log: list[str] = []
    watched = {
        "tower": adapter.model.model.visual_tower,
        "aggregate": adapter.model.model.aggregator,
        "step": adapter.step_module(),
    }
    handles = []
    for name, module in watched.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: log.append(f"{n}>")))
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: log.append(f"{n}<")))
    try:
        tokens = adapter.generate(adapter.prepare(raw), GenerationSettings(N_NEW, N_NEW)).token_ids
    finally:
        for handle in handles:
            handle.remove()
    first_step = log.index("step>")
    assert log[:first_step] == ["tower>", "tower<"] * 5 + ["aggregate>", "aggregate<"]
    assert log[first_step:] == ["step>", "step<"] * len(tokens)
    assert len(tokens) == N_NEW


# --- checkpoints ---------------------------------------------------------------------------------

OFFICIAL_KEY = re.compile(
    r"^(lm_head\.weight|model\.(embed_tokens\.weight|norm\.weight|layers\.\d+\..+"
    r"|visual_tower\.visual_tower\.vision_model\..+|visual_projector\.[02]\.(weight|bias)"
    r"|feature_adaptor\.(weight|bias)))$"
)


def test_state_dict_names_match_official_checkpoint(adapter: EventGPTAdapter) -> None:
    keys = list(adapter.model.state_dict())
    assert [k for k in keys if not OFFICIAL_KEY.match(k)] == []
    for key in (
        "lm_head.weight",
        "model.embed_tokens.weight",
        "model.norm.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.visual_tower.visual_tower.vision_model.embeddings.class_embedding",
        "model.visual_tower.visual_tower.vision_model.encoder.layers.1.mlp.fc2.weight",
        "model.visual_tower.visual_tower.vision_model.post_layernorm.weight",
        "model.visual_projector.0.weight",
        "model.visual_projector.2.bias",
        "model.feature_adaptor.weight",
        "model.feature_adaptor.bias",
    ):
        assert key in keys


def test_checkpoint_roundtrip_gives_identical_tokens(
    checkpoint: Path, raw: RawSample, fused_tokens: list[int]
) -> None:
    loaded = EventGPTAdapter.build(ModelSpec("eventgpt", str(checkpoint), CPU, torch.float32))
    assert loaded.weights_source == str(checkpoint.resolve())
    tokens = loaded.generate(loaded.prepare(raw), GenerationSettings(N_NEW, N_NEW)).token_ids
    assert tokens == fused_tokens


def test_pytorch_bin_checkpoint_loads(
    checkpoint: Path, tmp_path: Path, raw: RawSample, fused_tokens: list[int]
) -> None:
    folder = _copy_checkpoint(checkpoint, tmp_path)
    state = load_file(str(folder / WEIGHTS_FILE))
    (folder / WEIGHTS_FILE).unlink()
    # Older transformers saved CLIP's position_ids buffer; it is ignored, not "unexpected".
    state["model.visual_tower.visual_tower.vision_model.embeddings.position_ids"] = torch.arange(5)[None]
    torch.save(state, folder / "pytorch_model.bin")
    loaded = EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))
    tokens = loaded.generate(loaded.prepare(raw), GenerationSettings(N_NEW, N_NEW)).token_ids
    assert tokens == fused_tokens


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


def test_missing_weights_are_listed(checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy_checkpoint(checkpoint, tmp_path)
    state = load_file(str(folder / WEIGHTS_FILE))
    del state["model.feature_adaptor.weight"]
    del state["model.visual_projector.2.bias"]
    save_file(state, str(folder / WEIGHTS_FILE))
    with pytest.raises(CaptureError, match="lacks 2 weights") as err:
        EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))
    assert "model.feature_adaptor.weight" in str(err.value)
    assert "model.visual_projector.2.bias" in str(err.value)


def test_unexpected_weights_are_listed(checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy_checkpoint(checkpoint, tmp_path)
    state = load_file(str(folder / WEIGHTS_FILE))
    state["model.query_embeddings"] = torch.zeros(4, 64)
    save_file(state, str(folder / WEIGHTS_FILE))
    with pytest.raises(CaptureError, match=r"1 unexpected weights: model\.query_embeddings"):
        EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))


def test_wrong_shape_is_a_capture_error(checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy_checkpoint(checkpoint, tmp_path)
    state = load_file(str(folder / WEIGHTS_FILE))
    state["model.feature_adaptor.bias"] = torch.zeros(3)
    save_file(state, str(folder / WEIGHTS_FILE))
    with pytest.raises(CaptureError, match=r"model\.feature_adaptor\.bias has shape \(3,\)"):
        EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))


def test_missing_folder_says_where_and_how(tmp_path: Path) -> None:
    absent = tmp_path / "no-such-checkpoint"
    with pytest.raises(CaptureError, match="--model-path") as err:
        EventGPTAdapter.build(ModelSpec("eventgpt", str(absent), CPU, torch.float32))
    assert str(absent) in str(err.value)
    with pytest.raises(CaptureError, match="--model-path"):
        EventGPTAdapter.build(ModelSpec("eventgpt", None, CPU, torch.float32))
    with pytest.raises(CaptureError, match=r"no config\.json.*--model-path"):
        EventGPTAdapter.build(ModelSpec("eventgpt", str(tmp_path), CPU, torch.float32))


def test_folder_without_weights_is_a_capture_error(checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy_checkpoint(checkpoint, tmp_path)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(CaptureError, match="no weights"):
        EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))


def test_unknown_model_name_is_refused() -> None:
    with pytest.raises(CaptureError, match="not 'eventgpt-13b'"):
        EventGPTAdapter.build(ModelSpec("eventgpt-13b", None, CPU, torch.float32))


# --- the official prompt's token ids, with a SentencePiece tokenizer built in-process ---------

SP_SENTENCES = [
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: What are the key elements in this scene? ASSISTANT:",
    "Describe in detail what happened in the scene. A red car moves left on the road.",
    "<ev_start> <ev_end> <event> event patch start end",
]


def sentencepiece_model() -> bytes:
    """A tiny LLaMA-style SentencePiece model (BPE, byte fallback, BOS 1 / EOS 2 / UNK 0,
    dummy prefix), trained in-process on a few sentences: nothing is downloaded."""
    import io

    sentencepiece = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SP_SENTENCES * 20),
        model_writer=model,
        vocab_size=400,
        model_type="bpe",
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        byte_fallback=True,
        character_coverage=1.0,
        add_dummy_prefix=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    return model.getvalue()


@pytest.fixture(scope="module")
def sp_model() -> bytes:
    return sentencepiece_model()


def write_sentencepiece_tokenizer(folder: Path, sp_model: bytes) -> None:
    """Only ``tokenizer.model`` and ``tokenizer_config.json``, as LLaMA-era checkpoints ship."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(sp_model)
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "legacy": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def test_official_prompt_ids_by_the_documented_algorithm(sp_model: bytes, tmp_path: Path) -> None:
    """tokenizer_event_token: each piece around <event> tokenized on its own (each with BOS and
    SentencePiece's dummy prefix), one BOS kept, -200 between. With <ev_start>/<ev_end> as plain
    text (mm_use_im_start_end off, the released checkpoint's case), the second piece starts
    with a fresh "▁<"."""
    import sentencepiece

    from capture.models.eventgpt import load_tokenizer

    sp = sentencepiece.SentencePieceProcessor(model_proto=sp_model)
    write_sentencepiece_tokenizer(tmp_path, sp_model)
    tok = load_tokenizer(tmp_path)
    prompt = build_prompt("What are the key elements in this scene?")
    before, after = prompt.split("<event>")
    assert before.endswith(" USER: <ev_start>") and after.startswith("<ev_end>\nWhat are")
    expected = [1, *sp.encode(before), EVENT_TOKEN_INDEX, *sp.encode(after)]
    ids = tokenize_event_prompt(tok, prompt, EVENT_TOKEN_INDEX)
    assert ids == expected
    assert ids.index(EVENT_TOKEN_INDEX) == 1 + len(sp.encode(before)) and ids.count(EVENT_TOKEN_INDEX) == 1
    assert ids.count(1) == 1  # one BOS, not one per piece
    assert sp.id_to_piece(ids[ids.index(EVENT_TOKEN_INDEX) + 1]).startswith("▁")  # "▁<" of "<ev_end>"


def test_start_end_as_added_special_tokens(sp_model: bytes, tmp_path: Path) -> None:
    """mm_use_im_start_end: <ev_start>/<ev_end> become single added tokens around -200, as
    EventGPT's inference.py adds them (after <ev_patch>: ids V, V+1, V+2)."""
    import types

    from capture.models.eventgpt import add_event_tokens, load_tokenizer

    write_sentencepiece_tokenizer(tmp_path, sp_model)
    tok = load_tokenizer(tmp_path)
    vocab = len(tok)
    config = types.SimpleNamespace(mm_use_im_start_end=True)  # mm_use_im_patch_token absent: true
    assert add_event_tokens(tok, config) == ["<ev_patch>", "<ev_start>", "<ev_end>"]
    assert len(tok) == vocab + 3
    patch, start, end = tok.convert_tokens_to_ids(["<ev_patch>", "<ev_start>", "<ev_end>"])
    assert (patch, start, end) == (vocab, vocab + 1, vocab + 2)
    ids = tokenize_event_prompt(tok, build_prompt("What moves?"), EVENT_TOKEN_INDEX)
    k = ids.index(EVENT_TOKEN_INDEX)
    assert ids[k - 1] == start and ids[k + 1] == end and patch not in ids
    assert add_event_tokens(tok, config) == []  # already there: nothing added twice
    plain = load_tokenizer(tmp_path)
    assert add_event_tokens(plain, types.SimpleNamespace(mm_use_im_patch_token=False)) == []
    assert len(plain) == vocab


def test_prefill_tokens_full_size_5_frames_641_and_1_frame_637() -> None:
    """With CLIP ViT-L/14-336 (577 tokens a frame) and the official prompt's 60 ids (-200 among
    them): 59 text + 5 temporal + 577 spatial = 641 positions; one frame: 59 + 1 + 577 = 637."""
    import types

    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=1, num_attention_heads=32
    )
    model = build_eventgpt(config, None, torch.device("meta"), torch.bfloat16, init_weights=False)
    fake = types.SimpleNamespace(model=model)
    ids = torch.zeros(1, 60, dtype=torch.long, device="meta")
    for n_frames, want in ((5, 641), (1, 637)):
        pixels = torch.empty(n_frames, 3, 336, 336, device="meta")
        inputs = {"input_ids": ids, "event_pixel_values": pixels}
        assert EventGPTAdapter.prefill_tokens(fake, inputs) == want  # type: ignore[arg-type]
        features = model.encode_events(pixels)
        assert features.shape[1] == n_frames + 577
        assert EventGPTAdapter.prefill_tokens(fake, {"input_ids": ids, "event_features": features}) == want  # type: ignore[arg-type]


def test_tiny_prefill_tokens_5_frames_is_4_more_than_1(adapter: EventGPTAdapter, raw: RawSample) -> None:
    five = adapter.prepare(raw)
    one = adapter.prepare(RawSample(raw.sample_id, raw.prompt, events=raw.events, n_frames=1))
    assert five["event_pixel_values"].shape[0] == 5 and one["event_pixel_values"].shape[0] == 1
    assert adapter.prefill_tokens(five) - adapter.prefill_tokens(one) == 4
    decoupled = adapter.encode_vision(five)
    assert adapter.prefill_tokens(decoupled) == adapter.prefill_tokens(five)


def test_pre_rendered_frames_of_their_own_sizes(adapter: EventGPTAdapter) -> None:
    # event PNGs come in the size of their events' extent, even 3 rows: read channels-last
    frames = [np.full((3, 40, 3), 255, dtype=np.uint8), np.full((50, 20, 3), 255, dtype=np.uint8)]
    frames[0][1, 5] = (255, 0, 0)
    inputs = adapter.prepare(RawSample("png", "What?", frames=frames, n_frames=2))
    assert inputs["event_pixel_values"].shape == (2, 3, 28, 28)
    assert adapter.prefill_tokens(inputs) == inputs["input_ids"].shape[1] - 1 + 2 + 5


# --- EventGPT checkpoints in the forms they are released in -------------------------------------


def _config(folder: Path) -> dict:
    import json

    return json.loads((folder / "config.json").read_text())


def _write_config(folder: Path, config: dict) -> None:
    import json

    (folder / "config.json").write_text(json.dumps(config))


def _save_clip_tower(model: torch.nn.Module, folder: Path) -> Path:
    """The tiny model's CLIP tower as a CLIPVisionModel folder (what mm_visual_tower names)."""
    from transformers import CLIPVisionModel

    clip = CLIPVisionModel(model.vision_config)
    ours = model.model.visual_tower.visual_tower.vision_model
    getattr(clip, "vision_model", clip).load_state_dict(ours.state_dict())
    clip.save_pretrained(folder)
    return folder


def _without_tower(checkpoint: Path, folder: Path) -> Path:
    folder = _copy_checkpoint(checkpoint, folder)
    state = load_file(str(folder / WEIGHTS_FILE))
    state = {k: v for k, v in state.items() if not k.startswith("model.visual_tower.")}
    save_file(state, str(folder / WEIGHTS_FILE))
    return folder


def test_tower_from_mm_visual_tower_when_the_weights_lack_it(
    adapter: EventGPTAdapter, checkpoint: Path, tmp_path: Path, raw: RawSample, fused_tokens: list[int]
) -> None:
    ckpt_dir = tmp_path / "checkpoints"
    _save_clip_tower(adapter.model, ckpt_dir / "clip-vit-tiny")
    (ckpt_dir / "EventGPT-7b").mkdir()
    folder = _without_tower(checkpoint, ckpt_dir / "EventGPT-7b")
    config = _config(folder)
    config.pop("vision_config")  # the official config does not spell it out either
    # As released: a name beside the checkpoint folder (./checkpoints/<name>), then an absolute path.
    for name in ("clip-vit-tiny", str(ckpt_dir / "clip-vit-tiny")):
        _write_config(folder, {**config, "mm_visual_tower": name})
        loaded = EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))
        tokens = loaded.generate(loaded.prepare(raw), GenerationSettings(N_NEW, N_NEW)).token_ids
        assert tokens == fused_tokens
        assert torch.equal(
            loaded.model.model.visual_tower.visual_tower.vision_model.encoder.layers[0].mlp.fc1.weight,
            adapter.model.model.visual_tower.visual_tower.vision_model.encoder.layers[0].mlp.fc1.weight,
        )
    _write_config(folder, {**config, "mm_visual_tower": "no-such-clip"})
    missing = r"mm_visual_tower 'no-such-clip' was not found \(looked in"
    with pytest.raises(CaptureError, match=missing) as err:
        EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))
    assert "\n" not in str(err.value)
    _write_config(folder, config)
    with pytest.raises(CaptureError, match=r"no CLIP tower weights .* names no mm_visual_tower"):
        EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))


def test_mm_use_im_start_end_and_patch_token_add_tokens_and_resize(
    adapter: EventGPTAdapter, checkpoint: Path, tmp_path: Path, raw: RawSample
) -> None:
    folder = _copy_checkpoint(checkpoint, tmp_path)
    config = _config(folder)
    vocab = config["vocab_size"]
    del config["mm_use_im_patch_token"]  # absent: EventGPT's loader adds <ev_patch>
    _write_config(folder, {**config, "mm_use_im_start_end": True})
    loaded = EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32, seed=3))
    assert len(loaded.tokenizer) == vocab + 3
    assert loaded.model.get_input_embeddings().weight.shape[0] == vocab + 3
    assert loaded.model.lm_head.weight.shape[0] == vocab + 3 and loaded.model.config.vocab_size == vocab + 3
    # The old rows are the checkpoint's; the new ones drawn from a seeded normal(0, 0.02).
    assert torch.equal(loaded.model.lm_head.weight[:vocab], adapter.model.lm_head.weight)
    new_rows = loaded.model.get_input_embeddings().weight[vocab:]
    assert 0 < float(new_rows.std()) < 0.05
    again = EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32, seed=3))
    assert torch.equal(again.model.get_input_embeddings().weight, loaded.model.get_input_embeddings().weight)
    ids = loaded.prepare(raw)["input_ids"][0].tolist()
    start, end = loaded.tokenizer.convert_tokens_to_ids(["<ev_start>", "<ev_end>"])
    k = ids.index(loaded.model.event_token_index)
    assert ids[k - 1] == start and ids[k + 1] == end
    assert len(loaded.generate(loaded.prepare(raw), GenerationSettings(4, 4)).token_ids) == 4


def test_sentencepiece_only_tokenizer_checkpoint_loads(
    sp_model: bytes, tmp_path: Path, raw: RawSample
) -> None:
    """A checkpoint whose tokenizer is only tokenizer.model (LLaMA's form), the official -200
    placeholder, and no mm_* keys: <ev_patch> is added and the vocabulary resized, as EventGPT does."""
    config = LlamaConfig(vocab_size=400, bos_token_id=1, eos_token_id=2, **TINY_TEXT)
    torch.manual_seed(0)
    model = build_eventgpt(config, CLIPVisionConfig(**TINY_VISION), CPU, torch.float32)
    folder = save_checkpoint(model, tmp_path / "sp-ckpt")
    cfg = _config(folder)
    del cfg["mm_use_im_patch_token"]
    del cfg["event_token_index"]  # official checkpoints: -200
    _write_config(folder, cfg)
    write_sentencepiece_tokenizer(folder, sp_model)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"
    ]  # fmt: skip
    loaded = EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))
    assert loaded.model.event_token_index == EVENT_TOKEN_INDEX == -200
    assert len(loaded.tokenizer) == 401 and loaded.model.lm_head.weight.shape[0] == 401
    inputs = loaded.prepare(raw)
    assert int((inputs["input_ids"] == -200).sum()) == 1 and inputs["input_ids"][0, 0] == 1
    tokens = loaded.generate(inputs, GenerationSettings(N_NEW, N_NEW)).token_ids
    assert len(tokens) == N_NEW and isinstance(loaded.decode(tokens), str)


def test_q_former_checkpoint_is_refused_naming_the_flag(checkpoint: Path, tmp_path: Path) -> None:
    folder = _copy_checkpoint(checkpoint, tmp_path)
    _write_config(folder, {**_config(folder), "use_event_qformer": False})  # the key alone counts
    refused = r"config\.json has use_event_qformer: Q-Former checkpoints"
    with pytest.raises(CaptureError, match=refused) as err:
        EventGPTAdapter.build(ModelSpec("eventgpt", str(folder), CPU, torch.float32))
    assert "\n" not in str(err.value)
