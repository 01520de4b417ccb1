"""Batches gathered from images held in memory: the pipeline's path for `data.cache`.

When every image is centre-cropped, its decode, crop and resize give the same pixels in every
epoch, so `pipeline.make_dataset` does them once for this process's shard and hands the result
here as one uint8 array of M images. Batches are then rows of that array:

    stream position p = b * B + j  (batch b, row j)  ->  epoch e = p // M, offset i = p % M
    image of (b, j) = images[perm_e[i]],  perm_e = a permutation of range(M) drawn from the
                      generator seeded with (shuffle seed, e)  (the identity without shuffling)
    flip of (b, j)  = u_j < 1/2,  u = uniform(B) from the generator seeded with (flip seed, b)

    text of (b, j)  = caption k of image perm_e[i], k = captions.caption_choice(caption seed, e,
                      its index in the shard, its number of captions)

so every epoch visits each image of the shard exactly once in a new order, and batch b depends
only on (seeds, b). Captions are tokenized once too: the text fields of every caption are kept
as (M, K, ...) arrays, K the most captions of an image (`CachedText`). The batches are a grain
MapDataset over b, whose iterator state (the next b) is checkpointed like the per-image path's.

Why: for small images the per-image grain path costs about 60 us of host CPU per image (grain's
per-element bookkeeping and a Pillow resize), which on a CPU-only machine is taken from the train
step; gathering a batch costs about 1 us per image.
"""

import sys
from typing import NamedTuple

import grain
import numpy as np

from jaxdiff.data.captions import caption_choice


class CachedText(NamedTuple):
    """The text fields of every caption of the M cached images."""

    fields: dict          # name -> (M, K, ...) array; image m's captions are rows [:counts[m]]
    counts: np.ndarray    # (M,) int: captions per image
    indices: np.ndarray   # (M,) int: each image's index in the shard
    seed: int             # the caption seed


def stack_text(per_image, indices, seed):
    """CachedText of per-image field dicts, each field (K_m, ...) for the image's K_m captions."""
    counts = np.array([len(next(iter(fields.values()))) for fields in per_image])
    stacked = {}
    for name, first in per_image[0].items():
        stacked[name] = np.zeros((len(per_image), counts.max()) + first.shape[1:], first.dtype)
        for row, fields in enumerate(per_image):
            stacked[name][row, :counts[row]] = fields[name]
    return CachedText(stacked, counts, np.asarray(indices), seed)


class GatherBatch(grain.transforms.Map):
    """batch index b -> {"image": (B, H, W, 3) uint8, "label": (B,) int32, **text fields}
    (module docstring)."""

    def __init__(self, images, labels, *, batch_size, shuffle_seed, flip_seed, shuffle, flip,
                 text=None):
        self._images = images
        self._labels = labels
        self._batch_size = batch_size
        self._shuffle_seed = shuffle_seed
        self._flip_seed = flip_seed
        self._shuffle = shuffle
        self._flip = flip
        self._text = text
        self._permutations = {}  # the latest epochs' permutations, by epoch

    def _permutation(self, epoch):
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.clear()
            rng = np.random.default_rng([self._shuffle_seed, epoch])
            self._permutations[epoch] = rng.permutation(len(self._images))
        return self._permutations[epoch]

    def epochs_and_rows(self, batch_index):
        """The epoch and the image row of each element of batch `batch_index`."""
        positions = batch_index * self._batch_size + np.arange(self._batch_size)
        epochs, offsets = np.divmod(positions, len(self._images))
        if not self._shuffle:
            return epochs, offsets
        rows = np.empty_like(offsets)
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            rows[in_epoch] = self._permutation(int(epoch))[offsets[in_epoch]]
        return epochs, rows

    def map(self, batch_index):
        epochs, rows = self.epochs_and_rows(int(batch_index))
        images = self._images[rows]
        if self._flip:
            flips = np.random.default_rng([self._flip_seed, int(batch_index)]).random(len(rows))
            images = np.where((flips < 0.5)[:, None, None, None], images[:, :, ::-1], images)
        batch = {"image": images, "label": self._labels[rows]}
        if self._text is not None:
            text = self._text
            choices = caption_choice(text.seed, epochs, text.indices[rows], text.counts[rows])
            batch.update({name: field[rows, choices] for name, field in text.fields.items()})
        return batch


def gathered_batches(images, labels, *, batch_size, shuffle_seed, flip_seed, shuffle, flip,
                     text=None):
    """The endless grain IterDataset of batches gathered from `images` (M, H, W, 3) uint8,
    `labels` (M,) int32 and `text` (a CachedText, or None), read in the calling thread."""
    gather = GatherBatch(images, labels, batch_size=batch_size, shuffle_seed=shuffle_seed,
                         flip_seed=flip_seed, shuffle=shuffle, flip=flip, text=text)
    in_this_thread = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    return grain.MapDataset.range(sys.maxsize).map(gather).to_iter_dataset(in_this_thread)
