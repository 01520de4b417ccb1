"""Forward processes q(x_t | x0) and the posteriors q(x_s | x_t, x0), s < t, that reverse steps use.

Gaussian variance-preserving process (Ho et al. 2020; Kingma et al. 2021, "VDM"):
    x_t = alpha_t x0 + sigma_t eps,  alpha_t^2 = sigmoid(logSNR_t), sigma_t^2 = sigmoid(-logSNR_t).

Analytic attenuation (Huang et al. 2023, "Decoupled diffusion models", arXiv 2306.13720):
    x_t = x0 + c t + sqrt(t) eps with the attenuation c = -x0, so x_1 = eps exactly.

Matryoshka diffusion (Gu et al. 2023, arXiv 2310.15111) runs the Gaussian process jointly on an
image pyramid [D^1(x), D^2(x), ...] (highest resolution first), with independent noise and its
own logSNR per level:  x_t^r = alpha_t^r D^r(x) + sigma_t^r eps^r.

The deterministic cold-diffusion degradations live in the degradations package.
"""

import jax
import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.schedules import alpha_sigma_from_logsnr

# ----------------------------------------------------------------------------------------------
# Gaussian variance-preserving process.


def gaussian_corrupt(x0, noise, logsnr):
    """x_t = alpha x0 + sigma eps with alpha, sigma from logSNR (per sample or scalar)."""
    alpha, sigma = alpha_sigma_from_logsnr(logsnr)
    return expand_to(alpha, x0) * x0 + expand_to(sigma, x0) * noise


def gaussian_posterior(x_t, x0, logsnr_t, logsnr_s):
    """Mean and variance of q(x_s | x_t, x0) for logSNR_s > logSNR_t (VDM, Kingma et al. 2021).

    With r = sigma_{t|s}^2 / sigma_t^2 = 1 - SNR_t / SNR_s = -expm1(logSNR_t - logSNR_s):
        mean     = (alpha_s / alpha_t) (1 - r) x_t + alpha_s r x0
        variance = r sigma_s^2                      (the DDPM "beta tilde")
    Written in logSNR differences so it stays accurate when the two times are close, and exact
    when s is the data (logSNR_s = +inf gives mean x0, variance 0). Returns (mean, variance);
    the variance has the shape of the logSNRs (per sample), not of the images.
    """
    alpha_t, _ = alpha_sigma_from_logsnr(logsnr_t)
    alpha_s, _ = alpha_sigma_from_logsnr(logsnr_s)
    r = -jnp.expm1(logsnr_t - logsnr_s)
    mean = (expand_to(alpha_s / alpha_t * (1.0 - r), x_t) * x_t
            + expand_to(alpha_s * r, x0) * x0)
    return mean, gaussian_posterior_variance(logsnr_t, logsnr_s)


def gaussian_posterior_variance(logsnr_t, logsnr_s):
    """Variance r sigma_s^2 of q(x_s | x_t, x0), r = -expm1(logSNR_t - logSNR_s) (see above).

    On a discrete chain this is DDPM's beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
    beta_t (Ho et al. 2020, eq. 7); it is 0 on the step into the data (logSNR_s = +inf).
    """
    _, sigma_s = alpha_sigma_from_logsnr(logsnr_s)
    return -jnp.expm1(logsnr_t - logsnr_s) * sigma_s**2


def gaussian_transition_variance(logsnr_t, logsnr_s):
    """sigma_{t|s}^2 = 1 - alpha_t^2 / alpha_s^2 of q(x_t | x_s): the DDPM "beta" of the step.

    Equals r sigma_t^2 with r as in gaussian_posterior; on a respaced discrete chain it is the
    respaced beta (Nichol & Dhariwal 2021). Used as the "fixedlarge" reverse variance.
    """
    _, sigma_t = alpha_sigma_from_logsnr(logsnr_t)
    return -jnp.expm1(logsnr_t - logsnr_s) * sigma_t**2


def learned_range_log_variance(model_output, log_beta, log_beta_tilde):
    """Improved DDPM's learned variance (Nichol & Dhariwal 2021, eq. 15).

    Sigma = exp(f log beta + (1 - f) log beta_tilde) with f = (v + 1) / 2, where the network
    output v is nominally in [-1, 1]. log_beta_tilde must be finite: at the first step of a chain
    (beta_tilde = 0) callers pass the clipped value, the posterior variance of the next step.
    """
    fraction = (model_output + 1.0) / 2.0
    return (fraction * expand_to(log_beta, model_output)
            + (1.0 - fraction) * expand_to(log_beta_tilde, model_output))


# ----------------------------------------------------------------------------------------------
# Analytic attenuation process (arXiv 2306.13720).


def attenuation_corrupt(x0, noise, t):
    """x_t = x0 + c t + sqrt(t) eps with c = -x0, i.e. (1 - t) x0 + sqrt(t) eps.

    Example: x0 = 0.5, eps = 1, t = 0.25 gives x_t = 0.875.
    """
    t = expand_to(t, x0)
    return (1.0 - t) * x0 + jnp.sqrt(t) * noise


def attenuation_logsnr(t):
    """logSNR of x_t = (1 - t) x0 + sqrt(t) eps: log((1 - t)^2 / t), from +inf at t = 0 to -inf
    at t = 1. Example: t = 0.5 gives log(0.5) = -0.6931472."""
    t = jnp.asarray(t)
    return 2.0 * jnp.log1p(-t) - jnp.log(t)


def attenuation_posterior(x_t, c, eps, t, step):
    """Mean and variance of the Brownian-bridge posterior q(x_{t-d} | x_t, x0), d = step.

    Given x_t = x0 + c t + sqrt(t) eps, the noise part is a Brownian motion W_t = sqrt(t) eps;
    conditioned on W_t, W_{t-d} is Gaussian with mean (t - d) / t W_t and variance d (t - d) / t.
    Hence
        mean     = x_t - c d - (d / sqrt(t)) eps
        variance = d (t - d) / t
    Example: x_t = 0.875, c = -0.5, eps = 1, t = 0.25, d = 0.05 gives mean 0.8, std 0.2.
    Returns (mean, variance); the variance has the shape of t (per sample).
    """
    t_img = expand_to(t, x_t)
    d_img = expand_to(step, x_t)
    mean = x_t - c * d_img - d_img / jnp.sqrt(t_img) * eps
    return mean, step * (t - step) / t


# ----------------------------------------------------------------------------------------------
# Matryoshka diffusion: the image pyramid and its joint corruption (Gu et al. 2023).


def average_pool(x, factor: int):
    """Mean over non-overlapping factor x factor blocks of an NHWC batch: D(x) of size H/f x W/f.

    The same linear downsampling D serves the MDM pyramid (Gu et al. 2023, sec. 3.1) and simple
    diffusion's multi-scale loss (Hoogeboom et al. 2023, sec. 3.3).
    """
    batch, height, width, channels = x.shape
    if factor < 1 or height % factor or width % factor:
        raise ValueError(
            f"Cannot average-pool a {height}x{width} image by {factor}; the factor must be a "
            "positive integer dividing both sides.")
    blocks = jnp.reshape(x, (batch, height // factor, factor, width // factor, factor, channels))
    return jnp.mean(blocks, axis=(2, 4))


def image_pyramid(x, factors):
    """The pyramid [D^{f_1}(x), D^{f_2}(x), ...] of average-pooled copies, highest resolution first.

    `factors` are strictly increasing downsampling factors relative to x (e.g. (1, 4) for a
    256 px image with a 64 px inner level, as MDM's 64 -> 256 model); factor 1 is x itself.
    """
    factors = tuple(factors)
    if not factors or any(b <= a for a, b in zip(factors, factors[1:])):
        raise ValueError(
            f"Pyramid factors {factors} must be a non-empty, strictly increasing sequence.")
    return [average_pool(x, factor) for factor in factors]


def pyramid_noise(rng, pyramid):
    """Independent standard normal noise for every level of a pyramid (one key per level)."""
    keys = jax.random.split(rng, len(pyramid))
    return [jax.random.normal(key, level.shape, level.dtype) for key, level in zip(keys, pyramid)]


def pyramid_logsnrs(logsnr_fns, t):
    """One logSNR per level: [logsnr_fn_r(t) for each level], all levels sharing the time t.

    MDM gives each resolution r its own schedule, typically the base schedule shifted by
    schedules.resolution_shift so lower resolutions are noised less at the same t.
    """
    return [logsnr_fn(t) for logsnr_fn in logsnr_fns]


def corrupt_pyramid(pyramid, noises, logsnrs):
    """x_t^r = alpha^r D^r(x) + sigma^r eps^r for every level (gaussian_corrupt per leaf).

    `pyramid`, `noises` and `logsnrs` are lists of the same length, highest resolution first;
    each logSNR is a scalar or per-sample (B,) array for its level.
    """
    if not len(pyramid) == len(noises) == len(logsnrs):
        raise ValueError(
            f"Got {len(pyramid)} pyramid levels, {len(noises)} noises and {len(logsnrs)} "
            "logSNRs; they must match one to one.")
    return [gaussian_corrupt(level, noise, logsnr)
            for level, noise, logsnr in zip(pyramid, noises, logsnrs)]
