"""The data config (an ml_collections ConfigDict), its fail-early validation and resolved options.

Fields of `default_data_config()`:
  name           "builtin:digits" | "builtin:captioned_digits" | "builtin:faces" | "builtin:photos"
                 | "folder:/path" | "tfds:NAME" | "shards:/path" (ArrayRecord shards written by
                 `python -m jaxdiff.data.shards convert`)
  data_dir       tfds data directory (local or gs://): where a "tfds:" dataset was prepared and
                 where a "folder:" is converted to ArrayRecord; None = tfds' default directory.
  split          tfds split to read ("train", "test[:10%]", ...); image folders have "train" only.
  caption_field  tfds datasets only: the text feature holding the captions ("caption", or a "/"
                 path such as "captions/text"), decoded as UTF-8; None = no captions. Built-in,
                 folder and shards datasets know their captions themselves.
  resolution     output side in pixels; images are square crops resized to resolution^2.
  crop           "center" (largest centred square) or "random" (random square of side
                 crop_scale * short side); None = the dataset's default (random for photos).
  crop_scale     (low, high) fractions of the short side for random crops, 0 < low <= high <= 1.
  flip           random horizontal flips; None = the dataset's default (off for digits).
  allow_upscale  allow images smaller than `resolution` (they are enlarged); None = the dataset's
                 default: on for digits (8 px) and faces (25 px), off for everything else.
  shuffle        shuffle every epoch (a different permutation each epoch, from the seed).
  cache          decode, centre-crop and resize every image once and keep the results in memory
                 (images x resolution^2 x 3 bytes per process), then gather batches from them;
                 needs crop "center". None = on for digits and faces when their crop is "center".
                 Gathering needs no workers (each worker process would hold its own copy).
  num_workers    grain worker processes (0 = decode in the training process).
  read_threads   threads per process reading and decoding records (Pillow releases the GIL);
                 None = the dataset's default: 0 (the main thread) for digits and faces, whose
                 tiny in-memory images cost less to resize than to hand to a thread, else 4.
  prefetch       batches buffered ahead (per worker with workers, else in a thread).
"""

import dataclasses

import ml_collections
from ml_collections.config_dict import placeholder

from jaxdiff.data.sources import open_dataset

CROPS = ("center", "random")


def default_data_config():
    """The data config with its defaults: 32 px digits, one process, no workers."""
    return ml_collections.ConfigDict(
        {
            "name": "builtin:digits",
            "data_dir": placeholder(str),
            "split": "train",
            "caption_field": placeholder(str),
            "resolution": 32,
            "crop": placeholder(str),
            "crop_scale": (0.5, 1.0),
            "flip": placeholder(bool),
            "allow_upscale": placeholder(bool),
            "shuffle": True,
            "cache": placeholder(bool),
            "num_workers": 0,
            "read_threads": placeholder(int),
            "prefetch": 2,
        }
    )


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """Per-image preprocessing with the dataset defaults filled in."""

    resolution: int
    crop: str
    crop_scale: tuple
    flip: bool
    allow_upscale: bool
    read_threads: int
    cache: bool


def _check_fields(config, global_batch_size, process_count):
    """Raises ValueError (one sentence) for a malformed field; no I/O."""
    if not isinstance(config.resolution, int) or config.resolution < 1:
        raise ValueError(f"data.resolution must be a positive integer, got {config.resolution!r}.")
    if config.crop is not None and config.crop not in CROPS:
        raise ValueError(f"data.crop must be one of {CROPS} or None, got {config.crop!r}.")
    low, high = config.crop_scale
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"data.crop_scale must satisfy 0 < low <= high <= 1, got {(low, high)}.")
    for field in ("num_workers", "read_threads", "prefetch"):
        value = config[field]
        if field == "read_threads" and value is None:
            continue
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"data.{field} must be a non-negative integer, got {value!r}.")
    if not isinstance(process_count, int) or process_count < 1:
        raise ValueError(f"process_count must be a positive integer, got {process_count!r}.")
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError(f"The batch size must be a positive integer, got {global_batch_size!r}.")
    if global_batch_size % process_count:
        raise ValueError(
            f"The batch size {global_batch_size} is not divisible by the process count "
            f"{process_count}."
        )


def resolve_options(config, spec):
    """Fills the config's None fields with the dataset's defaults."""
    crop = spec.default_crop if config.crop is None else config.crop
    return PreprocessOptions(
        resolution=config.resolution,
        crop=crop,
        crop_scale=tuple(config.crop_scale),
        flip=spec.default_flip if config.flip is None else bool(config.flip),
        allow_upscale=(spec.default_allow_upscale if config.allow_upscale is None
                       else bool(config.allow_upscale)),
        read_threads=(spec.default_read_threads if config.read_threads is None
                      else config.read_threads),
        cache=((spec.default_cache and crop == "center") if config.cache is None
               else bool(config.cache)),
    )


def validate_data_config(config, *, global_batch_size, process_count=1):
    """Checks the data config before training starts; returns (records, DatasetSpec, options).

    Fails with one ValueError sentence for: a malformed field, an unknown dataset name, a missing
    or empty image folder, an unprepared tfds dataset, a data.caption_field that is not a text
    feature of a tfds dataset, a batch size not divisible by the process count, fewer images
    than processes, or a resolution above the smallest image side while upscaling is off.
    Opening an image folder converts it to ArrayRecord the first time. Whether the dataset has
    the captions a text-conditioned run needs is checked by `captions.check_text_data`.
    """
    _check_fields(config, global_batch_size, process_count)
    records, spec = open_dataset(config.name, config.data_dir, config.split, config.caption_field)
    options = resolve_options(config, spec)
    if options.cache and options.crop != "center":
        raise ValueError(
            f"data.cache keeps one preprocessed copy of each image, so it needs data.crop = "
            f"'center', not {options.crop!r}."
        )
    if spec.num_examples < process_count:
        raise ValueError(
            f"Dataset {spec.name} has {spec.num_examples} images, fewer than the {process_count} "
            "processes that each need a shard."
        )
    too_small = spec.min_side is not None and spec.min_side < options.resolution
    if too_small and not options.allow_upscale:
        raise ValueError(
            f"Dataset {spec.name} has images with a short side of {spec.min_side} px, below the "
            f"resolution {options.resolution}; lower data.resolution or set "
            "data.allow_upscale=True."
        )
    return records, spec, options
