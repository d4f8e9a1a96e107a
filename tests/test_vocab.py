"""The in-process tokenizer with a real vocabulary: sizes, special ids, prompt lengths, decoding."""

from __future__ import annotations

from capture.models.vocab import BYTE_TOKENS, build_vocab_tokenizer, vocabulary


def test_llama_layout_and_padding_to_the_base_size() -> None:
    vocab = vocabulary(32000)
    assert len(vocab) == len(set(vocab)) == 32000
    assert vocab[:3] == ["<unk>", "<s>", "</s>"]
    assert vocab[3:259] == list(BYTE_TOKENS) and vocab[3] == "<0x00>" and vocab[258] == "<0xFF>"
    assert vocab[-1] == "<unused_" + str(32000 - vocab.index("<unused_0>") - 1) + ">"


def test_llava_tokenizer_sizes_and_special_ids() -> None:
    tok = build_vocab_tokenizer(32000, ("<image>", "<pad>"), pad_token="<pad>")
    assert len(tok) == 32002  # as llava-hf/llava-1.5-7b-hf's tokenizer
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<image>") == 32000 and tok.pad_token_id == 32001


def test_video_llava_and_eventgpt_tokenizers() -> None:
    video = build_vocab_tokenizer(32000, ("<image>", "<video>", "<pad>"), pad_token="<pad>")
    assert len(video) == 32003
    assert video.convert_tokens_to_ids(["<image>", "<video>", "<pad>"]) == [32000, 32001, 32002]
    event = build_vocab_tokenizer(32000, (), pad_token="<unk>")
    assert len(event) == 32000 and event.pad_token_id == 0


def test_prompts_get_a_bos_and_one_token_per_word_and_mark() -> None:
    tok = build_vocab_tokenizer(32000, ("<image>", "<pad>"), pad_token="<pad>")
    ids = tok("USER: <image><image>\nDescribe what happens in the scene. ASSISTANT:").input_ids
    # <s> USER : <image> <image> Describe what happens in the scene . ASSISTANT :
    assert len(ids) == 14 and ids[0] == 1 and ids[3:5] == [32000, 32000]
    assert 0 not in ids  # every word of stagetrace's prompts is in the vocabulary


def test_every_id_the_model_can_emit_decodes() -> None:
    tok = build_vocab_tokenizer(32000, ("<image>", "<pad>"), pad_token="<pad>")
    text = tok.decode([300, 31999, 32001, 32063], skip_special_tokens=True)  # 32063: lm_head's last row
    assert isinstance(text, str) and "<unused_" in text
