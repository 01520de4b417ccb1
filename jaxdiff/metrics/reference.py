"""Reference statistics of a configured dataset (built-in, folder, tfds, ...), computed once and
cached, or read from a given `.npz` (ours, or an ADM reference batch).

The reference images are the training images as the pipeline reads them (crop and resize of
config.data, no flips), `num_images` of them (at most the dataset's size) in the pipeline's
shuffled order for the run's seed. The cache file is
<cache>/reference/<dataset>_<key>.npz, key = SHA-256 of the data config, the image count, the
seed and the feature network's name, so any change of those computes new statistics.

    python -m jaxdiff.metrics.reference --config=configs/ddpm.py:cifar10 [--out=ref.npz]
        computes them ahead of a run (the same file the run would otherwise make).
"""

import hashlib
import json
import os

import numpy as np
from absl import logging

from jaxdiff import data
from jaxdiff.metrics import frechet
from jaxdiff.metrics.features import Extractor
from jaxdiff.metrics.inception_weights import cache_dir

READ_BATCH = 256
# Precision/recall keep this many reference features (the ADM evaluator uses 10k-50k).
KEPT_FEATURES = 10_000


def reference_data_config(data_config):
    """config.data without random flips (the reference is the data, not its augmentation)."""
    config = data_config.copy_and_resolve_references()
    with config.unlocked():
        config.flip = False
    return config


def cache_path(data_config, num_images: int, seed: int, network_name: str) -> str:
    description = json.dumps({"data": data_config.to_dict(), "num_images": num_images,
                              "seed": seed, "network": network_name}, sort_keys=True,
                             default=str)
    key = hashlib.sha256(description.encode()).hexdigest()[:16]
    name = data_config.name.replace(":", "_").replace("/", "_")[-40:]
    return os.path.join(cache_dir(), "reference", f"{name}_{key}.npz")


def dataset_statistics(data_config, num_images: int, seed: int,
                       extractor: Extractor) -> frechet.Statistics:
    """Statistics of min(num_images, dataset size) images of `data_config`, read in batches."""
    config = reference_data_config(data_config)
    validated = data.validate_data_config(config, global_batch_size=1)
    count = min(num_images, validated[1].num_examples)
    batch = min(READ_BATCH, count)
    iterator = data.create_iterator(config, global_batch_size=batch, seed=seed,
                                    validated=validated)
    accumulator, done = frechet.Accumulator(KEPT_FEATURES), 0
    try:
        while done < count:
            images = np.asarray(next(iterator)["image"])[:count - done]
            for part in extractor.batches(images):
                accumulator.add(part["features"])
            done += len(images)
    finally:
        iterator.close()
    return accumulator.statistics()


def reference_statistics(eval_config, data_config, seed: int,
                         extractor: Extractor) -> frechet.Statistics:
    """eval_config.reference (a .npz) if set, else the cached statistics of data_config."""
    if eval_config.reference:
        stats, images = frechet.load_statistics(eval_config.reference)
        if stats.mu.shape[0] != extractor.network.dimension:
            raise ValueError(f"config.eval.reference {eval_config.reference} holds "
                             f"{stats.mu.shape[0]}-d statistics, but the "
                             f"{extractor.network.name} features are "
                             f"{extractor.network.dimension}-d.")
        if stats.features is None and images is not None:
            stats.features = extractor.features(images[:KEPT_FEATURES])["features"]
        return stats
    path = cache_path(data_config, eval_config.reference_images, seed, extractor.network.name)
    if os.path.exists(path):
        return frechet.load_statistics(path)[0]
    logging.info("Computing reference statistics of %s (%s features) into %s.",
                 data_config.name, extractor.network.name, path)
    stats = dataset_statistics(data_config, eval_config.reference_images, seed, extractor)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    frechet.save_statistics(temporary, stats)
    os.replace(temporary, path)
    return stats



def main(argv) -> None:
    """python -m jaxdiff.metrics.reference --config=CONFIG[:preset] [--out=FILE.npz]
    [--config.eval.reference_images=N ...]: the reference statistics of config.data with the
    config's metric network, written to --out (default: the cache file training uses)."""
    del argv
    from jaxdiff.metrics.evaluate import feature_network

    config = _CONFIG.value
    extractor = Extractor(feature_network(config.eval, config.data), config.eval.batch_size)
    stats = dataset_statistics(config.data, config.eval.reference_images, config.seed,
                               extractor)
    out = _OUT.value or cache_path(config.data, config.eval.reference_images, config.seed,
                                   extractor.network.name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    frechet.save_statistics(out, stats)
    print(f"Wrote the {extractor.network.name} statistics of {stats.count} images of "
          f"{config.data.name} to {out}.")


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:preset].")
    _OUT = flags.DEFINE_string("out", None, "Output .npz (default: the cache file).")
    flags.mark_flag_as_required("config")
    app.run(main)
