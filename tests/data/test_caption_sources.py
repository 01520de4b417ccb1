"""Captions of image folders (.txt, captions.jsonl, captions.csv) and of tfds text features."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxdiff.data import create_iterator, default_data_config, validate_data_config
from jaxdiff.data.folder import list_image_folder
from jaxdiff.text.tokenizers import WordHashTokenizer, tokenize

TOKENIZER = WordHashTokenizer(vocab_size=1000, max_length=6)
# image -> its usable captions; b (not UTF-8), e (none) and f (empty) are skipped with text.
USABLE = {"a.png": ("a red square",), "c.png": ("c one", "c two"),
          "d.png": ("d three", "d one", "d two")}


def _image(path, value):
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


@pytest.fixture
def captioned_folder(tmp_path):
    root = tmp_path / "captioned"
    root.mkdir()
    for index, name in enumerate("abcdef"):
        _image(root / f"{name}.png", 10 * index)
    (root / "a.txt").write_text("a red square\n")
    (root / "b.txt").write_bytes(b"\xff\xfe not UTF-8")
    (root / "f.txt").write_text("   \n")
    lines = [{"file": "c.png", "caption": ["c one", "c two"]}, {"file": "d.png",
                                                                "caption": "d three"},
             {"file": "missing.png", "caption": "no such image"}]
    (root / "captions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "captions.csv").write_text('file,caption\nd.png,d one\nd.png,"d two"\n')
    return str(root)


def _config(name, data_dir, **overrides):
    config = default_data_config()
    config.update(name=name, data_dir=data_dir, resolution=4, prefetch=0, read_threads=0)
    config.update(overrides)
    return config


def test_folder_captions_are_listed_stored_and_read(captioned_folder, tmp_path, caplog):
    listing = list_image_folder(captioned_folder)
    assert listing.caption_files == ("a.txt", "b.txt", "f.txt", "captions.jsonl", "captions.csv")
    with caplog.at_level(logging.WARNING):
        records, spec, _ = validate_data_config(
            _config(f"folder:{captioned_folder}", str(tmp_path / "tfds")), global_batch_size=2)
    assert "1 caption entries of" in caplog.text
    assert spec.has_captions and spec.num_examples == 6
    captions = {records[i]["name"]: records[i].get("caption") for i in range(6)}
    assert captions == {"a.png": (b"a red square\n",), "b.png": (b"\xff\xfe not UTF-8",),
                        "c.png": (b"c one", b"c two"), "d.png": (b"d three", b"d one", b"d two"),
                        "e.png": None, "f.png": (b"   \n",)}


def test_folder_batches_carry_tokens_of_usable_captions_only(captioned_folder, tmp_path, caplog):
    config = _config(f"folder:{captioned_folder}", str(tmp_path / "tfds"))
    with caplog.at_level(logging.WARNING):
        iterator = create_iterator(config, global_batch_size=3, seed=0, text=TOKENIZER)
        epochs = [next(iterator) for _ in range(8)]
        iterator.close()
    seen = {name: set() for name in USABLE}
    for batch in epochs:
        names = ["abcdef"[value // 10] + ".png" for value in batch["image"][:, 0, 0, 0]]
        assert sorted(names) == sorted(USABLE)
        for name, tokens in zip(names, batch["tokens"]):
            (caption,) = [c for c in USABLE[name]
                          if np.array_equal(tokenize(TOKENIZER, c).tokens, tokens)]
            seen[name].add(caption)
    assert seen["c.png"] == set(USABLE["c.png"]) and len(seen["d.png"]) >= 2
    assert "skipped 3 unusable image(s) of the 6 in this shard (3 for want of a usable " \
           "caption)" in caplog.text


def test_editing_a_caption_file_converts_again(captioned_folder, tmp_path):
    data_dir = str(tmp_path / "tfds")
    config = _config(f"folder:{captioned_folder}", data_dir)
    validate_data_config(config, global_batch_size=2)
    with open(os.path.join(captioned_folder, "a.txt"), "w") as file:
        file.write("a blue square, edited")
    records, _, _ = validate_data_config(config, global_batch_size=2)
    assert len(os.listdir(os.path.join(data_dir, "jaxdiff_image_folder"))) == 2
    captions = {records[i]["name"]: records[i].get("caption") for i in range(6)}
    assert captions["a.png"] == (b"a blue square, edited",)


def test_a_folder_without_caption_files_has_no_captions(tmp_path):
    root = tmp_path / "plain"
    root.mkdir()
    _image(root / "x.png", 5)
    config = _config(f"folder:{root}", str(tmp_path / "tfds"))
    _, spec, _ = validate_data_config(config, global_batch_size=1)
    assert not spec.has_captions
    with pytest.raises(ValueError, match="needs captions"):
        create_iterator(config, global_batch_size=1, seed=0, text=TOKENIZER)
    with pytest.raises(ValueError, match="caption_field applies to tfds datasets only"):
        validate_data_config(_config(f"folder:{root}", None, caption_field="caption"),
                             global_batch_size=1)


class JaxdiffCaptionedTfdsTest(tfds.core.GeneratorBasedBuilder):
    """Images (from files) with a caption, several captions, and COCO-style nested captions."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # no checksums to look up, as in JaxdiffImageFolder.code_path

    def __init__(self, *, files=(), **kwargs):
        self._files = files
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(4, 4, 3)),
            "label": tfds.features.ClassLabel(names=["even", "odd"]),
            "caption": tfds.features.Text(),
            "alternatives": tfds.features.Sequence(tfds.features.Text()),
            "coco": tfds.features.Sequence({"text": tfds.features.Text(), "id": np.int64}),
        }))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index, path in enumerate(self._files):
            yield index, {"image": path, "label": index % 2,
                          "caption": f"picture {index}" if index != 3 else b"\xff",
                          "alternatives": [f"alt {index}", f"other {index}"],
                          "coco": [{"text": f"coco {index}", "id": index}]}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("captioned_tfds")
    files = [str(folder / f"{index}.png") for index in range(4)]
    for index, path in enumerate(files):
        _image(path, 10 * index)
    builder = JaxdiffCaptionedTfdsTest(files=files, data_dir=str(folder / "tfds"),
                                       file_format="array_record")
    builder.download_and_prepare()
    return str(folder / "tfds")


@pytest.mark.parametrize("field, captions", [
    ("caption", lambda i: (f"picture {i}",)),
    ("alternatives", lambda i: (f"alt {i}", f"other {i}")),
    ("coco/text", lambda i: (f"coco {i}",)),
])
def test_tfds_caption_field(tfds_dir, field, captions):
    config = _config("tfds:jaxdiff_captioned_tfds_test", tfds_dir, caption_field=field)
    _, spec, _ = validate_data_config(config, global_batch_size=3)
    assert spec.has_captions
    iterator = create_iterator(config, global_batch_size=3, seed=0, text=TOKENIZER)
    batch = next(iterator)
    iterator.close()
    indices = (batch["image"][:, 0, 0, 0] // 10).tolist()
    assert len(set(indices)) == 3 and (field != "caption" or 3 not in indices)
    for index, tokens in zip(indices, batch["tokens"]):
        assert any(np.array_equal(tokenize(TOKENIZER, c).tokens, tokens) for c in captions(index))
    np.testing.assert_array_equal(batch["label"], np.array(indices) % 2)


def test_tfds_caption_field_errors(tfds_dir):
    name = "tfds:jaxdiff_captioned_tfds_test"
    _, spec, _ = validate_data_config(_config(name, tfds_dir), global_batch_size=3)
    assert not spec.has_captions
    with pytest.raises(ValueError, match="has no feature 'title' for data.caption_field"):
        validate_data_config(_config(name, tfds_dir, caption_field="title"), global_batch_size=3)
    with pytest.raises(ValueError, match="'label' .* is a ClassLabel, not a Text feature"):
        validate_data_config(_config(name, tfds_dir, caption_field="label"), global_batch_size=3)
