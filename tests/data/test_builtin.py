"""Built-in datasets load offline (sockets blocked by conftest) with the documented counts."""

import numpy as np
import pytest

from jaxdiff.data import create_iterator, default_data_config, validate_data_config
from jaxdiff.data.builtin import open_builtin

# name: (count, native (H, W) of record 0, number of classes, smallest short side)
DOCUMENTED = {
    "digits": (1797, (8, 8), 10, 8),
    "faces": (100, (25, 25), 0, 25),
    "photos": (10, (512, 512), 10, 300),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_builtin_counts_shapes_and_labels(name):
    count, shape, num_classes, min_side = DOCUMENTED[name]
    records, spec = open_builtin(name)
    assert len(records) == spec.num_examples == count
    assert spec.num_classes == num_classes and spec.min_side == min_side
    first = records[0]
    assert first["image"].shape == shape + (3,) and first["image"].dtype == np.uint8
    labels = np.array([records[i]["label"] for i in range(count)])
    if num_classes:
        assert set(labels) == set(range(num_classes))
    else:
        assert (labels == 0).all()


def test_digits_pixels_by_hand():
    from sklearn.datasets import load_digits

    records, _ = open_builtin("digits")
    raw_row = load_digits().images[0][0]
    np.testing.assert_array_equal(raw_row, [0, 0, 5, 13, 9, 1, 0, 0])
    # round(255 v / 16): 5 -> 79.69 -> 80, 13 -> 207.19 -> 207, 9 -> 143.44 -> 143, 1 -> 16.
    np.testing.assert_array_equal(records[0]["image"][0, :, 1], [0, 0, 80, 207, 143, 16, 0, 0])
    assert records[0]["label"] == 0 and records[1]["label"] == 1


def test_photo_labels_name_the_photos():
    from skimage import data

    records, spec = open_builtin("photos")
    assert spec.class_names[:3] == ("astronaut", "chelsea", "coffee")
    assert spec.class_names[-2:] == ("china", "flower")
    np.testing.assert_array_equal(records[1]["image"], data.chelsea())
    assert records[1]["label"] == 1


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_builtin_batches_through_the_pipeline(name):
    config = default_data_config()
    config.name = f"builtin:{name}"
    config.resolution = 16
    config.prefetch = 0
    iterator = create_iterator(config, global_batch_size=4, seed=0)
    batch = next(iterator)
    iterator.close()
    assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    assert batch["image"].std() > 0


def test_photos_need_upscaling_above_their_smallest_side():
    config = default_data_config()
    config.name = "builtin:photos"
    config.resolution = 301
    with pytest.raises(ValueError, match="short side of 300 px"):
        validate_data_config(config, global_batch_size=2)
    config.allow_upscale = True
    _, spec, options = validate_data_config(config, global_batch_size=2)
    assert options.allow_upscale and options.crop == "random" and spec.num_examples == 10


def test_unknown_builtin_name_fails():
    config = default_data_config()
    config.name = "builtin:cats"
    with pytest.raises(ValueError, match="Unknown built-in dataset 'cats'"):
        validate_data_config(config, global_batch_size=2)


@pytest.mark.parametrize("name, threads", [("digits", 0), ("faces", 0), ("photos", 4)])
def test_read_threads_default_per_dataset_and_an_explicit_value_wins(name, threads):
    config = default_data_config()
    config.name = f"builtin:{name}"
    config.resolution = 8
    _, _, options = validate_data_config(config, global_batch_size=2)
    assert options.read_threads == threads
    config.read_threads = 2
    _, _, options = validate_data_config(config, global_batch_size=2)
    assert options.read_threads == 2
