"""The grain pipeline: shard, shuffle, repeat, decode (skipping bad records), crop, batch, prefetch.

    records[process_index::process_count]    this process's shard (disjoint, union = the epoch)
      .map_with_index(ShardIndex)            (index i in the shard, record)
      .shuffle(seed)                         a new permutation every epoch (grain index_shuffle)
      .repeat()                              endless; epoch = position // shard length
      .map_with_index(DecodeRecord)          RGB uint8 (+ text fields), or None (skipped,
                                             counted, reported)
      .random_map(CropResizeFlip, seed)      per-element rng from (seed, index): deterministic
      .to_iter_dataset(read threads) .batch(local batch, drop_remainder)
      .mp_prefetch(workers) or a prefetch thread

With data.cache (on by default for the small built-in digits and faces) every image of the shard is
decoded, centre-cropped and resized once (and every caption tokenized once), and batches are
gathered from the resulting arrays (`jaxdiff.data.cached`); workers and the prefetch thread apply
as above.

Batches (B = the global batch size // process count):

    "image"        uint8 (B, H, W, 3)
    "label"        int32 (B,)
    with text = a Tokenizer (`jaxdiff.text.tokenizers`):
    "tokens"       int32 (B, L)        one caption per image, tokenized (`tokenize`)
    "mask"         bool (B, L)         True on the caption's tokens and EOS
    with text = "embeddings" (records with precomputed text-encoder outputs):
    "embeddings"   float32 (B, L, D)
    "mask"         bool (B, L)
    with a mixing stream (cold diffusion):
    "mix_image"    uint8 (B, H, W, 3)

With several captions, the one an image carries in an epoch is drawn from (seed, epoch, index)
(`jaxdiff.data.captions`). A record is skipped, counted and reported like an unusable image when
text is wanted and it has no usable caption (none, empty, not UTF-8) or no embeddings; a caption
longer than the tokenizer's L - 1 tokens is truncated, kept and counted in the epoch's summary
(the cached path reports once, after its preprocessing, counting every truncated caption).

The iterator is a grain `DatasetIterator`: `get_state()` / `set_state()` give a JSON-able dict, and
`grain.checkpoint.CheckpointSave(iterator)` / `CheckpointRestore(iterator)` put it into an orbax
CheckpointManager, so a resumed run continues with exactly the batches (and captions) it would
have seen.
"""

import dataclasses
import functools
import logging

import grain
import jax.numpy as jnp
import numpy as np
from absl import flags

from jaxdiff.data import cached
from jaxdiff.data.captions import TextFields, UnusableCaption, check_text_data
from jaxdiff.data.config import validate_data_config
from jaxdiff.data.images import (UnusableImage, check_size, crop_resize_flip, decode_image,
                                 to_rgb_uint8)
from jaxdiff.data.skips import SkipReport

logger = logging.getLogger(__name__)

ELEMENTS_IN_FLIGHT_PER_THREAD = 4


class ShardIndex(grain.transforms.MapWithIndex):
    """record -> (its index in the shard, record): the index captions are drawn by."""

    def __init__(self, length):
        self._length = length

    def map_with_index(self, index, record):
        return index % self._length, record


class DecodeRecord(grain.transforms.MapWithIndex):
    """(shard index, record) at a stream position -> {"image": (H, W, 3) uint8, "label": int32,
    **text fields}, or None for an unusable image or (with text) caption.

    `text_of(record, epoch, shard index)` gives (text fields, number of truncated captions),
    e.g. `captions.TextFields.draw`; None = no text fields.
    """

    def __init__(self, report, resolution, allow_upscale, text_of=None):
        self.report = report
        self._resolution = resolution
        self._allow_upscale = allow_upscale
        self._text_of = text_of

    def map_with_index(self, position, indexed):
        index, record = indexed
        epoch = position // self.report.epoch_length
        self.report.summarize_before(epoch)
        image = record["image"]
        try:
            fields, truncated = self._text_of(record, epoch, index) if self._text_of else ({}, 0)
            image = decode_image(image) if isinstance(image, bytes) else to_rgb_uint8(image)
            check_size(image, self._resolution, self._allow_upscale)
        except UnusableCaption as error:
            self.report.skip(epoch, record["name"], error, kind="caption")
            return None
        except UnusableImage as error:
            self.report.skip(epoch, record["name"], error)
            return None
        self.report.truncate(epoch, truncated)
        return {"image": image, "label": np.int32(record["label"]), **fields}


class CropResizeFlip(grain.transforms.RandomMap):
    """Square crop, antialiased resize and random flip (`images.crop_resize_flip`)."""

    def __init__(self, options):
        self._options = options

    def random_map(self, element, rng):
        options = self._options
        image = crop_resize_flip(
            element["image"],
            resolution=options.resolution,
            crop=options.crop,
            scale=options.crop_scale,
            allow_upscale=options.allow_upscale,
            flip=options.flip,
            rng=rng,
        )
        return {**element, "image": image}


def _every_caption(text_fields, record, epoch, index):
    """The cached path's text_of: the fields of all the record's captions and its shard index."""
    del epoch
    fields, truncated = text_fields.every(record)
    return {"text": fields, "shard_index": index}, truncated


def _preprocess_once(shard, options, report, read_options, text_fields):
    """Decodes, centre-crops and resizes every image of the shard once (tokenizing all its
    captions when `text_fields`), skipping (and reporting) the unusable ones: (images
    (M, r, r, 3) uint8, labels (M,) int32, cached.CachedText or None)."""
    centre_crop = dataclasses.replace(options, crop="center", flip=False)
    text_of = None if text_fields is None else functools.partial(_every_caption, text_fields)
    dataset = shard.map_with_index(ShardIndex(len(shard))).map_with_index(
        DecodeRecord(report, options.resolution, options.allow_upscale, text_of))
    dataset = dataset.random_map(CropResizeFlip(centre_crop), seed=0)  # no randomness is drawn
    elements = list(dataset.to_iter_dataset(read_options))
    report.summarize_before(1)
    images = np.stack([element["image"] for element in elements])
    logger.info("%s: %d images of %dx%d px preprocessed once and kept in memory (%.1f MiB).",
                report.dataset_name, len(images), options.resolution, options.resolution,
                images.nbytes / 2**20)
    text = None
    if text_fields is not None:
        text = cached.stack_text([element["text"] for element in elements],
                                 [element["shard_index"] for element in elements],
                                 text_fields.seed)
    return images, np.array([element["label"] for element in elements], np.int32), text


def _derived_seeds(seed, process_index):
    """Three 32-bit seeds (shuffle, augmentation, caption choice) for this process from the run
    seed."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The data seed must be a non-negative integer, got {seed!r}.")
    seeds = np.random.SeedSequence([int(seed), process_index]).generate_state(3)
    return tuple(int(value) for value in seeds)


def make_dataset(records, options, *, name, batch_size, seed, process_index=0, process_count=1,
                 shuffle=True, num_workers=0, prefetch=2, text=None):
    """The grain IterDataset of batches of this process (see the module docstring); `text` as
    in create_iterator (not checked against the records here)."""
    shuffle_seed, augment_seed, caption_seed = _derived_seeds(seed, process_index)
    text_fields = None if text is None else TextFields(text, caption_seed)
    shard = grain.MapDataset.source(records)[process_index::process_count]
    report = SkipReport(len(shard), name)
    # Four elements in flight per read thread keep the threads busy. The buffer does not grow
    # with the batch: grain 0.2.18 walks the ready part of it on every element it hands out.
    read_options = grain.ReadOptions(
        num_threads=options.read_threads,
        prefetch_buffer_size=ELEMENTS_IN_FLIGHT_PER_THREAD * options.read_threads,
    )
    if options.cache:
        images, labels, cached_text = _preprocess_once(shard, options, report, read_options,
                                                       text_fields)
        dataset = cached.gathered_batches(
            images, labels, batch_size=batch_size, shuffle_seed=shuffle_seed,
            flip_seed=augment_seed, shuffle=shuffle, flip=options.flip, text=cached_text)
    else:
        dataset = shard.map_with_index(ShardIndex(len(shard)))
        dataset = dataset.shuffle(seed=shuffle_seed) if shuffle else dataset
        dataset = dataset.repeat()
        dataset = dataset.map_with_index(DecodeRecord(
            report, options.resolution, options.allow_upscale,
            None if text_fields is None else text_fields.draw))
        dataset = dataset.random_map(CropResizeFlip(options), seed=augment_seed)
        dataset = dataset.to_iter_dataset(read_options).batch(batch_size, drop_remainder=True)
    if num_workers:
        if not flags.FLAGS.is_parsed():
            # grain's workers read absl flags; outside an absl app (a notebook, a test) use
            # defaults.
            flags.FLAGS.mark_as_parsed()
        return dataset.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=num_workers, per_worker_buffer_size=max(prefetch, 1)
            )
        )
    if prefetch:
        return grain.experimental.ThreadPrefetchIterDataset(dataset, prefetch_buffer_size=prefetch)
    return dataset


def create_iterator(data_config, *, global_batch_size, seed, process_index=0, process_count=1,
                    mix_config=None, validated=None, mix_validated=None, text=None):
    """Returns this process's batch iterator (validating the data config unless `validated`,
    what validate_data_config returned for it, is given).

    Yields {"image": uint8 (B, resolution, resolution, 3), "label": int32 (B,)} with
    B = global_batch_size // process_count, forever, plus the text fields of `text`: None (no
    text), a Tokenizer ("tokens" int32 (B, L), "mask" bool (B, L)) or "embeddings"
    ("embeddings" float32 (B, L, D), "mask" bool (B, L)); see the module docstring.
    `check_text_data` fails first when the dataset lacks what `text` asks for. With
    `mix_config` (cold diffusion's mixing degradation), every batch also carries "mix_image": a
    batch of a second, independent stream read with its own data config (validated as
    mix_validated) and seed + 1, without text, and zipped to the first, so one iterator state
    (saved with the checkpoint) covers both. The returned grain
    DatasetIterator has get_state()/set_state(); see the module docstring for orbax
    checkpointing.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count}).")
    common = dict(global_batch_size=global_batch_size, process_index=process_index,
                  process_count=process_count)
    dataset = _stream(data_config, seed=seed, validated=validated, text=text, **common)
    if mix_config is not None:
        check_mix_config(data_config, mix_config)
        mix_stream = _stream(mix_config, seed=seed + 1, validated=mix_validated, text=None,
                             **common)
        dataset = grain.experimental.ZipIterDataset([dataset, mix_stream]).map(_attach_mix)
    return iter(dataset)


def check_mix_config(data_config, mix_config) -> None:
    """The mixing stream's images have the side of the first stream's."""
    if mix_config.resolution != data_config.resolution:
        raise ValueError(f"config.mix_data.resolution {mix_config.resolution} must equal "
                         f"data.resolution {data_config.resolution}.")


def read_reference_images(data_config, num_images: int, *, seed: int, mix_config=None,
                          validated=None, mix_validated=None) -> dict:
    """num_images training images {"image": uint8 (N, H, W, 3)[, "mix_image": ...]} of the data
    config (and the mixing stream), the same on every process (each reads as process 0 of 1):
    what a method's sampler starts from (methods.base.Method.reference_images). `validated` /
    `mix_validated` as in create_iterator."""
    iterator = create_iterator(data_config, global_batch_size=num_images, seed=seed,
                               mix_config=mix_config, validated=validated,
                               mix_validated=mix_validated)
    try:
        batch = next(iterator)
    finally:
        iterator.close()
    return {key: np.asarray(batch[key]) for key in ("image", "mix_image") if key in batch}


def _stream(data_config, *, global_batch_size, seed, process_index, process_count, validated,
            text):
    """The batch IterDataset of one data config for this process."""
    records, spec, options = validated or validate_data_config(
        data_config, global_batch_size=global_batch_size, process_count=process_count
    )
    check_text_data(spec, text)
    return make_dataset(
        records,
        options,
        name=spec.name,
        batch_size=global_batch_size // process_count,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        shuffle=data_config.shuffle,
        num_workers=data_config.num_workers,
        prefetch=data_config.prefetch,
        text=text,
    )


def _attach_mix(pair):
    batch, mix_batch = pair
    return {**batch, "mix_image": mix_batch["image"]}


def to_model_input(images, dtype=jnp.float32):
    """uint8 images in [0, 255] -> floats in [-1, 1]: x = u / 127.5 - 1 (jnp, usable under jit)."""
    return jnp.asarray(images).astype(dtype) / 127.5 - 1.0
