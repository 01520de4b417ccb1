"""The grain pipeline: determinism, resumption, orbax checkpoints, process shards, workers."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdiff.data import create_iterator, default_data_config, to_model_input
from jaxdiff.data.builtin import InMemoryRecords
from jaxdiff.data.config import PreprocessOptions
from jaxdiff.data.pipeline import make_dataset

# Twelve 2x2 images whose pixels all equal their index: a batch tells which records it holds.
NUM_RECORDS = 12
IDENTITY_RECORDS = InMemoryRecords(
    "identity",
    [np.full((2, 2, 3), index, np.uint8) for index in range(NUM_RECORDS)],
    np.arange(NUM_RECORDS) % 3,
)
EXACT = PreprocessOptions(resolution=2, crop="center", crop_scale=(1.0, 1.0), flip=False,
                          allow_upscale=False, read_threads=0, cache=False)


def record_ids(batch):
    return batch["image"][:, 0, 0, 0].tolist()


def take(iterator, count):
    batches = [next(iterator) for _ in range(count)]
    iterator.close()
    return batches


def digits_config(**overrides):
    config = default_data_config()
    config.resolution = 12
    config.crop = "random"
    config.flip = True
    config.update(overrides)
    return config


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_same_seed_same_batches_other_seed_other_batches():
    first = take(create_iterator(digits_config(), global_batch_size=4, seed=7), 3)
    second = take(create_iterator(digits_config(), global_batch_size=4, seed=7), 3)
    other = take(create_iterator(digits_config(), global_batch_size=4, seed=8), 3)
    assert_same_batches(first, second)
    assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_restored_iterator_continues_with_the_next_batch():
    uninterrupted = take(create_iterator(digits_config(), global_batch_size=4, seed=1), 4)
    interrupted = create_iterator(digits_config(), global_batch_size=4, seed=1)
    take_k = [next(interrupted) for _ in range(3)]
    state = interrupted.get_state()
    interrupted.close()
    resumed = create_iterator(digits_config(), global_batch_size=4, seed=1)
    resumed.set_state(state)
    assert_same_batches(take_k + take(resumed, 1), uninterrupted)


def test_iterator_state_round_trips_through_an_orbax_checkpoint(tmp_path):
    uninterrupted = take(create_iterator(digits_config(), global_batch_size=4, seed=2), 3)
    params = {"w": jnp.arange(3.0)}
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("state", "data")) as manager:
        iterator = create_iterator(digits_config(), global_batch_size=4, seed=2)
        consumed = [next(iterator) for _ in range(2)]
        manager.save(
            2,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(params),
                data=grain.checkpoint.CheckpointSave(iterator),
            ),
        )
        manager.wait_until_finished()
        iterator.close()
        fresh = create_iterator(digits_config(), global_batch_size=4, seed=2)
        restored = manager.restore(
            2,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(jax.tree.map(jnp.zeros_like, params)),
                data=grain.checkpoint.CheckpointRestore(fresh),
            ),
        )
    np.testing.assert_array_equal(restored.state["w"], params["w"])
    assert_same_batches(consumed + take(restored.data, 1), uninterrupted)


def identity_dataset(process_index=0, process_count=1, batch_size=NUM_RECORDS, **kwargs):
    return make_dataset(
        IDENTITY_RECORDS, EXACT, name="identity", batch_size=batch_size, seed=5,
        process_index=process_index, process_count=process_count, prefetch=0, **kwargs,
    )


def test_two_processes_see_disjoint_shards_covering_the_epoch():
    shard_size = NUM_RECORDS // 2
    shards = [
        record_ids(take(iter(identity_dataset(index, 2, batch_size=shard_size)), 1)[0])
        for index in range(2)
    ]
    assert len(set(shards[0])) == len(set(shards[1])) == shard_size
    assert set(shards[0]).isdisjoint(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(range(NUM_RECORDS))
    # Labels travel with their images: label = index % 3.
    batch = take(iter(identity_dataset(0, 2, batch_size=shard_size)), 1)[0]
    np.testing.assert_array_equal(batch["label"], np.array(record_ids(batch)) % 3)


def test_every_epoch_is_a_new_permutation():
    epochs = [record_ids(batch) for batch in take(iter(identity_dataset()), 3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(NUM_RECORDS))
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    unshuffled = take(iter(identity_dataset(shuffle=False)), 1)[0]
    assert record_ids(unshuffled) == list(range(NUM_RECORDS))


def test_one_worker_process_gives_the_same_batches_as_none():
    in_process = take(iter(identity_dataset(batch_size=4)), 4)
    with_worker = take(iter(identity_dataset(batch_size=4, num_workers=1)), 4)
    assert_same_batches(in_process, with_worker)


def test_a_second_stream_runs_independently_beside_the_first():
    alone = take(create_iterator(digits_config(), global_batch_size=4, seed=3), 2)
    faces_config = digits_config(name="builtin:faces")
    mixed = create_iterator(faces_config, global_batch_size=4, seed=4)
    digits = create_iterator(digits_config(), global_batch_size=4, seed=3)
    side_by_side = []
    for _ in range(2):
        side_by_side.append(next(digits))
        assert next(mixed)["image"].shape == (4, 12, 12, 3)
    digits.close()
    mixed.close()
    assert_same_batches(alone, side_by_side)


def test_mixing_stream_zips_a_second_dataset_and_resumes_with_it():
    faces = digits_config(name="builtin:faces")
    paired = take(create_iterator(digits_config(), global_batch_size=4, seed=3, mix_config=faces),
                  3)
    first = take(create_iterator(digits_config(), global_batch_size=4, seed=3), 3)
    second = take(create_iterator(faces, global_batch_size=4, seed=4), 3)
    assert_same_batches(paired, first)
    for batch, mix in zip(paired, second):
        np.testing.assert_array_equal(batch["mix_image"], mix["image"])
    iterator = create_iterator(digits_config(), global_batch_size=4, seed=3, mix_config=faces)
    next(iterator)
    state = iterator.get_state()
    iterator.close()
    resumed = create_iterator(digits_config(), global_batch_size=4, seed=3, mix_config=faces)
    resumed.set_state(state)
    batch = next(resumed)
    resumed.close()
    np.testing.assert_array_equal(batch["image"], paired[1]["image"])
    np.testing.assert_array_equal(batch["mix_image"], paired[1]["mix_image"])
    with pytest.raises(ValueError, match="config.mix_data.resolution 16 must equal"):
        create_iterator(digits_config(), global_batch_size=4, seed=3,
                        mix_config=digits_config(resolution=16))


def test_to_model_input_maps_uint8_to_minus_one_one():
    pixels = jnp.array([0, 51, 127, 128, 255], jnp.uint8)
    # u / 127.5 - 1: 0 -> -1, 51 -> -0.6, 127 -> -1/255, 128 -> 1/255, 255 -> 1.
    expected = [-1.0, -0.6, -1.0 / 255.0, 1.0 / 255.0, 1.0]
    np.testing.assert_allclose(jax.jit(to_model_input)(pixels), expected, atol=1e-6)
    assert to_model_input(pixels, jnp.bfloat16).dtype == jnp.bfloat16


def test_a_shard_without_any_usable_image_fails_instead_of_looping():
    unusable = InMemoryRecords("unusable", [np.zeros((2, 2, 5), np.uint8)] * 3, np.zeros(3))
    dataset = make_dataset(unusable, EXACT, name="unusable", batch_size=1, seed=0, prefetch=0)
    with pytest.raises(ValueError, match="Every one of the 3 images in this shard of unusable"):
        next(iter(dataset))


def test_bad_seed_and_process_index_fail():
    with pytest.raises(ValueError, match="non-negative integer"):
        create_iterator(digits_config(), global_batch_size=4, seed=-1)
    with pytest.raises(ValueError, match="process_index 2 is not in"):
        create_iterator(digits_config(), global_batch_size=4, seed=0, process_index=2,
                        process_count=2)
