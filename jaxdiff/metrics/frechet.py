"""The sample-quality numbers computed from network features, and the reference-statistics file.

    FID (Heusel et al. 2017)   ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) of the
                               features' means and covariances (unbiased, N - 1), in float64.
    Inception Score (Salimans et al. 2016)
                               exp(E_x KL(p(y|x) || p(y))), p(y) the split's mean prediction,
                               averaged over `splits` equal splits (10, as published).
    Precision / recall (Kynkaanniemi et al. 2019)
                               precision: the share of generated features inside the k-NN ball
                               (radius: distance to the k-th nearest other real feature, k = 3)
                               of at least one real feature; recall: the same with the roles
                               swapped.

Statistics accumulate sums in float64 over batches, so they do not depend on the batch size.
The `.npz` layout is the ADM evaluator's (Dhariwal & Nichol 2021): `mu`, `sigma`, and here a
feature sample `features` for precision/recall; ADM's published reference batches (`arr_0`
images with `mu`, `sigma`) are read as they are, their images featurised for precision/recall.
"""

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

NEAREST_NEIGHBOURS = 3


@dataclasses.dataclass
class Statistics:
    mu: np.ndarray                              # (D,)
    sigma: np.ndarray                           # (D, D)
    features: Optional[np.ndarray] = None       # (M, D) sample for precision/recall
    count: int = 0


class Accumulator:
    """Running float64 sums of features: add batches, then statistics()."""

    def __init__(self, keep_features: int = 0):
        self.total, self.outer, self.count = 0.0, 0.0, 0
        self.keep, self.kept = keep_features, []

    def add(self, features) -> None:
        features = np.asarray(features, np.float64)
        self.total = self.total + features.sum(axis=0)
        self.outer = self.outer + features.T @ features
        self.count += len(features)
        room = self.keep - sum(len(f) for f in self.kept)
        if room > 0:
            self.kept.append(np.asarray(features[:room], np.float32))

    def statistics(self) -> Statistics:
        if self.count < 2:
            raise ValueError(f"Feature statistics need at least 2 images, got {self.count}.")
        mu = self.total / self.count
        sigma = (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        kept = np.concatenate(self.kept) if self.kept else None
        return Statistics(mu=mu, sigma=sigma, features=kept, count=self.count)


def statistics(features, keep_features: int = 0) -> Statistics:
    accumulator = Accumulator(keep_features)
    accumulator.add(features)
    return accumulator.statistics()


def frechet_distance(a: Statistics, b: Statistics) -> float:
    """The FID formula above, with Tr((S_a S_b)^(1/2)) computed as the sum of the square roots
    of the eigenvalues of S_a^(1/2) S_b S_a^(1/2) (the same eigenvalues as S_a S_b, of a
    symmetric matrix: exact also where a few images make the covariances singular, where
    scipy.linalg.sqrtm of the product warns and loses accuracy)."""
    mu_a, mu_b = np.asarray(a.mu, np.float64), np.asarray(b.mu, np.float64)
    sigma_a, sigma_b = np.asarray(a.sigma, np.float64), np.asarray(b.sigma, np.float64)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"The statistics have {mu_a.shape[0]}- and {mu_b.shape[0]}-d "
                         "features: they come from different networks.")
    values, vectors = np.linalg.eigh(sigma_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = np.clip(np.linalg.eigvalsh(root_a @ sigma_b @ root_a), 0, None)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b)
                 - 2.0 * np.sum(np.sqrt(product)))


def inception_score(logits, splits: int = 10) -> tuple:
    """(mean, std) over `splits` of exp(mean_x KL(p(y|x) || p(y))), p = softmax(logits)."""
    logits = np.asarray(logits, np.float64)
    if len(logits) < splits:
        raise ValueError(f"The Inception Score needs at least {splits} images, got "
                         f"{len(logits)}.")
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    scores = []
    for part in np.array_split(log_p, splits):
        log_marginal = scipy.special.logsumexp(part, axis=0) - np.log(len(part))
        kl = np.sum(np.exp(part) * (part - log_marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


@jax.jit
def _squared_distances(a, b):
    """||a_i - b_j||^2 (float32, via the Gram matrix, clipped at 0)."""
    gram = jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.sum(a * a, 1)[:, None] - 2 * gram + jnp.sum(b * b, 1)[None], 0.0)


def _rows(a, b, fn, chunk=1024):
    return np.concatenate([np.asarray(fn(_squared_distances(a[i:i + chunk], b)))
                           for i in range(0, len(a), chunk)])


def knn_radii(features, k: int = NEAREST_NEIGHBOURS) -> np.ndarray:
    """Squared distance of every feature to its k-th nearest other feature of the set."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii with k = {k} need more than {k} features, got "
                         f"{len(features)}.")
    features = jnp.asarray(features, jnp.float32)
    # the k+1-th smallest: the nearest is the feature itself, at distance 0
    return _rows(features, features, lambda d: jnp.sort(d, axis=1)[:, k])


def coverage(points, centres, radii) -> float:
    """Share of `points` inside at least one ball (centres, squared radii)."""
    points, centres = jnp.asarray(points, jnp.float32), jnp.asarray(centres, jnp.float32)
    radii = jnp.asarray(radii)
    inside = _rows(points, centres, lambda d: jnp.any(d <= radii[None], axis=1))
    return float(inside.mean())


def precision_recall(real, generated, k: int = NEAREST_NEIGHBOURS) -> tuple:
    """(precision, recall) of generated against real features (Kynkaanniemi et al. 2019)."""
    precision = coverage(generated, real, knn_radii(real, k))
    recall = coverage(real, generated, knn_radii(generated, k))
    return precision, recall


def save_statistics(path, stats: Statistics) -> None:
    """ADM layout: mu, sigma, and the feature sample when there is one."""
    arrays = {"mu": stats.mu, "sigma": stats.sigma, "count": np.int64(stats.count)}
    if stats.features is not None:
        arrays["features"] = stats.features
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def load_statistics(path) -> tuple:
    """(Statistics, reference images or None): a file save_statistics wrote, or an ADM
    reference batch (its `arr_0` images come back to be featurised for precision/recall)."""
    with np.load(path) as stored:
        if "mu" not in stored or "sigma" not in stored:
            raise ValueError(f"{path} holds no reference statistics (no 'mu' and 'sigma').")
        stats = Statistics(mu=stored["mu"], sigma=stored["sigma"],
                           features=stored["features"] if "features" in stored else None,
                           count=int(stored["count"]) if "count" in stored else 0)
        images = stored["arr_0"] if "arr_0" in stored else None
    return stats, images
