"""tfds datasets by name, prepared by the user in ArrayRecord format under a local or gs://
data_dir.

Read with `tfds.data_source` (random access, no TensorFlow). The first Image feature is read as
encoded bytes (tfds decoding skipped) and decoded by the pipeline, so a corrupt record is skipped
and reported like a corrupt file of an image folder; the label is the ClassLabel feature named
"label" when there is one.

With `caption_field` (data.caption_field), records also carry that text feature as the caption:
a Text feature or a Sequence of Text (several captions), named by its key, or by a "/" path into
nested features (e.g. "captions/text" for a Sequence of {"text": Text, ...}). Captions stay
bytes here; the pipeline decodes them as UTF-8.
"""

import tensorflow_datasets as tfds

from jaxdiff.data.specs import DatasetSpec


class TfdsRecords:
    """Records of a tfds data source: {"image": bytes, "label": int, "name": "dataset[index]"[,
    "caption": bytes or a tuple of bytes]}."""

    def __init__(self, data_source, name, image_key, label_key, caption_path=()):
        self._source = data_source
        self._name = name
        self._image_key = image_key
        self._label_key = label_key
        self._caption_path = caption_path

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        index = index % len(self._source)
        record = self._source[index]
        label = int(record[self._label_key]) if self._label_key else 0
        converted = {"image": record[self._image_key], "label": label,
                     "name": f"{self._name}[{index}]"}
        if self._caption_path:
            for key in self._caption_path:
                record = record[key]
            converted["caption"] = record if isinstance(record, bytes) else tuple(record)
        return converted


def _image_key(features, name):
    for key, feature in features.items():
        if isinstance(feature, tfds.features.Image):
            return key
    raise ValueError(f"tfds dataset {name!r} has no Image feature (features: {list(features)}).")


def _caption_path(features, caption_field, name):
    """The keys leading to the caption feature; fails in one sentence unless it is text."""
    feature = features
    path = tuple(caption_field.split("/"))
    try:
        for key in path:
            feature = feature[key]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"tfds dataset {name!r} has no feature {caption_field!r} for "
                         f"data.caption_field (features: {list(features)}).") from error
    if isinstance(feature, tfds.features.Sequence):
        feature = feature.feature
    if not isinstance(feature, tfds.features.Text):
        raise ValueError(f"data.caption_field {caption_field!r} of tfds dataset {name!r} is a "
                         f"{type(feature).__name__}, not a Text feature.")
    return path


def open_tfds(name, split="train", data_dir=None, caption_field=None):
    """Returns (records, DatasetSpec) of a prepared tfds dataset; fails early when unusable."""
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"Unknown tfds dataset {name!r} (data_dir={data_dir!r}).") from error
    if not builder.is_prepared():
        raise ValueError(
            f"tfds dataset {name!r} is not prepared in {builder.data_dir}; build it once with "
            f"`tfds build {name} --file_format=array_record` (data_dir={data_dir!r})."
        )
    try:
        builder.info.splits[split]
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"tfds dataset {name!r} has no split {split!r}; it has {list(builder.info.splits)}."
        ) from error
    features = builder.info.features
    image_key = _image_key(features, name)
    label = features["label"] if "label" in features.keys() else None
    label_key = "label" if isinstance(label, tfds.features.ClassLabel) else None
    caption_path = _caption_path(features, caption_field, name) if caption_field else ()
    data_source = builder.as_data_source(
        split=split, decoders={image_key: tfds.decode.SkipDecoding()}
    )
    height, width = features[image_key].shape[:2]
    spec = DatasetSpec(
        name=f"tfds:{name}",
        num_examples=len(data_source),
        class_names=tuple(label.names) if label_key else (),
        min_side=min(height, width) if height and width else None,
        has_captions=bool(caption_path),
        default_crop="center",
        default_flip=True,
        default_allow_upscale=False,
    )
    return TfdsRecords(data_source, name, image_key, label_key, caption_path), spec
