"""jaxdiff/text/tokenizers.py: the fixed-length form and the hashed-word tokenizer."""

import zlib

import numpy as np
import pytest

from jaxdiff.text.tokenizers import WordHashTokenizer, tokenize, tokenize_batch


def test_words_hash_to_fixed_ids():
    tokenizer = WordHashTokenizer(vocab_size=1000, max_length=6)
    expected = [2 + zlib.crc32(word) % 998 for word in (b"a", b"red", b"7")]
    assert tokenizer.ids("A  red, 7!") == expected
    assert tokenizer.ids("") == []


def test_tokenize_pads_truncates_and_keeps_eos():
    tokenizer = WordHashTokenizer(vocab_size=50, max_length=4)
    ids = tokenizer.ids("one two three four five")
    short = tokenize(tokenizer, "one two")
    np.testing.assert_array_equal(short.tokens, ids[:2] + [1, 0])
    np.testing.assert_array_equal(short.mask, [True, True, True, False])
    assert not short.truncated
    long = tokenize(tokenizer, "one two three four five")
    np.testing.assert_array_equal(long.tokens, ids[:3] + [1])
    assert long.truncated and long.mask.all()
    empty = tokenize(tokenizer, "")
    np.testing.assert_array_equal(empty.tokens, [1, 0, 0, 0])
    batch = tokenize_batch(tokenizer, ["one", ""])
    assert batch["tokens"].shape == (2, 4) and batch["mask"].dtype == bool


def test_bad_sizes_are_one_sentence():
    with pytest.raises(ValueError, match="vocab_size must be at least 3"):
        WordHashTokenizer(2, 4)
    with pytest.raises(ValueError, match="max_length must be at least 1"):
        WordHashTokenizer(10, 0)
