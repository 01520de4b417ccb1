"""The grain pipeline: shard, shuffle, repeat, decode (skipping bad images), crop, batch, prefetch.

    records[process_index::process_count]    this process's shard (disjoint, union = the epoch)
      .shuffle(seed)                         a new permutation every epoch (grain index_shuffle)
      .repeat()                              endless; epoch = index // shard length
      .map_with_index(DecodeRecord)          RGB uint8, or None (skipped, counted, reported)
      .random_map(CropResizeFlip, seed)      per-element rng from (seed, index): deterministic
      .to_iter_dataset(read threads) .batch(local batch, drop_remainder)
      .mp_prefetch(workers) or a prefetch thread

With data.cache (on by default for the small built-in digits and faces) every image of the shard is
decoded, centre-cropped and resized once, and batches are gathered from the resulting array
(`jaxdiff.data.cached`); workers and the prefetch thread apply as above.

Iterating yields {"image": uint8 (B, H, W, 3), "label": int32 (B,)}. The iterator is a grain
`DatasetIterator`: `get_state()` / `set_state()` give a JSON-able dict, and
`grain.checkpoint.CheckpointSave(iterator)` / `CheckpointRestore(iterator)` put it into an orbax
CheckpointManager, so a resumed run continues with exactly the batches it would have seen.
"""

import dataclasses
import logging
import threading

from absl import flags
import grain
import jax.numpy as jnp
import numpy as np

from jaxdiff.data import cached
from jaxdiff.data.config import validate_data_config
from jaxdiff.data.images import (
    UnusableImage,
    check_size,
    crop_resize_flip,
    decode_image,
    to_rgb_uint8,
)

logger = logging.getLogger(__name__)

ELEMENTS_IN_FLIGHT_PER_THREAD = 4


class SkipReport:
    """Counts skipped images per epoch; logs each bad record once and one summary per epoch.

    Each reader (the training process, or each grain worker process) keeps its own report. An
    epoch's summary is logged when the reader first touches a record of a later epoch.
    """

    def __init__(self, epoch_length, dataset_name):
        self.epoch_length = epoch_length
        self.dataset_name = dataset_name
        self.skipped = {}
        self._named = set()
        self._summarized_below = 0
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def skip(self, epoch, name, reason):
        with self._lock:
            self.skipped[epoch] = self.skipped.get(epoch, 0) + 1
            first_time = name not in self._named
            self._named.add(name)
            if self.skipped[epoch] == self.epoch_length:
                raise ValueError(
                    f"Every one of the {self.epoch_length} images in this shard of "
                    f"{self.dataset_name} is unusable (last: {name}: {reason})."
                )
        if first_time:
            logger.warning("Skipping image %s of %s: %s.", name, self.dataset_name, reason)

    def summarize_before(self, epoch):
        with self._lock:
            finished = [e for e in sorted(self.skipped) if self._summarized_below <= e < epoch]
            self._summarized_below = max(self._summarized_below, epoch)
        for done in finished:
            logger.warning(
                "Epoch %d of %s: skipped %d unusable image(s) of the %d in this shard.",
                done, self.dataset_name, self.skipped[done], self.epoch_length,
            )


class DecodeRecord(grain.transforms.MapWithIndex):
    """record -> {"image": (H, W, 3) uint8, "label": int32}, or None for an unusable image."""

    def __init__(self, report, resolution, allow_upscale):
        self.report = report
        self._resolution = resolution
        self._allow_upscale = allow_upscale

    def map_with_index(self, index, record):
        epoch = index // self.report.epoch_length
        self.report.summarize_before(epoch)
        image = record["image"]
        try:
            image = decode_image(image) if isinstance(image, bytes) else to_rgb_uint8(image)
            check_size(image, self._resolution, self._allow_upscale)
        except UnusableImage as error:
            self.report.skip(epoch, record["name"], error)
            return None
        return {"image": image, "label": np.int32(record["label"])}


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
        return {"image": image, "label": element["label"]}


def _preprocess_once(shard, options, report, read_options):
    """Decodes, centre-crops and resizes every image of the shard once, skipping (and reporting)
    the unusable ones: (images (M, r, r, 3) uint8, labels (M,) int32)."""
    centre_crop = dataclasses.replace(options, crop="center", flip=False)
    dataset = shard.map_with_index(DecodeRecord(report, options.resolution, options.allow_upscale))
    dataset = dataset.random_map(CropResizeFlip(centre_crop), seed=0)  # no randomness is drawn
    elements = list(dataset.to_iter_dataset(read_options))
    report.summarize_before(1)
    images = np.stack([element["image"] for element in elements])
    logger.info("%s: %d images of %dx%d px preprocessed once and kept in memory (%.1f MiB).",
                report.dataset_name, len(images), options.resolution, options.resolution,
                images.nbytes / 2**20)
    return images, np.array([element["label"] for element in elements], np.int32)


def _derived_seeds(seed, process_index):
    """Two 32-bit seeds (shuffle, augmentation) for this process from the run seed."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The data seed must be a non-negative integer, got {seed!r}.")
    shuffle_seed, augment_seed = np.random.SeedSequence([int(seed), process_index]).generate_state(2)
    return int(shuffle_seed), int(augment_seed)


def make_dataset(records, options, *, name, batch_size, seed, process_index=0, process_count=1,
                 shuffle=True, num_workers=0, prefetch=2):
    """The grain IterDataset of batches of this process (see the module docstring)."""
    shuffle_seed, augment_seed = _derived_seeds(seed, process_index)
    shard = grain.MapDataset.source(records)[process_index::process_count]
    report = SkipReport(len(shard), name)
    # Four elements in flight per read thread keep the threads busy. The buffer does not grow
    # with the batch: grain 0.2.18 walks the ready part of it on every element it hands out.
    read_options = grain.ReadOptions(
        num_threads=options.read_threads,
        prefetch_buffer_size=ELEMENTS_IN_FLIGHT_PER_THREAD * options.read_threads,
    )
    if options.cache:
        images, labels = _preprocess_once(shard, options, report, read_options)
        dataset = cached.gathered_batches(
            images, labels, batch_size=batch_size, shuffle_seed=shuffle_seed,
            flip_seed=augment_seed, shuffle=shuffle, flip=options.flip)
    else:
        dataset = shard.shuffle(seed=shuffle_seed) if shuffle else shard
        dataset = dataset.repeat()
        dataset = dataset.map_with_index(
            DecodeRecord(report, options.resolution, options.allow_upscale)
        )
        dataset = dataset.random_map(CropResizeFlip(options), seed=augment_seed)
        dataset = dataset.to_iter_dataset(read_options).batch(batch_size, drop_remainder=True)
    if num_workers:
        if not flags.FLAGS.is_parsed():
            # grain's workers read absl flags; outside an absl app (a notebook, a test) use defaults.
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
                    mix_config=None, validated=None, mix_validated=None):
    """Returns this process's batch iterator (validating the data config unless `validated`,
    what validate_data_config returned for it, is given).

    Yields {"image": uint8 (B, resolution, resolution, 3), "label": int32 (B,)} with
    B = global_batch_size // process_count, forever. With `mix_config` (cold diffusion's mixing
    degradation), every batch also carries "mix_image": a batch of a second, independent stream
    read with its own data config (validated as mix_validated) and seed + 1 and zipped to the
    first, so one iterator state (saved with the checkpoint) covers both. The returned grain
    DatasetIterator has get_state()/set_state(); see the module docstring for orbax
    checkpointing.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count}).")
    common = dict(global_batch_size=global_batch_size, process_index=process_index,
                  process_count=process_count)
    dataset = _stream(data_config, seed=seed, validated=validated, **common)
    if mix_config is not None:
        check_mix_config(data_config, mix_config)
        mix_stream = _stream(mix_config, seed=seed + 1, validated=mix_validated, **common)
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


def _stream(data_config, *, global_batch_size, seed, process_index, process_count, validated):
    """The batch IterDataset of one data config for this process."""
    records, spec, options = validated or validate_data_config(
        data_config, global_batch_size=global_batch_size, process_count=process_count
    )
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
    )


def _attach_mix(pair):
    batch, mix_batch = pair
    return {**batch, "mix_image": mix_batch["image"]}


def to_model_input(images, dtype=jnp.float32):
    """uint8 images in [0, 255] -> floats in [-1, 1]: x = u / 127.5 - 1 (jnp, usable under jit)."""
    return jnp.asarray(images).astype(dtype) / 127.5 - 1.0
