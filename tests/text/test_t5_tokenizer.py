"""jaxdiff/text/t5_tokenizer.py: the SentencePiece T5 tokenizer gives transformers' T5Tokenizer
ids, and through jaxdiff.text.tokenizers its truncated, EOS-terminated, padded tokens."""

import numpy as np
import pytest

from jaxdiff.text.t5_tokenizer import T5Tokenizer
from jaxdiff.text.tokenizers import tokenize, tokenize_batch

TEXTS = [
    "", "   ", "A red fox in the snow.", "...!!!??? (a; b) - c, d.", "1234567890 3.14 -8 1e9",
    "Café naïve résumé déjà vu", "東京 😀 ﬁ ＡＢＣ", "  leading,   repeated \t tab\nnewline  ",
    "\u00a0non-breaking\u3000ideographic space", "zzzz qqqq xyz",
    "a</s>b <pad> <unk>x <extra_id_0> y<extra_id_99><extra_id_100>",
]
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 4)


@pytest.fixture(scope="module")
def tokenizer(spiece_dir):
    return T5Tokenizer(str(spiece_dir / "spiece.model"), max_length=16)


def test_ids_match_transformers(tokenizer, hf_tokenizer):
    assert (tokenizer.pad_id, tokenizer.eos_id) == (hf_tokenizer.pad_token_id,
                                                    hf_tokenizer.eos_token_id) == (0, 1)
    assert tokenizer.vocab_size == len(hf_tokenizer)
    for text in TEXTS + [LONG]:
        assert tokenizer.ids(text) == hf_tokenizer(text, add_special_tokens=False)["input_ids"], (
            text)


def test_tokenize_truncates_like_transformers(tokenizer, hf_tokenizer):
    assert len(tokenizer.ids(LONG)) > tokenizer.max_length
    assert tokenize(tokenizer, LONG).truncated and not tokenize(tokenizer, "a fox").truncated
    batch = tokenize_batch(tokenizer, TEXTS + [LONG])
    reference = hf_tokenizer(TEXTS + [LONG], padding="max_length", truncation=True,
                             max_length=tokenizer.max_length, return_tensors="np")
    np.testing.assert_array_equal(batch["tokens"], reference["input_ids"])
    np.testing.assert_array_equal(batch["mask"], reference["attention_mask"].astype(bool))


def test_max_length_must_be_positive(spiece_dir):
    with pytest.raises(ValueError, match="^The T5 tokenizer's max_length must be at least 1, "
                                         "got 0.$"):
        T5Tokenizer(str(spiece_dir / "spiece.model"), max_length=0)
