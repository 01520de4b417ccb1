"""Cold-diffusion sampling (Bansal et al. 2022, "Cold Diffusion", Algorithms 1 and 2) and the
generation starts x_T the paper uses.

A restorer R(x_s, t) -> x0_hat is any callable; it receives the continuous time t = s / T as a
float32 (B,) array (degradations.step_time), the shared time convention, and the degradation
D(x0, s, aux) is any callable with the interface of jaxdiff.core.degradations.

The samplers are pure and traceable: jit the whole call (with the restorer closing over the
network parameters, passed as jit arguments) and it is one program whose step loop is a
`lax.scan`, so its size does not grow with T.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdiff.core.degradations import step_time

ALGORITHMS = ("naive", "improved")


def cold_sample(restore, degrade, x_T, num_steps: int, aux=None, algorithm: str = "improved",
                rng=None, step_noise: float = 0.0):
    """Run s = T, ..., 1 with x0_hat = R(x_s, s / T) and return x_0.

        naive    (Algorithm 1; the repo's sampling_routine "default"):
            x_{s-1} = D(x0_hat, s - 1)
        improved (Algorithm 2; the repo's "x0_step_down"):
            x_{s-1} = x_s - D(x0_hat, s) + D(x0_hat, s - 1)

    The paper's argument for Algorithm 2: if D(x, s) = x + s e for a fixed e, then with
    x_s = D(x0, s) it gives x_{s-1} = D(x0, s - 1) whatever R returns; for smooth D the
    restorer's error enters only through D(x0_hat, s) - D(x0_hat, s - 1). Both algorithms end
    with D(., 0) = identity. `aux` (hole centres, the second image) goes to every D call.

    step_noise > 0 adds N(0, step_noise^2) to x_{s-1} after every step but the last (noise
    drawn from fold_in(rng, s)): with a start that carries little information (a flat colour)
    a deterministic restorer maps most starts to the same few images, and noise along the path
    keeps the samples apart (the paper's remedy for generation, sec. 5: noise added to the
    start and the steps).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"Unknown cold sampling algorithm {algorithm!r}; expected one of "
                         f"{list(ALGORITHMS)}.")
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")
    if step_noise > 0 and rng is None:
        raise ValueError("Cold sampling with step_noise > 0 draws noise and needs an rng key.")
    batch = x_T.shape[0]

    def reverse_step(x_s, step):
        steps = jnp.full((batch,), step, jnp.int32)
        x0_hat = restore(x_s, step_time(steps, num_steps))
        x_previous = degrade(x0_hat, steps - 1, aux)
        if algorithm == "improved":
            x_previous = x_s - degrade(x0_hat, steps, aux) + x_previous
        if step_noise > 0:
            noise = jax.random.normal(jax.random.fold_in(rng, step), x_s.shape, x_s.dtype)
            x_previous = x_previous + jnp.where(step > 1, step_noise, 0.0) * noise
        return x_previous, None

    x_0, _ = jax.lax.scan(reverse_step, x_T, jnp.arange(num_steps, 0, -1, dtype=jnp.int32))
    return x_0


# ----------------------------------------------------------------------------------------------
# Generation starts.


def flat_images(colours, height: int, width: int):
    """Images (B, H, W, C) filled with one colour each; colours (B, C)."""
    colours = jnp.asarray(colours)
    return jnp.broadcast_to(colours[:, None, None, :],
                            (colours.shape[0], height, width, colours.shape[1]))


def perturb(rng, x, noise_level: float):
    """x + noise_level * N(0, I): the small noise the paper adds to a generation start so that a
    deterministic sampler yields varied images (repo: gen_sample's noise_level)."""
    return x + noise_level * jax.random.normal(rng, x.shape, x.dtype)


def channel_means(images):
    """Per-image, per-channel spatial means (B, C): the points the blur-generation GMM is fit to."""
    return jnp.mean(images, axis=(1, 2))


@functools.partial(jax.jit, static_argnames=("num_samples", "height", "width"))
def blur_generation_start(rng, mixture, num_samples: int, height: int, width: int,
                          noise_level: float = 0.002):
    """x_T for generation with blur (the paper's blur generation; repo
    sample_as_a_mean_blur_torch_gmm).

    Fully blurred (final_mean) images are flat colours, so a colour per image is drawn from a
    Gaussian mixture fitted to the channel means of training images, the image is filled with it,
    and noise of std noise_level (the repo uses 0.001-0.004; 0.002 in its figures) is added.
    The other starts the paper uses are compositions of the same pieces: inpainting's fully
    masked image is perturb(rng, flat_images(zeros), level); mixing starts from an image z of the
    other dataset itself (perturb(rng, z, 0) = z, as the repo's gen_sample).
    """
    colour_key, noise_key = jax.random.split(rng)
    colours = sample_gaussian_mixture(colour_key, mixture, num_samples)
    return perturb(noise_key, flat_images(colours, height, width), noise_level)


# ----------------------------------------------------------------------------------------------
# Gaussian mixture fitted by EM (the repo fits 10 full-covariance components with torch-gmm).


class GaussianMixture(NamedTuple):
    """Mixture weights (K,), means (K, D) and full covariances (K, D, D)."""

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array


def _component_log_densities(points, mixture):
    """log N(x_n; mu_k, Sigma_k) as (N, K), through the Cholesky factor L of each Sigma_k:
    -|L^-1 (x - mu)|^2 / 2 - sum log diag L - D log(2 pi) / 2."""
    dim = points.shape[-1]
    cholesky = jnp.linalg.cholesky(mixture.covariances)
    centred = points[None, :, :] - mixture.means[:, None, :]
    whitened = jax.vmap(lambda lower, rhs: jax.scipy.linalg.solve_triangular(
        lower, rhs.T, lower=True))(cholesky, centred)
    log_det = jnp.sum(jnp.log(jnp.diagonal(cholesky, axis1=-2, axis2=-1)), axis=-1)
    log_density = (-0.5 * jnp.sum(whitened**2, axis=1) - log_det[:, None]
                   - 0.5 * dim * jnp.log(2.0 * jnp.pi))
    return log_density.T


def _maximization(points, responsibilities, reg_covar: float):
    """M-step: weights N_k / N, responsibility-weighted means and covariances (+ reg_covar I)."""
    counts = responsibilities.sum(axis=0) + 10.0 * jnp.finfo(points.dtype).eps
    means = responsibilities.T @ points / counts[:, None]
    centred = points[None, :, :] - means[:, None, :]
    covariances = (jnp.einsum("nk,kni,knj->kij", responsibilities, centred, centred)
                   / counts[:, None, None] + reg_covar * jnp.eye(points.shape[-1]))
    return GaussianMixture(counts / points.shape[0], means, covariances)


def _kmeans_plus_plus_centres(rng, points, num_components: int):
    """k-means++ seeding: each next centre drawn with probability proportional to the squared
    distance to the nearest centre chosen so far (Arthur & Vassilvitskii 2007)."""
    first_key, rest_key = jax.random.split(rng)
    centres = jnp.zeros((num_components, points.shape[-1]), points.dtype)
    centres = centres.at[0].set(points[jax.random.randint(first_key, (), 0, points.shape[0])])

    def add_centre(index, centres):
        distances = jnp.sum((points[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
        chosen = jnp.arange(num_components)[None, :] < index
        nearest = jnp.min(jnp.where(chosen, distances, jnp.inf), axis=1)
        pick = jax.random.categorical(jax.random.fold_in(rest_key, index), jnp.log(nearest))
        return centres.at[index].set(points[pick])

    return jax.lax.fori_loop(1, num_components, add_centre, centres)


@functools.partial(jax.jit, static_argnames=("num_components", "num_iters"))
def fit_gaussian_mixture(rng, points, num_components: int = 10, num_iters: int = 100,
                         reg_covar: float = 1e-6) -> GaussianMixture:
    """Full-covariance Gaussian mixture fitted to points (N, D) by EM, deterministic given rng.

    Initialization: k-means++ centres, every point assigned to its nearest centre, one M-step.
    Then num_iters EM iterations in a lax.scan: responsibilities
    r_nk = w_k N(x_n; mu_k, Sigma_k) / sum_j w_j N(x_n; mu_j, Sigma_j), then the M-step.
    """
    points = jnp.asarray(points, jnp.float32)
    if points.ndim != 2 or not 1 <= num_components <= points.shape[0]:
        raise ValueError(f"Cannot fit {num_components} components to points of shape "
                         f"{points.shape}; need (N, D) with N >= num_components >= 1.")
    centres = _kmeans_plus_plus_centres(rng, points, num_components)
    nearest = jnp.argmin(jnp.sum((points[:, None, :] - centres[None]) ** 2, axis=-1), axis=1)
    mixture = _maximization(points, jax.nn.one_hot(nearest, num_components), reg_covar)

    def em_iteration(mixture, _):
        log_joint = jnp.log(mixture.weights) + _component_log_densities(points, mixture)
        responsibilities = jax.nn.softmax(log_joint, axis=1)
        return _maximization(points, responsibilities, reg_covar), None

    mixture, _ = jax.lax.scan(em_iteration, mixture, None, length=num_iters)
    return mixture


@functools.partial(jax.jit, static_argnames=("num_samples",))
def sample_gaussian_mixture(rng, mixture: GaussianMixture, num_samples: int):
    """Draws (num_samples, D): a component k ~ weights, then mu_k + L_k e with e ~ N(0, I)."""
    component_key, normal_key = jax.random.split(rng)
    components = jax.random.categorical(component_key, jnp.log(mixture.weights),
                                        shape=(num_samples,))
    cholesky = jnp.linalg.cholesky(mixture.covariances)[components]
    normals = jax.random.normal(normal_key, (num_samples, mixture.means.shape[-1]))
    return mixture.means[components] + jnp.einsum("nij,nj->ni", cholesky, normals)
