"""Image folders, converted once into a tfds dataset in ArrayRecord format and read with tfds.

A folder holds image files (.jpg, .jpeg, .png, .webp, .bmp, any letter case), either all directly
in it (unlabeled) or all inside first-level sub-folders, whose sorted names become the class
labels (deeper folders belong to their first-level folder). Hidden files and folders are ignored.

The conversion stores each file's encoded bytes untouched (decoding happens in the pipeline, so
a corrupt file is skipped there and reported rather than failing the conversion). The converted
dataset lives in `data_dir` (tfds' default directory when None) under a builder config named by
the folder name and a fingerprint of its listing (paths, sizes, modification times): changing the
folder's content makes a new conversion, an unchanged folder is converted only once.
"""

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxdiff.data.specs import DatasetSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """The image files of a folder: relative paths, integer labels and class names."""

    root: str
    paths: tuple
    labels: tuple
    class_names: tuple

    def fingerprint(self):
        """A short hash of the relative paths, file sizes and modification times."""
        digest = hashlib.sha256()
        for path in self.paths:
            stat = os.stat(os.path.join(self.root, path))
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:12]


def _image_files(directory):
    """Relative paths of the image files under `directory`, recursively, sorted, hidden skipped."""
    found = []
    for parent, folders, files in os.walk(directory):
        folders[:] = sorted(folder for folder in folders if not folder.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(parent, name), directory))
    return sorted(found)


def list_image_folder(root):
    """Lists an image folder; fails with one sentence when it is missing, empty or mixed."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise ValueError(f"Image folder {root} does not exist or is not a directory.")
    paths = _image_files(root)
    if not paths:
        raise ValueError(f"Image folder {root} contains no images with extensions {IMAGE_EXTENSIONS}.")
    in_root = [path for path in paths if os.sep not in path]
    class_names = tuple(sorted({path.split(os.sep)[0] for path in paths if os.sep in path}))
    if in_root and class_names:
        raise ValueError(
            f"Image folder {root} mixes images at its top level ({in_root[0]}, ...) with class "
            "sub-folders; put every image in a class sub-folder or none."
        )
    labels = tuple(class_names.index(path.split(os.sep)[0]) if class_names else 0 for path in paths)
    return FolderListing(root, tuple(paths), labels, class_names)


def _short_side(path):
    """The short side from the file header (no full decode); None when the header is unreadable."""
    try:
        with Image.open(path) as image:
            return min(image.size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


class JaxdiffImageFolder(tfds.core.GeneratorBasedBuilder):
    """tfds builder for one image folder: features image (encoded bytes), label and path."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Encoded image bytes, class label from the sub-folder, path."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """None: this builder downloads nothing, so tfds needs no checksums file beside its code.

        (tfds locates that file with `importlib_resources`, which it installs only on Python < 3.9.)
        """
        return None

    def __init__(self, *, listing, **kwargs):
        self._listing = listing
        super().__init__(**kwargs)

    def _info(self):
        labels = self._listing.class_names or ("unlabeled",)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Images of the folder {self._listing.root}.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "label": tfds.features.ClassLabel(names=labels),
                    "path": tfds.features.Text(),
                }
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        sides = [_short_side(os.path.join(self._listing.root, p)) for p in self._listing.paths]
        readable = [side for side in sides if side is not None]
        self.info.metadata["min_side"] = min(readable) if readable else None
        self.info.metadata["labeled"] = bool(self._listing.class_names)
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index, (path, label) in enumerate(zip(self._listing.paths, self._listing.labels)):
            with open(os.path.join(self._listing.root, path), "rb") as file:
                encoded = file.read()
            yield index, {"image": encoded, "label": label, "path": path}


def _builder_config_name(listing):
    slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(listing.root).lower()).strip("_")
    return f"{slug or 'folder'}_{listing.fingerprint()}"


def prepare_image_folder(root, data_dir=None):
    """Converts the folder to ArrayRecord once (a no-op when already converted); returns the builder.

    With several processes sharing `data_dir`, call this on process 0 and wait at a barrier before
    the other processes open the folder.
    """
    listing = list_image_folder(root)
    builder = JaxdiffImageFolder(
        listing=listing,
        config=tfds.core.BuilderConfig(name=_builder_config_name(listing)),
        data_dir=data_dir,
        file_format="array_record",
    )
    if not builder.is_prepared():
        builder.download_and_prepare()
    return builder


class FolderRecords:
    """Records of a converted folder: {"image": bytes, "label": int, "name": relative path}."""

    def __init__(self, data_source, labeled):
        self._source = data_source
        self._labeled = labeled

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        record = self._source[index % len(self._source)]
        path = record["path"]
        return {
            "image": record["image"],
            "label": int(record["label"]) if self._labeled else 0,
            "name": path.decode() if isinstance(path, bytes) else str(path),
        }


def open_image_folder(root, data_dir=None):
    """Returns (records, DatasetSpec) of an image folder, converting it first if needed."""
    builder = prepare_image_folder(root, data_dir)
    metadata = builder.info.metadata
    records = FolderRecords(builder.as_data_source(split="train"), metadata["labeled"])
    spec = DatasetSpec(
        name=f"folder:{root}",
        num_examples=len(records),
        class_names=tuple(builder.info.features["label"].names) if metadata["labeled"] else (),
        min_side=metadata["min_side"],
        default_crop="center",
        default_flip=True,
        default_allow_upscale=False,
    )
    return records, spec
