"""Pieces shared by the ``tiny-*`` models: a small tokenizer built in-process, seeded init.

Nothing is downloaded: the tokenizer is a word-level ``tokenizers`` model over a fixed
vocabulary, wrapped as a transformers fast tokenizer so adapters use it like a real one.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
MEDIA_TOKENS = ("<image>", "<video>", "<event>")

_TEXT = (
    "user assistant system describe what happens in the scene a an is are there of to and on with "
    "car cars road street moving move moves left right up down fast slow red blue green white black "
    "circle square shape shapes object objects camera event events frame frames video image picture "
    "person people light dark bright night day sky tree trees building house sign traffic turn stop go "
    "yes no one two three four five many some this that it they he she we you i at by from for as "
    "be been was were has have had do does did can could will would should may might must not very "
    "more most less least big small large tiny long short high low near far front back behind above "
    "below between across through into out over under again then now here where when why how which who "
    "key elements"
)
_WORDS = tuple(_TEXT.split())


def tiny_vocabulary() -> list[str]:
    """The fixed vocabulary: special tokens first (ids 0..3), media placeholders, words, punctuation."""
    punct = list(string.punctuation)
    vocab = list(SPECIAL_TOKENS) + list(MEDIA_TOKENS)
    for w in [*_WORDS, *[w.upper() for w in ("user", "assistant")], *punct]:
        if w not in vocab:
            vocab.append(w)
    return vocab


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A deterministic word-level tokenizer with ``<image>``, ``<video>`` and ``<event>`` as
    single special tokens, BOS ``<s>``, EOS ``</s>`` and pad ``<pad>``."""
    vocab = {tok: i for i, tok in enumerate(tiny_vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tok.add_special_tokens({"additional_special_tokens": list(MEDIA_TOKENS)})
    return tok


def seeded(seed: int) -> torch.Generator:
    """Seed torch's global RNG (model init draws from it) and return a generator too."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
