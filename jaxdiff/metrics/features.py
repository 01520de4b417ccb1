"""Features of images for the metrics, computed the same way whatever the batch or the mesh.

A `FeatureNetwork` maps uint8 images (N, H, W, 3) to {"features": (N, D)} and, when it has a
classifier layer, "logits" (Inception Score). An `Extractor` runs it jitted in fixed batches of
`batch_size` images rounded up to a multiple of the device count, the last one padded (padding
rows dropped), split over every device of the mesh; every image's features depend on that
image only, so statistics do not depend on the batch size or the device count.
"""

import dataclasses
from typing import Any, Callable, Iterable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxdiff.metrics import frechet, inception


@dataclasses.dataclass(frozen=True)
class FeatureNetwork:
    name: str                         # recorded with reference statistics
    apply: Callable[[Any, jax.Array], dict]
    params: Any
    has_logits: bool
    dimension: int                    # features per image


def inception_network(weights, preprocessing: str = "tf") -> FeatureNetwork:
    """The FID Inception with `weights` (inception_weights.load_weights): pool3 features."""
    inception.check_preprocessing(preprocessing)
    net = inception.FIDInceptionV3(logits=weights.has_logits)

    def apply(params, images):
        out = net.apply({"params": params}, inception.preprocess(images, preprocessing))
        return {"features": out["pool3"], **({"logits": out["logits"]} if "logits" in out
                                             else {})}
    return FeatureNetwork(f"inception-2015-12-05/{preprocessing}", apply, weights.params,
                          weights.has_logits, inception.FEATURES)


class Extractor:
    """Jitted, batch-sharded feature extraction over `mesh` (default: all devices, one axis)."""

    def __init__(self, network: FeatureNetwork, batch_size: int = 64, mesh=None):
        mesh = mesh or jax.make_mesh((jax.device_count(),), ("batch",),
                                     axis_types=(jax.sharding.AxisType.Auto,))
        if batch_size <= 0:
            raise ValueError(f"The metric batch size must be positive, got {batch_size}.")
        devices = mesh.devices.size
        self.network, self.batch_size = network, -(-batch_size // devices) * devices
        self.images = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
        replicated = NamedSharding(mesh, PartitionSpec())
        self.params = jax.device_put(network.params, replicated)
        # replicated out: every process of a multi-host run reads all features
        self.fn = jax.jit(network.apply, in_shardings=(replicated, self.images),
                          out_shardings=replicated)

    def batches(self, images: np.ndarray) -> Iterable[dict]:
        """{"features", "logits"?} as numpy, batch by batch, for uint8 images (N, H, W, 3)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"Metric features need uint8 RGB images (N, H, W, 3), got "
                             f"{images.dtype} {images.shape}.")
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            real = len(batch)
            if real < self.batch_size:
                batch = np.concatenate([batch, np.zeros((self.batch_size - real,)
                                                        + batch.shape[1:], np.uint8)])
            out = self.fn(self.params, jax.device_put(batch, self.images))
            yield {key: np.asarray(value)[:real] for key, value in out.items()}

    def features(self, images) -> dict:
        """{"features": (N, D), "logits": (N, C)?} of all images."""
        parts = list(self.batches(images))
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def statistics(self, images, keep_features: int = 0) -> frechet.Statistics:
        accumulator = frechet.Accumulator(keep_features)
        for part in self.batches(images):
            accumulator.add(part["features"])
        return accumulator.statistics()

