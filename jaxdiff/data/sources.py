"""Opens a dataset by its config name: "builtin:NAME", "folder:/PATH", "tfds:NAME" or
"shards:/DIR"."""

from jaxdiff.data.builtin import open_builtin
from jaxdiff.data.folder import open_image_folder
from jaxdiff.data.shard_source import open_shards
from jaxdiff.data.tfds_source import open_tfds

KINDS = ("builtin", "folder", "tfds", "shards")


def parse_name(name):
    """Splits "kind:rest" and checks the kind; returns (kind, rest)."""
    kind, separator, rest = str(name).partition(":")
    if not separator or kind not in KINDS or not rest:
        raise ValueError(
            f"Unknown dataset name {name!r}; use 'builtin:digits', 'builtin:captioned_digits', "
            "'builtin:faces', 'builtin:photos', 'folder:/path/to/images', 'tfds:NAME' or "
            "'shards:/path/to/array_record_shards'."
        )
    return kind, rest


def open_dataset(name, data_dir=None, split="train", caption_field=None):
    """Returns (records, DatasetSpec): a random-access grain source and what is known about it.
    `caption_field` names the captions' feature of a tfds dataset (data.caption_field)."""
    kind, rest = parse_name(name)
    if caption_field is not None and kind != "tfds":
        raise ValueError(f"data.caption_field applies to tfds datasets only; {name} finds its "
                         "captions itself, so leave it None.")
    if kind == "builtin":
        return open_builtin(rest)
    if kind == "folder":
        return open_image_folder(rest, data_dir)
    if kind == "shards":
        return open_shards(rest)
    return open_tfds(rest, split, data_dir, caption_field)
