"""builtin:captioned_digits: tints, balance, captions, and its text batches on both paths."""

import numpy as np
import pytest

from jaxdiff.data import create_iterator, default_data_config, validate_data_config
from jaxdiff.data.builtin import (CAPTION_TEMPLATES, DIGIT_WORDS, PALETTE, digit_captions,
                                  open_builtin)
from jaxdiff.text.tokenizers import WordHashTokenizer, tokenize

TOKENIZER = WordHashTokenizer(vocab_size=4096, max_length=12)


def colour_of(image):
    """The PALETTE name whose tint has exactly the image's lit channels."""
    lit = tuple(bool(v) for v in image.reshape(-1, 3).max(0))
    (name,) = [name for name, tint in PALETTE.items() if tuple(c > 0 for c in tint) == lit]
    return name


def test_records_are_tinted_digits_with_balanced_independent_colours():
    records, spec = open_builtin("captioned_digits")
    grey, _ = open_builtin("digits")
    assert spec.num_examples == 1797 and spec.has_captions and spec.num_classes == 10
    colours = []
    for index in range(len(records)):
        record, plain = records[index], grey[index]
        assert record["label"] == plain["label"]
        name = colour_of(record["image"])
        # tint * grey / 255 with tints of 0 or 255 per channel: lit channels are the grey image.
        for channel, tint in enumerate(PALETTE[name]):
            expected = plain["image"][..., 0] if tint else 0
            np.testing.assert_array_equal(record["image"][..., channel], expected)
        assert record["caption"] == digit_captions(record["label"], name)
        colours.append(list(PALETTE).index(name))
    table = np.zeros((10, len(PALETTE)), int)
    np.add.at(table, (np.array([records[i]["label"] for i in range(1797)]), colours), 1)
    assert (table.max(1) - table.min(1) <= 1).all()  # every digit in every colour, balanced
    totals = table.sum(0)
    assert totals.max() - totals.min() <= 1
    assert colours[:12] != [i % 6 for i in range(12)]  # drawn, not the index order


def test_captions_name_the_digit_and_the_colour_in_different_words():
    captions = digit_captions(7, "red")
    assert captions[:3] == ("a red seven", "the digit 7 in red", "red 7")
    assert len(set(captions)) == len(CAPTION_TEMPLATES) >= 5
    for digit in range(10):
        for caption in digit_captions(digit, "cyan"):
            assert "cyan" in caption
            assert str(digit) in caption.split() or DIGIT_WORDS[digit] in caption.replace(",", "")


def test_defaults_are_those_of_digits():
    config = default_data_config()
    config.name = "builtin:captioned_digits"
    _, spec, options = validate_data_config(config, global_batch_size=4)
    assert options.cache and options.crop == "center" and options.allow_upscale
    assert not options.flip and spec.min_side == 8


def captioned_config(**overrides):
    config = default_data_config()
    config.update(name="builtin:captioned_digits", resolution=8, prefetch=0)
    config.update(overrides)
    return config


def test_both_paths_give_the_same_captions_which_describe_their_images():
    """Two unshuffled epochs, cached and per image: the same tokens, each the tokens of one of
    the image's captions, whose colour is the image's; the draw changes between epochs."""
    records, _ = open_builtin("captioned_digits")
    epochs = {}
    for cache in (True, False):
        iterator = create_iterator(captioned_config(shuffle=False, cache=cache),
                                   global_batch_size=1797, seed=4, text=TOKENIZER)
        epochs[cache] = [next(iterator), next(iterator)]
        iterator.close()
    drawn = []
    for cached, streamed in zip(epochs[True], epochs[False]):
        for key in ("image", "label", "tokens", "mask"):
            np.testing.assert_array_equal(cached[key], streamed[key])
        assert cached["tokens"].dtype == np.int32 and cached["mask"].dtype == bool
        which = []
        for index in range(0, 1797, 7):
            captions = records[index]["caption"]
            tokens = [tokenize(TOKENIZER, caption).tokens for caption in captions]
            (k,) = [k for k, t in enumerate(tokens) if np.array_equal(t, cached["tokens"][index])]
            assert colour_of(cached["image"][index]) in captions[k]
            which.append(k)
        drawn.append(which)
    assert np.mean(np.array(drawn[0]) == np.array(drawn[1])) < 0.4
    assert len(set(drawn[0])) == len(CAPTION_TEMPLATES)


@pytest.mark.parametrize("cache", [True, False])
def test_restored_iterator_continues_with_the_same_tokens(cache):
    config = captioned_config(cache=cache)
    interrupted = create_iterator(config, global_batch_size=8, seed=2, text=TOKENIZER)
    for _ in range(3):
        next(interrupted)
    state = interrupted.get_state()
    following = [next(interrupted) for _ in range(2)]
    interrupted.close()
    resumed = create_iterator(config, global_batch_size=8, seed=2, text=TOKENIZER)
    resumed.set_state(state)
    for batch in following:
        again = next(resumed)
        assert again.keys() == batch.keys() == {"image", "label", "tokens", "mask"}
        for key in batch:
            np.testing.assert_array_equal(again[key], batch[key])
    resumed.close()
