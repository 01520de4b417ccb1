"""The cached path (data.cache): epochs, resumption, process shards, flips, skipped images, and
the same pixels as the per-image path."""

import dataclasses
import logging

import numpy as np
import pytest

from jaxdiff.data import create_iterator, default_data_config, validate_data_config
from jaxdiff.data.builtin import InMemoryRecords
from jaxdiff.data.config import PreprocessOptions
from jaxdiff.data.pipeline import make_dataset

# Thirteen 2x2 images whose pixels all equal their index (13 is prime: batches straddle epochs).
NUM_RECORDS = 13
RECORDS = InMemoryRecords(
    "identity", [np.full((2, 2, 3), index, np.uint8) for index in range(NUM_RECORDS)],
    np.arange(NUM_RECORDS) % 3)
CACHED = PreprocessOptions(resolution=2, crop="center", crop_scale=(1.0, 1.0), flip=False,
                           allow_upscale=False, read_threads=0, cache=True)


def batches(records=RECORDS, options=CACHED, count=1, **kwargs):
    settings = dict(name="identity", batch_size=4, seed=3, prefetch=0)
    settings.update(kwargs)
    iterator = iter(make_dataset(records, options, **settings))
    taken = [next(iterator) for _ in range(count)]
    iterator.close()
    return taken


def stream_ids(taken):
    return np.concatenate([batch["image"][:, 0, 0, 0] for batch in taken]).tolist()


def test_every_epoch_visits_each_image_once_in_a_new_order():
    ids = stream_ids(batches(count=13))  # 52 positions = 4 epochs of 13, batches of 4 straddle
    epochs = [ids[k * NUM_RECORDS:(k + 1) * NUM_RECORDS] for k in range(4)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(NUM_RECORDS))
    assert len({tuple(epoch) for epoch in epochs}) == 4
    labels = np.concatenate([batch["label"] for batch in batches(count=13)])
    np.testing.assert_array_equal(labels, np.array(ids) % 3)


def test_without_shuffling_the_order_is_the_records_order():
    assert stream_ids(batches(count=4, shuffle=False)) == [i % NUM_RECORDS for i in range(16)]


def test_same_seed_same_batches_other_seed_other_order():
    assert stream_ids(batches(count=6)) == stream_ids(batches(count=6))
    assert stream_ids(batches(count=6)) != stream_ids(batches(count=6, seed=4))


def test_restored_iterator_continues_with_the_next_batch():
    uninterrupted = stream_ids(batches(count=5))
    iterator = iter(make_dataset(RECORDS, CACHED, name="identity", batch_size=4, seed=3,
                                 prefetch=2))
    first = [next(iterator) for _ in range(3)]
    state = iterator.get_state()
    iterator.close()
    resumed = iter(make_dataset(RECORDS, CACHED, name="identity", batch_size=4, seed=3,
                                prefetch=2))
    resumed.set_state(state)
    assert stream_ids(first + [next(resumed), next(resumed)]) == uninterrupted
    resumed.close()


def test_two_processes_read_disjoint_shards_whose_union_is_the_dataset():
    shards = [set(stream_ids(batches(count=4, batch_size=2, process_index=index,
                                     process_count=2))) for index in range(2)]
    assert shards[0].isdisjoint(shards[1])
    assert shards[0] | shards[1] == set(range(NUM_RECORDS))


def test_flips_are_mirror_images_about_half_of_the_time_and_deterministic():
    ramp = np.arange(4, dtype=np.uint8)[None, :, None] * np.ones((4, 1, 3), np.uint8)
    records = InMemoryRecords("ramps", [ramp] * 8, np.zeros(8))
    options = dataclasses.replace(CACHED, resolution=4, flip=True)
    taken = batches(records, options, count=50, batch_size=8)
    flipped = np.array([[np.array_equal(image, ramp[:, ::-1]) for image in batch["image"]]
                        for batch in taken])
    unflipped = np.array([[np.array_equal(image, ramp) for image in batch["image"]]
                          for batch in taken])
    assert np.all(flipped ^ unflipped)
    assert abs(flipped.mean() - 0.5) < 5 * 0.5 / np.sqrt(flipped.size)
    again = batches(records, options, count=50, batch_size=8)
    for a, b in zip(taken, again):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_unusable_images_are_skipped_once_and_reported(caplog):
    images = [np.full((2, 2, 3), index, np.uint8) for index in range(6)]
    images[2] = np.zeros((2, 2, 5), np.uint8)  # five channels: unusable
    records = InMemoryRecords("with_bad", images, np.zeros(6))
    with caplog.at_level(logging.WARNING):
        ids = stream_ids(batches(records, count=5, batch_size=2))
    assert sorted(ids[:5]) == [0, 1, 3, 4, 5]
    assert 2 not in ids
    assert "skipped 1 unusable image(s) of the 6" in caplog.text
    unusable = InMemoryRecords("unusable", [np.zeros((2, 2, 5), np.uint8)] * 3, np.zeros(3))
    with pytest.raises(ValueError, match="Every one of the 3 images in this shard of unusable"):
        batches(unusable, name="unusable")


def test_cached_digits_have_the_pixels_of_the_per_image_path():
    def one_epoch(cache):
        """All 1797 digits in dataset order, as one batch."""
        config = default_data_config()
        config.update(resolution=12, cache=cache, shuffle=False)
        iterator = create_iterator(config, global_batch_size=1797, seed=0)
        images = next(iterator)["image"]
        iterator.close()
        return images

    np.testing.assert_array_equal(one_epoch(True), one_epoch(False))


def test_cache_is_on_for_centre_cropped_digits_and_refused_with_random_crops():
    config = default_data_config()
    assert validate_data_config(config, global_batch_size=2)[2].cache
    config.crop = "random"
    assert not validate_data_config(config, global_batch_size=2)[2].cache
    config.cache = True
    with pytest.raises(ValueError, match="data.cache .* needs data.crop = 'center', not 'random'"):
        validate_data_config(config, global_batch_size=2)


def test_a_worker_process_gives_the_batches_of_the_main_process():
    def first_batches(num_workers):
        config = default_data_config()
        config.update(resolution=8, flip=True, num_workers=num_workers)
        iterator = create_iterator(config, global_batch_size=8, seed=5)
        taken = [next(iterator) for _ in range(3)]
        iterator.close()
        return taken

    for a, b in zip(first_batches(0), first_batches(1)):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
