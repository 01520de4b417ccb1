"""Tokenizers: text -> fixed-length token ids and a mask, as text encoders and batches take them.

Every tokenizer has `max_length` L, `pad_id`, `eos_id` and `ids(text) -> list[int]` (the ids of
the text without the end-of-sequence token, not truncated). `tokenize(tokenizer, text)` makes
the fixed-length form every batch carries (the T5 convention: the text's ids truncated to
L - 1, then EOS, then padding):

    tokens = ids[:L-1] + [eos] + [pad] * (L - 1 - len(ids[:L-1]))
    mask   = [True] * (len(ids[:L-1]) + 1) + [False] * rest

so even the empty caption (the "no text" of classifier-free guidance) has one unmasked token.

WordHashTokenizer is the tokenizer of the small jointly trained encoder: it needs no vocabulary
file and takes any text. Words are the runs of letters and digits of the lower-cased text;
word w gets the id 2 + crc32(w) mod (V - 2) (the hashing trick, Weinberger et al. 2009), with
0 = padding and 1 = EOS, so a run and its checkpoints need nothing but V. The SentencePiece
tokenizer of T5 checkpoints is in t5_tokenizer.py.
"""

import re
import zlib
from typing import NamedTuple, Protocol

import numpy as np


class Tokenizer(Protocol):
    max_length: int
    pad_id: int
    eos_id: int

    def ids(self, text: str) -> list:
        """The token ids of `text`, without EOS and not truncated."""


class TokenizedText(NamedTuple):
    tokens: np.ndarray   # int32 (L,)
    mask: np.ndarray     # bool (L,): True on the text's tokens and EOS
    truncated: bool      # the text had more than L - 1 tokens


def tokenize(tokenizer: Tokenizer, text: str) -> TokenizedText:
    """The fixed-length tokens and mask of `text` (module docstring)."""
    length = tokenizer.max_length
    ids = list(tokenizer.ids(text))
    kept = ids[:length - 1] + [tokenizer.eos_id]
    tokens = np.full((length,), tokenizer.pad_id, np.int32)
    tokens[:len(kept)] = kept
    mask = np.arange(length) < len(kept)
    return TokenizedText(tokens, mask, len(ids) > length - 1)


def tokenize_batch(tokenizer: Tokenizer, texts) -> dict:
    """{"tokens": int32 (N, L), "mask": bool (N, L)} of a list of texts."""
    tokenized = [tokenize(tokenizer, text) for text in texts]
    return {"tokens": np.stack([t.tokens for t in tokenized]),
            "mask": np.stack([t.mask for t in tokenized])}


WORD = re.compile(r"[a-z0-9]+")


class WordHashTokenizer:
    """Hashed lower-cased words (module docstring). Example with V = 1000: "A red 7" ->
    words ["a", "red", "7"] -> ids [2 + crc32(b"a") % 998, ...]."""

    pad_id = 0
    eos_id = 1

    def __init__(self, vocab_size: int, max_length: int):
        if vocab_size < 3:
            raise ValueError(f"text.vocab_size must be at least 3 (padding, EOS and one word), "
                             f"got {vocab_size}.")
        if max_length < 1:
            raise ValueError(f"text.max_length must be at least 1, got {max_length}.")
        self.vocab_size = vocab_size
        self.max_length = max_length

    def ids(self, text: str) -> list:
        return [2 + zlib.crc32(word.encode()) % (self.vocab_size - 2)
                for word in WORD.findall(text.lower())]
