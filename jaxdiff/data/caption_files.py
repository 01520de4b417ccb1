"""Caption files of an image folder, read when the folder is converted (`jaxdiff.data.folder`).

An image's captions come from any of, in this order:

  IMAGE_STEM.txt   beside the image (e.g. cats/a.txt for cats/a.png): its whole content is one
                   caption, kept as raw bytes (the pipeline decodes it as UTF-8 and skips the
                   image if that fails);
  captions.jsonl   at the folder root, one JSON object per line:
                   {"file": "cats/a.png", "caption": "a cat"} or {"file": ..., "caption": [...]}
                   for several captions;
  captions.csv     at the folder root, with a header row naming the columns file and caption;
                   several rows for one file give it several captions.

"file" is the image's path relative to the folder root, with "/" separators. Entries naming no
image of the folder are ignored (with one warning). An image without any caption gets none; the
pipeline skips it when text is wanted.
"""

import csv
import json
import logging
import os

logger = logging.getLogger(__name__)

CAPTION_INDEXES = ("captions.jsonl", "captions.csv")


def caption_files(root, image_paths, text_files):
    """The relative paths of the folder's caption files: the .txt files (among `text_files`, all
    .txt files of the folder) beside an image, then the root caption indexes that exist."""
    text_files = set(text_files)
    beside = sorted({stem + ".txt" for stem in (os.path.splitext(p)[0] for p in image_paths)}
                    & text_files)
    indexes = tuple(name for name in CAPTION_INDEXES if os.path.isfile(os.path.join(root, name)))
    return tuple(beside) + indexes


def _jsonl_entries(path):
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                captions = entry["caption"]
                yield entry["file"], [captions] if isinstance(captions, str) else list(captions)
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"Line {number} of {path} is not a JSON object with 'file' and "
                                 f"'caption' ({error}).") from error


def _csv_entries(path):
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        if not {"file", "caption"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path} must have a header row with the columns file and caption, "
                             f"got {reader.fieldnames}.")
        for row in reader:
            yield row["file"], [row["caption"] or ""]


def read_captions(root, image_paths, files):
    """Per image of `image_paths` (relative), the tuple of its captions as bytes, read from
    `files` (what caption_files returned)."""
    captions = {path: [] for path in image_paths}
    stems = {}
    for path in image_paths:
        stems.setdefault(os.path.splitext(path)[0] + ".txt", []).append(path)
    unknown = 0
    for name in files:
        full = os.path.join(root, name)
        if name not in CAPTION_INDEXES:
            with open(full, "rb") as file:
                text = file.read()
            for path in stems[name]:
                captions[path].append(text)
            continue
        entries = _jsonl_entries(full) if name.endswith(".jsonl") else _csv_entries(full)
        try:
            for file_name, texts in entries:
                path = os.path.normpath(str(file_name).replace("/", os.sep))
                if path not in captions:
                    unknown += 1
                    continue
                captions[path].extend(str(text).encode() for text in texts)
        except UnicodeDecodeError as error:
            raise ValueError(f"{full} is not valid UTF-8 ({error}).") from error
    if unknown:
        logger.warning("%d caption entries of %s name no image of the folder; ignored.",
                       unknown, root)
    return tuple(tuple(captions[path]) for path in image_paths)
