"""Batches gathered from images held in memory: the pipeline's path for `data.cache`.

When every image is centre-cropped, its decode, crop and resize give the same pixels in every
epoch, so `pipeline.make_dataset` does them once for this process's shard and hands the result
here as one uint8 array of M images. Batches are then rows of that array:

    stream position p = b * B + j  (batch b, row j)  ->  epoch e = p // M, offset i = p % M
    image of (b, j) = images[perm_e[i]],  perm_e = a permutation of range(M) drawn from the
                      generator seeded with (shuffle seed, e)  (the identity without shuffling)
    flip of (b, j)  = u_j < 1/2,  u = uniform(B) from the generator seeded with (flip seed, b)

so every epoch visits each image of the shard exactly once in a new order, and batch b depends
only on (seeds, b). The batches are a grain MapDataset over b, whose iterator state (the next b)
is checkpointed like the per-image path's.

Why: for small images the per-image grain path costs about 60 us of host CPU per image (grain's
per-element bookkeeping and a Pillow resize), which on a CPU-only machine is taken from the train
step; gathering a batch costs about 1 us per image.
"""

import sys

import grain
import numpy as np


class GatherBatch(grain.transforms.Map):
    """batch index b -> {"image": (B, H, W, 3) uint8, "label": (B,) int32} (module docstring)."""

    def __init__(self, images, labels, *, batch_size, shuffle_seed, flip_seed, shuffle, flip):
        self._images = images
        self._labels = labels
        self._batch_size = batch_size
        self._shuffle_seed = shuffle_seed
        self._flip_seed = flip_seed
        self._shuffle = shuffle
        self._flip = flip
        self._permutations = {}  # the latest epochs' permutations, by epoch

    def _permutation(self, epoch):
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.clear()
            rng = np.random.default_rng([self._shuffle_seed, epoch])
            self._permutations[epoch] = rng.permutation(len(self._images))
        return self._permutations[epoch]

    def rows(self, batch_index):
        """The image rows of batch `batch_index`."""
        positions = batch_index * self._batch_size + np.arange(self._batch_size)
        epochs, offsets = np.divmod(positions, len(self._images))
        if not self._shuffle:
            return offsets
        rows = np.empty_like(offsets)
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            rows[in_epoch] = self._permutation(int(epoch))[offsets[in_epoch]]
        return rows

    def map(self, batch_index):
        rows = self.rows(int(batch_index))
        images = self._images[rows]
        if self._flip:
            flips = np.random.default_rng([self._flip_seed, int(batch_index)]).random(len(rows))
            images = np.where((flips < 0.5)[:, None, None, None], images[:, :, ::-1], images)
        return {"image": images, "label": self._labels[rows]}


def gathered_batches(images, labels, *, batch_size, shuffle_seed, flip_seed, shuffle, flip):
    """The endless grain IterDataset of batches gathered from `images` (M, H, W, 3) uint8 and
    `labels` (M,) int32, read in the calling thread."""
    gather = GatherBatch(images, labels, batch_size=batch_size, shuffle_seed=shuffle_seed,
                         flip_seed=flip_seed, shuffle=shuffle, flip=flip)
    in_this_thread = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    return grain.MapDataset.range(sys.maxsize).map(gather).to_iter_dataset(in_this_thread)
