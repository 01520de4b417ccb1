"""Image folders, converted once into a tfds dataset in ArrayRecord format and read with tfds.

A folder holds image files (.jpg, .jpeg, .png, .webp, .bmp, any letter case), either all directly
in it (unlabeled) or all inside first-level sub-folders, whose sorted names become the class
labels (deeper folders belong to their first-level folder). Hidden files and folders are ignored.

The conversion stores each file's encoded bytes untouched (decoding happens in the pipeline, so
a corrupt file is skipped there and reported rather than failing the conversion). The converted
dataset lives in `data_dir` (tfds' default directory when None) under a builder config named by
the folder name and a fingerprint of its listing (paths, sizes, modification times): changing the
folder's content makes a new conversion, an unchanged folder is converted only once.

Images may have captions (`jaxdiff.data.caption_files`: a .txt beside the image, or a
captions.jsonl / captions.csv at the root); they are stored in the conversion, and the
fingerprint covers the caption files too, so editing them converts the folder again.
"""

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxdiff.data.caption_files import caption_files, read_captions
from jaxdiff.data.specs import DatasetSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """The image files of a folder: relative paths, integer labels, class names and the relative
    paths of its caption files."""

    root: str
    paths: tuple
    labels: tuple
    class_names: tuple
    caption_files: tuple

    def fingerprint(self):
        """A short hash of the relative paths, file sizes and modification times of the images
        and caption files."""
        digest = hashlib.sha256()
        for path in self.paths + self.caption_files:
            stat = os.stat(os.path.join(self.root, path))
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:12]


def _folder_files(directory):
    """Relative paths of the image files (sorted) and of the .txt files under `directory`,
    recursively, hidden ones skipped."""
    images, texts = [], []
    for parent, folders, files in os.walk(directory):
        folders[:] = sorted(folder for folder in folders if not folder.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            relative = os.path.relpath(os.path.join(parent, name), directory)
            if name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(relative)
            elif name.endswith(".txt"):
                texts.append(relative)
    return sorted(images), texts


def list_image_folder(root):
    """Lists an image folder; fails with one sentence when it is missing, empty or mixed."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise ValueError(f"Image folder {root} does not exist or is not a directory.")
    paths, texts = _folder_files(root)
    if not paths:
        raise ValueError(f"Image folder {root} contains no images with extensions "
                         f"{IMAGE_EXTENSIONS}.")
    in_root = [path for path in paths if os.sep not in path]
    class_names = tuple(sorted({path.split(os.sep)[0] for path in paths if os.sep in path}))
    if in_root and class_names:
        raise ValueError(
            f"Image folder {root} mixes images at its top level ({in_root[0]}, ...) with class "
            "sub-folders; put every image in a class sub-folder or none."
        )
    labels = tuple(class_names.index(path.split(os.sep)[0]) if class_names else 0 for path in paths)
    return FolderListing(root, tuple(paths), labels, class_names,
                         caption_files(root, paths, texts))


def _short_side(path):
    """The short side from the file header (no full decode); None when the header is unreadable."""
    try:
        with Image.open(path) as image:
            return min(image.size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


class JaxdiffImageFolder(tfds.core.GeneratorBasedBuilder):
    """tfds builder for one image folder: features image (encoded bytes), label, path and
    captions (raw bytes, none or several per image)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Encoded image bytes, class label from the sub-folder, path.",
                     "1.1.0": "Captions from the folder's caption files."}

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
                    "captions": tfds.features.Sequence(tfds.features.Text()),
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
        listing = self._listing
        captions = read_captions(listing.root, listing.paths, listing.caption_files)
        self.info.metadata["captioned"] = sum(bool(texts) for texts in captions)
        return {"train": self._generate_examples(captions)}

    def _generate_examples(self, captions):
        listing = self._listing
        for index, (path, label) in enumerate(zip(listing.paths, listing.labels)):
            with open(os.path.join(listing.root, path), "rb") as file:
                encoded = file.read()
            yield index, {"image": encoded, "label": label, "path": path,
                          "captions": list(captions[index])}


def _builder_config_name(listing):
    slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(listing.root).lower()).strip("_")
    return f"{slug or 'folder'}_{listing.fingerprint()}"


def prepare_image_folder(root, data_dir=None):
    """Converts the folder to ArrayRecord once (a no-op when already converted); returns the
    builder.

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
    """Records of a converted folder: {"image": bytes, "label": int, "name": relative path[,
    "caption": tuple of bytes]} (no "caption" for an image without one)."""

    def __init__(self, data_source, labeled):
        self._source = data_source
        self._labeled = labeled

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        record = self._source[index % len(self._source)]
        path = record["path"]
        converted = {
            "image": record["image"],
            "label": int(record["label"]) if self._labeled else 0,
            "name": path.decode() if isinstance(path, bytes) else str(path),
        }
        if len(record["captions"]):
            converted["caption"] = tuple(record["captions"])
        return converted


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
        has_captions=metadata["captioned"] > 0,
        default_crop="center",
        default_flip=True,
        default_allow_upscale=False,
    )
    return records, spec
