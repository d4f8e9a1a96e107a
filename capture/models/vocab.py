"""A tokenizer with a real model's vocabulary size and special ids, built in-process.

``--weights random`` needs no tokenizer files, yet prompt lengths must stay realistic and every
id the model can emit must decode. The vocabulary follows LLaMA's layout: ``<unk>`` 0, ``<s>`` 1
(prepended to every prompt, as LLaMA's tokenizer does), ``</s>`` 2, the 256 byte tokens
``<0x00>``..``<0xFF>`` (ids 3-258), then common English words and punctuation, padded with
``<unused_N>`` to the base size (32000); the model's own special tokens (``<image>``,
``<video>``, ``<pad>``) follow at 32000, 32001, ... in the order given, as the published
tokenizers have them. Text is split into words and punctuation marks, one token each (unknown
words are ``<unk>``), so a prompt has about as many tokens as LLaMA's tokenizer gives it; the
vision placeholders, hundreds of tokens per image, dominate the length anyway.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from capture.models.tiny import _WORDS

LLAMA_SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2 as in LLaMA's tokenizer
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))  # ids 3..258

# Words of the prompts stagetrace sends (Vicuna system prompt, LLaVA/EventGPT templates) on top
# of the tiny models' words, so those prompts tokenize without <unk>.
_PROMPT_WORDS = (
    "USER", "ASSISTANT", "A", "The", "chat", "between", "curious", "human", "artificial", "intelligence",
    "assistant", "gives", "helpful", "detailed", "polite", "answers", "human's", "questions", "Describe",
    "scene",
)  # fmt: skip


def vocabulary(base_size: int) -> list[str]:
    """The base vocabulary, ``base_size`` entries: specials, bytes, words, punctuation, padding."""
    vocab = [*LLAMA_SPECIALS, *BYTE_TOKENS]
    seen = set(vocab)
    for tok in (*_PROMPT_WORDS, *_WORDS, *string.punctuation):
        if tok not in seen:
            vocab.append(tok)
            seen.add(tok)
    if len(vocab) > base_size:
        raise ValueError(f"base vocabulary of {base_size} is smaller than the {len(vocab)} built-in tokens")
    vocab.extend(f"<unused_{i}>" for i in range(base_size - len(vocab)))
    return vocab


def build_vocab_tokenizer(
    base_size: int = 32000, added: Sequence[str] = (), pad_token: str | None = None
) -> PreTrainedTokenizerFast:
    """A fast tokenizer of ``base_size`` tokens plus ``added`` special tokens (ids ``base_size``,
    ``base_size + 1``, ... in order). ``pad_token`` names the padding token (one of ``added``, or
    an existing one such as ``<unk>``); none by default, as LLaMA's tokenizer has none."""
    vocab = {tok: i for i, tok in enumerate(vocabulary(base_size))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if added:  # ids base_size, base_size + 1, ... in the given order
        tok.add_special_tokens({"additional_special_tokens": list(added)})
    if pad_token is not None:
        tok.pad_token = pad_token
    return tok
