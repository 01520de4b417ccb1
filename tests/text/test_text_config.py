"""jaxdiff/text/config.py: the text section's checks, each one sentence naming the field."""

import pytest

from jaxdiff.text.config import batch_text, check_text_config, text_defaults
from jaxdiff.text.tokenizers import WordHashTokenizer


def text(**values):
    config = text_defaults()
    config.update(values)
    return config


@pytest.mark.parametrize("values, message", [
    (dict(encoder="clip"), "text.encoder must be one of"),
    (dict(encoder="trained", vocab_size=2), "text.vocab_size must be an integer at least 3"),
    (dict(encoder="trained", max_length=0), "text.max_length must be an integer at least 1"),
    (dict(encoder="trained", width=10, num_heads=4), "text.num_heads \\(4\\) must divide"),
    (dict(encoder="embeddings"), "text.embed_dim must be an integer at least 1"),
    (dict(encoder="trained", t5_dtype="float16"), "text.t5_dtype must be one of"),
    (dict(encoder="trained", prompts=["a", 3]), "text.prompts must be a list of strings"),
])
def test_bad_text_values_are_one_sentence(values, message):
    with pytest.raises(ValueError, match=message):
        check_text_config(text(**values))


def test_what_batches_carry():
    check_text_config(text())  # no text: nothing else is read
    assert batch_text(text()) is None
    tokenizer = batch_text(text(encoder="trained", vocab_size=50, max_length=7))
    assert isinstance(tokenizer, WordHashTokenizer)
    assert (tokenizer.vocab_size, tokenizer.max_length) == (50, 7)
    assert batch_text(text(encoder="embeddings", embed_dim=8)) == "embeddings"
