"""Captions of records: which are usable, which one an epoch draws, and the text checks."""

import numpy as np
import pytest

from jaxdiff.data import check_text_data
from jaxdiff.data.captions import TextFields, UnusableCaption, caption_choice, usable_captions
from jaxdiff.data.specs import DatasetSpec
from jaxdiff.text.tokenizers import WordHashTokenizer, tokenize


def test_usable_captions_are_decoded_stripped_and_bad_ones_dropped():
    assert usable_captions({"caption": " a red 7\n"}) == ("a red 7",)
    assert usable_captions({"caption": "é".encode()}) == ("é",)
    assert usable_captions({"caption": ("red 7", b"\xff\xfe", "  ", b"seven")}) == ("red 7",
                                                                                     "seven")
    for record, reason in [({}, "no caption"), ({"caption": None}, "no caption"),
                           ({"caption": ()}, "no caption"), ({"caption": " \t\n"}, "empty"),
                           ({"caption": b"\xff"}, "not valid UTF-8"),
                           ({"caption": ("", b"\xc3")}, "not valid UTF-8")]:
        with pytest.raises(UnusableCaption, match=reason):
            usable_captions(record)


def test_caption_choice_is_deterministic_uniform_and_new_each_epoch():
    indices = np.arange(6000)
    choices = caption_choice(7, 0, indices, 6)
    assert choices.dtype == np.int64 and set(choices.tolist()) == set(range(6))
    # Each of 6 values 1000 times in expectation; sd sqrt(6000 * 1/6 * 5/6) ~ 29.
    assert np.abs(np.bincount(choices) - 1000).max() < 5 * 29
    assert [int(caption_choice(7, 0, i, 6)) for i in range(20)] == choices[:20].tolist()
    np.testing.assert_array_equal(caption_choice(7, 0, indices, 6), choices)
    assert np.mean(caption_choice(7, 1, indices, 6) == choices) < 0.25
    assert np.mean(caption_choice(8, 0, indices, 6) == choices) < 0.25
    counts = indices % 3 + 1  # per-element counts, as the cached path draws a batch
    assert (caption_choice(7, 0, indices, counts) < counts).all()


def test_text_fields_draw_one_caption_or_embedding():
    tokenizer = WordHashTokenizer(100, 4)
    record = {"caption": ("one", "two two", "three three three three")}
    fields = TextFields(tokenizer, seed=3)
    drawn = [fields.draw(record, epoch, 5) for epoch in range(12)]
    expected = [tokenize(tokenizer, record["caption"][int(caption_choice(3, e, 5, 3))])
                for e in range(12)]
    for (got, truncated), want in zip(drawn, expected):
        np.testing.assert_array_equal(got["tokens"], want.tokens)
        assert truncated == int(want.truncated)
    every, truncated = fields.every(record)
    assert every["tokens"].shape == every["mask"].shape == (3, 4) and truncated == 1
    embeddings = np.arange(2 * 3 * 4, dtype=np.float16).reshape(2, 3, 4)
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    embedded = TextFields("embeddings", seed=3)
    got, truncated = embedded.draw({"embeddings": embeddings, "mask": mask}, 0, 1)
    k = int(caption_choice(3, 0, 1, 2))
    assert got["embeddings"].dtype == np.float32 and truncated == 0
    np.testing.assert_array_equal(got["embeddings"], embeddings[k])
    np.testing.assert_array_equal(got["mask"], mask[k])
    single, _ = embedded.every({"embeddings": embeddings[0], "mask": mask[0]})
    assert single["embeddings"].shape == (1, 3, 4)
    with pytest.raises(UnusableCaption, match="no precomputed embeddings"):
        embedded.draw({"caption": "x"}, 0, 0)
    with pytest.raises(UnusableCaption, match="are not"):
        embedded.draw({"embeddings": embeddings, "mask": mask[0]}, 0, 0)


def test_check_text_data_says_what_is_missing():
    plain = DatasetSpec("builtin:digits", 10, (), 8)
    captioned = DatasetSpec("builtin:captioned_digits", 10, (), 8, has_captions=True)
    embedded = DatasetSpec("shards:/x", 10, (), None, has_captions=True, has_embeddings=True)
    tokenizer = WordHashTokenizer(100, 4)
    for spec in (plain, captioned, embedded):
        check_text_data(spec, None)
    check_text_data(captioned, tokenizer)
    check_text_data(embedded, "embeddings")
    with pytest.raises(ValueError, match="needs captions, but builtin:digits has none"):
        check_text_data(plain, tokenizer)
    with pytest.raises(ValueError, match="records of builtin:captioned_digits carry none"):
        check_text_data(captioned, "embeddings")
    with pytest.raises(ValueError, match="must be None, a tokenizer or 'embeddings', got 'T5'"):
        check_text_data(captioned, "T5")
    with pytest.raises(ValueError, match="got int"):
        check_text_data(captioned, 3)
