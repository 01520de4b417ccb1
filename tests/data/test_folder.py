"""Image folders (mixed formats, sizes, modes, corrupt files) and tfds datasets by name."""

import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxdiff.data import create_iterator, default_data_config, validate_data_config
from jaxdiff.data.folder import list_image_folder

RNG = np.random.default_rng(0)


def _save(path, array, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _rgb(height, width):
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Two classes, six usable images in five formats and modes, two corrupt files."""
    root = str(tmp_path_factory.mktemp("images") / "pets")
    _save(f"{root}/cats/a.png", _rgb(20, 24))
    _save(f"{root}/cats/b.JPG", _rgb(24, 20), format="JPEG")
    _save(f"{root}/cats/c.webp", _rgb(16, 16), lossless=True)
    _save(f"{root}/cats/gray.png", RNG.integers(0, 256, (18, 18), dtype=np.uint8))
    _save(f"{root}/dogs/rgba.png", RNG.integers(0, 256, (16, 20, 4), dtype=np.uint8))
    _save(f"{root}/dogs/deep/d16.png", np.full((16, 17), 257 * 9, np.uint16))
    with open(f"{root}/dogs/broken.png", "wb") as file:
        file.write(b"this is not a png")
    _save(f"{root}/dogs/trunc.bmp", _rgb(30, 30), format="BMP")
    with open(f"{root}/dogs/trunc.bmp", "r+b") as file:
        file.truncate(200)
    with open(f"{root}/cats/notes.txt", "w") as file:
        file.write("not an image extension, ignored")
    return root


def _folder_config(root, data_dir, **overrides):
    config = default_data_config()
    config.name = f"folder:{root}"
    config.data_dir = data_dir
    config.resolution = 16
    config.prefetch = 0
    config.read_threads = 0
    config.update(overrides)
    return config


def test_listing_labels_from_first_level_folders(image_folder):
    listing = list_image_folder(image_folder)
    assert listing.class_names == ("cats", "dogs")
    assert len(listing.paths) == 8
    labels = dict(zip(listing.paths, listing.labels))
    assert labels[os.path.join("dogs", "deep", "d16.png")] == 1
    assert labels[os.path.join("cats", "b.JPG")] == 0


def test_folder_epoch_count_shapes_labels_and_corrupt_report(image_folder, tmp_path, caplog):
    config = _folder_config(image_folder, str(tmp_path / "tfds"))
    _, spec, _ = validate_data_config(config, global_batch_size=6)
    assert spec.num_examples == 8 and spec.class_names == ("cats", "dogs")
    assert spec.min_side == 16
    caplog.set_level(logging.WARNING, logger="jaxdiff.data.pipeline")
    iterator = create_iterator(config, global_batch_size=6, seed=3)
    # One epoch holds 8 records of which 6 decode, so the first batch of 6 is exactly the epoch.
    first = next(iterator)
    assert first["image"].shape == (6, 16, 16, 3) and first["image"].dtype == np.uint8
    assert sorted(first["label"].tolist()) == [0, 0, 0, 0, 1, 1]
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipping")]
    assert len(skipped) == 2
    assert any("broken.png" in m for m in skipped) and any("trunc.bmp" in m for m in skipped)
    second = next(iterator)
    iterator.close()
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch 0")]
    assert summaries == [
        f"Epoch 0 of folder:{image_folder}: skipped 2 unusable image(s) of the 8 in this shard."
    ]
    # The second epoch holds the same images (another order, other random flips).
    assert sorted(second["label"].tolist()) == [0, 0, 0, 0, 1, 1]
    # The 16-bit image (value 257 * 9 -> 9) appears once per epoch as a constant 9 image.
    for batch in (first, second):
        assert sum(bool((image == 9).all()) for image in batch["image"]) == 1


def test_folder_is_converted_once(image_folder, tmp_path):
    data_dir = str(tmp_path / "tfds")
    config = _folder_config(image_folder, data_dir)
    validate_data_config(config, global_batch_size=2)
    converted = sorted(os.listdir(os.path.join(data_dir, "jaxdiff_image_folder")))
    assert len(converted) == 1 and converted[0].startswith("pets_")
    validate_data_config(config, global_batch_size=2)
    assert sorted(os.listdir(os.path.join(data_dir, "jaxdiff_image_folder"))) == converted


def test_folder_errors(image_folder, tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(ValueError, match="does not exist"):
        validate_data_config(_folder_config(str(tmp_path / "missing"), data_dir), global_batch_size=2)
    os.makedirs(tmp_path / "empty" / "sub")
    with pytest.raises(ValueError, match="contains no images"):
        validate_data_config(_folder_config(str(tmp_path / "empty"), data_dir), global_batch_size=2)
    _save(str(tmp_path / "mixed" / "top.png"), _rgb(4, 4))
    _save(str(tmp_path / "mixed" / "class" / "low.png"), _rgb(4, 4))
    with pytest.raises(ValueError, match="mixes images at its top level"):
        validate_data_config(_folder_config(str(tmp_path / "mixed"), data_dir), global_batch_size=2)
    with pytest.raises(ValueError, match="short side of 16 px, below the resolution 17"):
        validate_data_config(
            _folder_config(image_folder, data_dir, resolution=17), global_batch_size=2
        )
    with pytest.raises(ValueError, match="not divisible by the process count 4"):
        validate_data_config(
            _folder_config(image_folder, data_dir), global_batch_size=6, process_count=4
        )
    with pytest.raises(ValueError, match="Unknown dataset name 'pictures:/x'"):
        validate_data_config(_folder_config("/x", data_dir, name="pictures:/x"), global_batch_size=2)
    with pytest.raises(ValueError, match="data.crop must be one of"):
        validate_data_config(_folder_config(image_folder, data_dir, crop="middle"), global_batch_size=2)


class JaxdiffTinyTfdsTest(tfds.core.GeneratorBasedBuilder):
    """A user-prepared tfds dataset: an Image feature (from files) and a ClassLabel."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # no checksums to look up, as in JaxdiffImageFolder.code_path

    def __init__(self, *, files=(), **kwargs):
        self._files = files
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(12, 12, 3)),
                    "label": tfds.features.ClassLabel(names=["even", "odd"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index, path in enumerate(self._files):
            yield index, {"image": path, "label": index % 2}


def test_tfds_dataset_by_name(tmp_path):
    data_dir = str(tmp_path / "tfds")
    files = []
    for index in range(5):
        files.append(str(tmp_path / f"{index}.png"))
        _save(files[-1], np.full((12, 12, 3), 10 * index, np.uint8))
    JaxdiffTinyTfdsTest(files=files, data_dir=data_dir, file_format="array_record").download_and_prepare()
    config = _folder_config("", data_dir, name="tfds:jaxdiff_tiny_tfds_test", resolution=12)
    _, spec, options = validate_data_config(config, global_batch_size=5)
    assert spec.num_examples == 5 and spec.class_names == ("even", "odd") and spec.min_side == 12
    assert options.crop == "center" and not options.allow_upscale
    iterator = create_iterator(config, global_batch_size=5, seed=0)
    batch = next(iterator)
    iterator.close()
    values = batch["image"][:, 0, 0, 0].tolist()
    assert sorted(values) == [0, 10, 20, 30, 40]
    np.testing.assert_array_equal(batch["label"], [(value // 10) % 2 for value in values])
    with pytest.raises(ValueError, match="short side of 12 px"):
        validate_data_config(
            _folder_config("", data_dir, name="tfds:jaxdiff_tiny_tfds_test", resolution=13),
            global_batch_size=5,
        )


def test_tfds_errors(tmp_path):
    config = _folder_config("", str(tmp_path), name="tfds:no_such_dataset_anywhere")
    with pytest.raises(ValueError, match="Unknown tfds dataset 'no_such_dataset_anywhere'"):
        validate_data_config(config, global_batch_size=2)
    config = _folder_config("", str(tmp_path / "empty"), name="tfds:jaxdiff_tiny_tfds_test")
    with pytest.raises(ValueError, match="is not prepared"):
        validate_data_config(config, global_batch_size=2)
