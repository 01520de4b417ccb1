"""Opens a dataset by its config name: "builtin:NAME", "folder:/PATH" or "tfds:NAME"."""

from jaxdiff.data.builtin import open_builtin
from jaxdiff.data.folder import open_image_folder
from jaxdiff.data.tfds_source import open_tfds

KINDS = ("builtin", "folder", "tfds")


def parse_name(name):
    """Splits "kind:rest" and checks the kind; returns (kind, rest)."""
    kind, separator, rest = str(name).partition(":")
    if not separator or kind not in KINDS or not rest:
        raise ValueError(
            f"Unknown dataset name {name!r}; use 'builtin:digits', 'builtin:faces', "
            "'builtin:photos', 'folder:/path/to/images' or 'tfds:NAME'."
        )
    return kind, rest


def open_dataset(name, data_dir=None, split="train"):
    """Returns (records, DatasetSpec): a random-access grain source and what is known about it."""
    kind, rest = parse_name(name)
    if kind == "builtin":
        return open_builtin(rest)
    if kind == "folder":
        return open_image_folder(rest, data_dir)
    return open_tfds(rest, split, data_dir)
