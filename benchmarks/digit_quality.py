"""A quality score the CPU can afford for samples of the built-in digits, which the trained-sampler
benchmark's saved tables were measured with (training runs report jaxdiff.metrics' fd_builtin,
the Frechet distance in the shipped network's features, instead).

    FD8        the Frechet distance (the FID formula, Heusel et al. 2017)
                   ||mu_s - mu_r||^2 + Tr(S_s + S_r - 2 (S_s S_r)^(1/2))
               between the samples and all 1797 digits in a 64-d feature space: the grey level
               (channel mean, in [0, 1]) area-averaged to the digits' native 8x8. Lower is
               better; it sees blur, blank images, wrong stroke statistics and missing modes.
    accuracy   the share of samples a logistic-regression digit classifier, fitted on the same
               features of every digit (held-out accuracy about 96%), reads as the label they
               were sampled for (class-conditional models).
    shares     the share of samples the classifier puts in each digit class (coverage: cold
               diffusion's unconditional generation should give each about 10%).
The reference images go through the project's own reader and resize (as training sees them),
at the resolution of the samples.
"""

import functools

import numpy as np

from jaxdiff.data.builtin import open_builtin
from jaxdiff.data.images import crop_resize_flip
from jaxdiff.metrics import frechet

NATIVE_SIDE = 8


def features(images) -> np.ndarray:
    """(N, 64) grey levels in [0, 1] of (N, H, W, C) images (uint8, or floats in [-1, 1]),
    area-averaged to 8x8; H and W must be multiples of 8."""
    images = np.asarray(images)
    grey = (images.astype(np.float64) / 255.0 if images.dtype == np.uint8
            else (np.clip(images.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0).mean(axis=-1)
    n, height, width = grey.shape
    if height % NATIVE_SIDE or width % NATIVE_SIDE:
        raise ValueError(f"Digit features need sides that are multiples of 8, got "
                         f"{height}x{width}.")
    blocks = grey.reshape(n, NATIVE_SIDE, height // NATIVE_SIDE, NATIVE_SIDE,
                          width // NATIVE_SIDE)
    return blocks.mean(axis=(2, 4)).reshape(n, -1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The FID formula (jaxdiff.metrics.frechet) between two feature sets (N, D)."""
    return frechet.frechet_distance(frechet.statistics(a), frechet.statistics(b))


@functools.lru_cache(maxsize=None)
def reference(resolution: int):
    """(features, labels) of every built-in digit as the pipeline reads it at `resolution`."""
    records, _ = open_builtin("digits")
    images = np.stack([crop_resize_flip(records[i]["image"], resolution=resolution,
                                        crop="center", scale=(1.0, 1.0), allow_upscale=True,
                                        flip=False, rng=None) for i in range(len(records))])
    labels = np.array([records[i]["label"] for i in range(len(records))])
    return features(images), labels


@functools.lru_cache(maxsize=None)
def classifier(resolution: int):
    from sklearn.linear_model import LogisticRegression

    reference_features, labels = reference(resolution)
    return LogisticRegression(max_iter=5000).fit(reference_features, labels)


def score(images, labels=None) -> dict:
    """{"fd8", "shares" (10), and "accuracy" when labels are given} of samples (N, H, W, C)."""
    resolution = np.asarray(images).shape[1]
    sample_features = features(images)
    reference_features, _ = reference(resolution)
    predicted = classifier(resolution).predict(sample_features)
    result = {"fd8": frechet_distance(sample_features, reference_features),
              "shares": np.bincount(predicted, minlength=10) / len(predicted)}
    if labels is not None:
        result["accuracy"] = float(np.mean(predicted == np.asarray(labels)))
    return result
