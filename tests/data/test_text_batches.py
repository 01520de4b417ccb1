"""Text in batches: tokens or embeddings, bad and long captions, both paths, resumption."""

import dataclasses
import logging

import numpy as np
import pytest

from jaxdiff.data import create_iterator, default_data_config
from jaxdiff.data.builtin import InMemoryRecords
from jaxdiff.data.config import PreprocessOptions
from jaxdiff.data.pipeline import make_dataset
from jaxdiff.text.tokenizers import WordHashTokenizer, tokenize

TOKENIZER = WordHashTokenizer(vocab_size=1000, max_length=4)  # at most 3 words + EOS
STREAMED = PreprocessOptions(resolution=2, crop="center", crop_scale=(1.0, 1.0), flip=False,
                             allow_upscale=False, read_threads=0, cache=False)
CACHED = dataclasses.replace(STREAMED, cache=True)

# Ten 2x2 images whose pixels equal their index; captions "word<index>" (one word), except:
CAPTIONS = [f"word{index}" for index in range(10)]
CAPTIONS[2] = None                          # no caption: skipped
CAPTIONS[3] = "   "                         # empty: skipped
CAPTIONS[4] = b"\xff\xfe"                   # not UTF-8: skipped
CAPTIONS[5] = "one two three four five"     # 5 words > 3: truncated, kept
CAPTIONS[6] = ("six", b"\xff", "", "sechs")  # two usable of four: drawn among those
USABLE = [0, 1, 5, 6, 7, 8, 9]


def records(captions=CAPTIONS):
    images = [np.full((2, 2, 3), index, np.uint8) for index in range(len(captions))]
    return InMemoryRecords("captioned", images, np.arange(len(captions)), captions)


def take(options, count, batch_size=7, source=None, **kwargs):
    settings = dict(name="captioned", batch_size=batch_size, seed=1, prefetch=0,
                    text=TOKENIZER)
    settings.update(kwargs)
    iterator = iter(make_dataset(source or records(), options, **settings))
    taken = [next(iterator) for _ in range(count)]
    iterator.close()
    return taken


@pytest.mark.parametrize("options", [STREAMED, CACHED], ids=["streamed", "cached"])
def test_bad_captions_are_skipped_and_long_ones_truncated_and_reported(options, caplog):
    with caplog.at_level(logging.WARNING):
        batches = take(options, 3)  # 3 epochs of the 7 usable records
    for batch in batches:
        ids = batch["image"][:, 0, 0, 0].tolist()
        assert sorted(ids) == USABLE
        for row, index in enumerate(ids):
            captions = {6: ("six", "sechs")}.get(index, (CAPTIONS[index],))
            assert any(np.array_equal(batch["tokens"][row], tokenize(TOKENIZER, c).tokens)
                       for c in captions)
        long = batch["tokens"][ids.index(5)]
        assert long[-1] == TOKENIZER.eos_id and batch["mask"][ids.index(5)].all()
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipping")]
    assert len(skipped) == 3  # each bad record named once
    assert any("captioned[4] of captioned: its caption is not valid UTF-8" in m for m in skipped)
    summary = ("Epoch 0 of captioned: skipped 3 unusable image(s) of the 10 in this shard (3 for "
               "want of a usable caption); kept 1 caption(s) truncated to the tokenizer's "
               "max_length.")
    assert summary in caplog.text


def test_several_captions_are_drawn_anew_each_epoch_on_both_paths():
    """Record 6's two usable captions both appear over epochs; both paths draw alike."""
    unshuffled = {options.cache: take(options, 12, shuffle=False)
                  for options in (STREAMED, CACHED)}
    for streamed, cached in zip(unshuffled[False], unshuffled[True]):
        np.testing.assert_array_equal(streamed["tokens"], cached["tokens"])
    drawn = {tuple(batch["tokens"][USABLE.index(6)]) for batch in unshuffled[True]}
    assert drawn == {tuple(tokenize(TOKENIZER, c).tokens) for c in ("six", "sechs")}


@pytest.mark.parametrize("options", [STREAMED, CACHED], ids=["streamed", "cached"])
def test_state_restores_the_following_batches_with_their_tokens(options):
    dataset = make_dataset(records(), options, name="captioned", batch_size=3, seed=5,
                           prefetch=2, text=TOKENIZER)
    interrupted = iter(dataset)
    for _ in range(4):
        next(interrupted)
    state = interrupted.get_state()
    following = [next(interrupted) for _ in range(3)]
    interrupted.close()
    resumed = iter(make_dataset(records(), options, name="captioned", batch_size=3, seed=5,
                                prefetch=2, text=TOKENIZER))
    resumed.set_state(state)
    for batch in following:
        again = next(resumed)
        for key in ("image", "label", "tokens", "mask"):
            np.testing.assert_array_equal(again[key], batch[key])
    resumed.close()


@pytest.mark.parametrize("options", [STREAMED, CACHED], ids=["streamed", "cached"])
def test_precomputed_embeddings_become_float32_batches(options):
    rng = np.random.default_rng(0)
    embeddings = [rng.normal(size=(5, 3)).astype(np.float16) for _ in range(6)]
    masks = [np.arange(5) < 1 + index % 5 for index in range(6)]

    class Embedded(InMemoryRecords):
        def __getitem__(self, index):
            record = super().__getitem__(index)
            if index % 6 != 4:  # record 4 has none: skipped
                record.update(embeddings=embeddings[index % 6], mask=masks[index % 6])
            return record

    source = Embedded("embedded", [np.full((2, 2, 3), i, np.uint8) for i in range(6)],
                      np.zeros(6))
    (batch,) = take(options, 1, batch_size=5, source=source, text="embeddings", shuffle=False)
    assert batch.keys() == {"image", "label", "embeddings", "mask"}
    assert batch["embeddings"].dtype == np.float32 and batch["embeddings"].shape == (5, 5, 3)
    ids = batch["image"][:, 0, 0, 0].tolist()
    assert ids == [0, 1, 2, 3, 5]
    for row, index in enumerate(ids):
        np.testing.assert_array_equal(batch["embeddings"][row], embeddings[index])
        np.testing.assert_array_equal(batch["mask"][row], masks[index])


def test_without_text_batches_are_unchanged_and_text_needs_captions():
    (batch,) = take(STREAMED, 1, batch_size=10, text=None)
    assert batch.keys() == {"image", "label"} and batch["image"].shape[0] == 10
    config = default_data_config()
    with pytest.raises(ValueError, match="needs captions, but builtin:digits has none"):
        create_iterator(config, global_batch_size=4, seed=0, text=TOKENIZER)
    config.name = "builtin:captioned_digits"
    with pytest.raises(ValueError, match="carry none"):
        create_iterator(config, global_batch_size=4, seed=0, text="embeddings")


def test_a_mixing_stream_beside_text():
    config = default_data_config()
    config.update(name="builtin:captioned_digits", resolution=8, cache=False, prefetch=0)
    faces = default_data_config()
    faces.update(name="builtin:faces", resolution=8, prefetch=0)
    iterator = create_iterator(config, global_batch_size=4, seed=3, mix_config=faces,
                               text=TOKENIZER)
    mixed = next(iterator)
    iterator.close()
    iterator = create_iterator(config, global_batch_size=4, seed=3, text=TOKENIZER)
    alone = next(iterator)
    iterator.close()
    assert mixed.keys() == {"image", "label", "tokens", "mask", "mix_image"}
    for key in alone:
        np.testing.assert_array_equal(mixed[key], alone[key])
