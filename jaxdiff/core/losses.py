"""Training losses: targets, loss weightings, and the per-paper loss shapes.

Every loss here returns one value per sample, shape (B,): the mean over all non-batch axes of
an image-shaped error, times that sample's weight. The method averages over the batch.

Weightings multiply the MSE of the parameterization's own target. Expressed in x0-MSE units
(what each weighting means), the target MSEs relate by
    ||eps_hat - eps||^2 = SNR ||x0_hat - x0||^2,   ||v_hat - v||^2 = (1 + SNR) ||x0_hat - x0||^2
(variance preserving, SNR = exp(logSNR)), so a weighting for one target is converted to another
by these factors. Closed forms below avoid forming SNR = exp(logSNR) where it could overflow.
"""

import math

import jax
import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.predictions import PARAMETERIZATIONS, target_from_x0_eps, to_x0_eps
from jaxdiff.core.processes import (average_pool, gaussian_posterior,
                                    gaussian_posterior_variance, gaussian_transition_variance,
                                    learned_range_log_variance)
from jaxdiff.core.schedules import alpha_sigma_from_logsnr, discrete_logsnr_fn

WEIGHTINGS = ("uniform", "min_snr", "sigmoid")
RESTORATION_NORMS = ("l1", "l2")


def _check_parameterization(parameterization: str):
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"Unknown parameterization {parameterization!r}; expected one of {PARAMETERIZATIONS}.")


def mean_per_sample(x):
    """Mean over every axis but the first (batch): (B, ...) -> (B,)."""
    return jnp.mean(x, axis=tuple(range(1, jnp.ndim(x))))


def weighted_mse(prediction, target, weight=1.0):
    """weight * mean((prediction - target)^2) per sample; weight is a scalar or (B,)."""
    return weight * mean_per_sample(jnp.square(prediction - target))


# ----------------------------------------------------------------------------------------------
# Loss weightings as functions of logSNR.


def uniform_weight(logsnr):
    """Weight 1 on the target's MSE (Ho et al. 2020's "simple" loss for eps targets)."""
    return jnp.ones_like(jnp.asarray(logsnr, dtype=jnp.float32))


def min_snr_weight(logsnr, parameterization: str, gamma: float = 5.0):
    """Min-SNR-gamma (Hang et al. 2023, "Efficient diffusion training via min-SNR weighting").

    In x0-MSE units the weight is min(SNR, gamma); on each target's MSE it is therefore
        x0:  min(SNR, gamma)
        eps: min(SNR, gamma) / SNR       = min(1, gamma / SNR)
        v:   min(SNR, gamma) / (SNR + 1) = min(sigmoid(logSNR), gamma sigmoid(-logSNR))
    The paper's default is gamma = 5.
    """
    _check_parameterization(parameterization)
    logsnr = jnp.asarray(logsnr, dtype=jnp.float32)
    if parameterization == "x0":
        return jnp.minimum(jnp.exp(logsnr), gamma)
    if parameterization == "eps":
        return jnp.minimum(1.0, gamma * jnp.exp(-logsnr))
    return jnp.minimum(jax.nn.sigmoid(logsnr), gamma * jax.nn.sigmoid(-logsnr))


def sigmoid_weight(logsnr, parameterization: str, bias: float):
    """Sigmoid weighting w(logSNR) = sigmoid(b - logSNR) on the eps-MSE (Kingma & Gao 2023).

    "Understanding diffusion objectives as the ELBO with simple data augmentation": a monotonic
    weighting of the eps loss. Converted to the other targets:
        eps: sigmoid(b - logSNR)
        x0:  sigmoid(b - logSNR) SNR = 1 / (exp(-logSNR) + exp(-b))
        v:   sigmoid(b - logSNR) SNR / (1 + SNR) = sigmoid(b - logSNR) sigmoid(logSNR)
    The bias b is a setting of the experiment (no default): it moves the weight towards noisier
    (smaller b) or cleaner (larger b) inputs.
    """
    _check_parameterization(parameterization)
    logsnr = jnp.asarray(logsnr, dtype=jnp.float32)
    if parameterization == "eps":
        return jax.nn.sigmoid(bias - logsnr)
    if parameterization == "x0":
        return jnp.exp(-jnp.logaddexp(-logsnr, -bias))
    return jax.nn.sigmoid(bias - logsnr) * jax.nn.sigmoid(logsnr)


def loss_weight(name: str, logsnr, parameterization: str, gamma: float = 5.0, bias=None):
    """Dispatch a weighting by config name: "uniform", "min_snr" (gamma) or "sigmoid" (bias)."""
    _check_parameterization(parameterization)
    if name == "uniform":
        return uniform_weight(logsnr)
    if name == "min_snr":
        return min_snr_weight(logsnr, parameterization, gamma)
    if name == "sigmoid":
        if bias is None:
            raise ValueError("The sigmoid loss weighting needs a bias; pass bias=<float>.")
        return sigmoid_weight(logsnr, parameterization, bias)
    raise ValueError(f"Unknown loss weighting {name!r}; expected one of {WEIGHTINGS}.")


# ----------------------------------------------------------------------------------------------
# Gaussian denoising losses.


def denoising_loss(parameterization: str, output, x0, noise, logsnr, weight=1.0):
    """weight * mean((output - target)^2) with the target of the parameterization.

    target = eps, x0, or v = alpha eps - sigma x0 for x_t = alpha x0 + sigma eps
    (predictions.target_from_x0_eps); logSNR and weight are scalars or per-sample (B,).
    """
    alpha, sigma = alpha_sigma_from_logsnr(logsnr)
    target = target_from_x0_eps(parameterization, x0, noise, alpha, sigma)
    return weighted_mse(output, target, weight)


def multiscale_resolutions(image_size: int, min_resolution: int = 32):
    """Resolutions {d, d/2, d/4, ...} down to min_resolution, the scales of the multi-scale loss.

    Simple diffusion (Hoogeboom et al. 2023, sec. 3.3) sums over s in {32, 64, ..., d}; the
    image size must be min_resolution times a power of two.
    """
    resolutions = [image_size]
    while resolutions[-1] > min_resolution and resolutions[-1] % 2 == 0:
        resolutions.append(resolutions[-1] // 2)
    if resolutions[-1] != min_resolution:
        raise ValueError(
            f"Image size {image_size} is not min_resolution {min_resolution} times a power of two.")
    return resolutions


def multiscale_mse(prediction, target, min_resolution: int = 32, weight=1.0):
    """Simple diffusion's multi-scale loss (Hoogeboom et al. 2023, sec. 3.3).

    L = sum_{s in {min_resolution, ..., d}} (1 / s) L^{s x s},
    L^{s x s} = (1 / s^2) ||D^{s x s}[target] - D^{s x s}[prediction]||^2,
    where D^{s x s} average-pools the d x d image to s x s. Each term is the per-pixel mean of
    the pooled squared error, as the paper's 1 / s^2; here also averaged over channels, like every
    loss in this module. The factor 1 / s up-weights the coarse scales, whose error is less
    noisy. The image height is d (square images, as in the paper). Returns (B,).
    """
    error = prediction - target
    image_size = error.shape[1]
    total = 0.0
    for resolution in multiscale_resolutions(image_size, min_resolution):
        pooled = average_pool(error, image_size // resolution)
        total = total + mean_per_sample(jnp.square(pooled)) / resolution
    return weight * total


def nested_denoising_loss(parameterization: str, outputs, pyramid, noises, logsnrs,
                          level_weights=None, sample_weights=None):
    """Matryoshka diffusion's nested loss (Gu et al. 2023): sum_r w_r L_r.

    L_r = denoising_loss at level r of the pyramid (lists, highest resolution first) with that
    level's own logSNR. `level_weights`: one float per level (default 1 each); `sample_weights`:
    a list of per-level scalar or (B,) loss weightings (e.g. min_snr_weight of that level's
    logSNR), default 1. Returns (B,).
    """
    num_levels = len(pyramid)
    level_weights = [1.0] * num_levels if level_weights is None else list(level_weights)
    sample_weights = [1.0] * num_levels if sample_weights is None else list(sample_weights)
    if not (len(outputs) == len(noises) == len(logsnrs) == len(level_weights)
            == len(sample_weights) == num_levels):
        raise ValueError(
            f"The nested loss needs one output, noise, logSNR and weight per pyramid level "
            f"({num_levels} levels).")
    total = 0.0
    for output, x0, noise, logsnr, level_weight, sample_weight in zip(
            outputs, pyramid, noises, logsnrs, level_weights, sample_weights):
        total = total + level_weight * denoising_loss(
            parameterization, output, x0, noise, logsnr, sample_weight)
    return total


# ----------------------------------------------------------------------------------------------
# Analytic attenuation (Huang et al. 2023, arXiv 2306.13720).


def attenuation_weights(t, clamp: float = 1e-4):
    """Time weights (w_c, w_eps) of the attenuation loss's c and eps terms.

        w_c(t)   = (t^2 - t + 1) / t          (on ||c_hat - c||^2)
        w_eps(t) = (t^2 - t + 1) / (1 - t)    (on ||eps_hat - eps||^2)
    as in the authors' reference implementation (GuHuangAI/ADM-Public, ddm/ddm_const.py,
    "weighting_loss"): the c term is weighted up near the data (t -> 0) and the eps term near
    the prior (t -> 1); t^2 - t + 1 lies in [3/4, 1]. The denominators are clamped below by
    `clamp` so both weights stay finite at t = 0 and t = 1 (at most 1 / clamp).
    """
    t = jnp.asarray(t, dtype=jnp.float32)
    numerator = t * t - t + 1.0
    return numerator / jnp.maximum(t, clamp), numerator / jnp.maximum(1.0 - t, clamp)


def attenuation_loss(c_prediction, eps_prediction, x0, noise, t, weighted: bool = True,
                     clamp: float = 1e-4):
    """w_c(t) ||c_hat - c||^2 + w_eps(t) ||eps_hat - eps||^2 with c = -x0 (per-sample means).

    x_t = x0 + c t + sqrt(t) eps, c = -x0; the network's two heads predict c and eps. With
    weighted=False both weights are 1 (the paper's unweighted objective).
    """
    w_c, w_eps = attenuation_weights(t, clamp) if weighted else (1.0, 1.0)
    return weighted_mse(c_prediction, -x0, w_c) + weighted_mse(eps_prediction, noise, w_eps)


# ----------------------------------------------------------------------------------------------
# Cold diffusion (Bansal et al. 2022).


def restoration_loss(x0_prediction, x0, norm: str = "l1"):
    """Cold diffusion's restoration loss ||R(D(x0, t), t) - x0||, per-sample mean (Bansal 2022).

    norm "l1" (the paper's choice) is mean |error|, "l2" is mean error^2.
    """
    error = x0_prediction - x0
    if norm == "l1":
        return mean_per_sample(jnp.abs(error))
    if norm == "l2":
        return mean_per_sample(jnp.square(error))
    raise ValueError(f"Unknown restoration norm {norm!r}; expected one of {RESTORATION_NORMS}.")


# ----------------------------------------------------------------------------------------------
# Improved DDPM: learned-range variance and the hybrid loss (Nichol & Dhariwal 2021).


def normal_kl(mean1, log_var1, mean2, log_var2):
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise, in nats.

    = 0.5 (log var2 - log var1 + var1 / var2 + (mean1 - mean2)^2 / var2 - 1).
    """
    return 0.5 * (log_var2 - log_var1 - 1.0 + jnp.exp(log_var1 - log_var2)
                  + jnp.square(mean1 - mean2) * jnp.exp(-log_var2))


def discretized_gaussian_log_likelihood(x, mean, log_var, bin_width: float = 2.0 / 255.0):
    """log P(x) of 8-bit data in [-1, 1] under N(mean, var) integrated over x's bin, elementwise.

    The bin of x is [x - w/2, x + w/2], w = 2/255; the edge bins extend to -inf (x = -1) and
    +inf (x = 1) (Ho et al. 2020, eq. 13). Differences of normal CDFs are taken in the tail
    where they are small, so the result stays accurate in float32.
    """
    inv_std = jnp.exp(-0.5 * log_var)
    upper = (x - mean + 0.5 * bin_width) * inv_std
    lower = (x - mean - 0.5 * bin_width) * inv_std
    ndtr = jax.scipy.special.ndtr
    # Phi(b) - Phi(a) equals Phi(-a) - Phi(-b); use the side with the smaller CDF values.
    in_upper_tail = lower > 0.0
    bin_mass = jnp.where(in_upper_tail, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
    log_bin = jnp.log(jnp.maximum(bin_mass, 1e-12))
    log_left_edge = jax.scipy.special.log_ndtr(upper)     # P(X <= x + w/2)
    log_right_edge = jax.scipy.special.log_ndtr(-lower)   # P(X >= x - w/2)
    return jnp.where(x < -0.999, log_left_edge, jnp.where(x > 0.999, log_right_edge, log_bin))


def hybrid_loss(parameterization: str, output, variance_output, x0, noise, x_t, timesteps,
                alpha_bar, vlb_weight: float = 0.001):
    """Improved DDPM's L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, sec. 3.1).

    On a discrete chain of T = len(alpha_bar) steps, timesteps i in [0, T) (B,), x_t the corrupted
    input at step i, `output` the prediction and `variance_output` v in [-1, 1] of the network:
      L_simple = mean (output - target)^2;
      model variance Sigma = exp(f log beta + (1 - f) log beta_tilde), f = (v + 1) / 2
        (processes.learned_range_log_variance; beta_tilde at step 0 clipped to that of step 1);
      model mean = posterior mean of q(x_{i-1} | x_i, x0_hat), x0_hat from
        stop_gradient(output), so L_vlb trains only the variance;
      L_i = KL(q(x_{i-1} | x_i, x0) || p(x_{i-1} | x_i)) for i > 0 (the true posterior with the
        same clipped beta_tilde) and the discretized Gaussian decoder NLL -log p(x0 | x_1) at
        i = 0, both as a mean over dimensions, in bits;
      L_vlb estimated as T L_i for uniformly drawn i, so the returned loss is
        L_simple + vlb_weight T L_i  (lambda = 0.001).
    Returns (loss, vlb_term) per sample, vlb_term = L_i in bits/dim.
    """
    num_steps = len(alpha_bar)
    logsnr_fn = discrete_logsnr_fn(alpha_bar)
    logsnr_t = logsnr_fn((timesteps + 1.0) / num_steps)
    logsnr_s = logsnr_fn(timesteps / num_steps)   # +inf (the data) at step 0

    alpha, sigma = alpha_sigma_from_logsnr(logsnr_t)
    simple = weighted_mse(output, target_from_x0_eps(parameterization, x0, noise, alpha, sigma))

    log_beta = jnp.log(gaussian_transition_variance(logsnr_t, logsnr_s))
    first_posterior_variance = gaussian_posterior_variance(logsnr_fn(2.0 / num_steps),
                                                           logsnr_fn(1.0 / num_steps))
    log_beta_tilde = jnp.log(jnp.where(timesteps == 0, first_posterior_variance,
                                       gaussian_posterior_variance(logsnr_t, logsnr_s)))
    model_log_var = learned_range_log_variance(variance_output, log_beta, log_beta_tilde)

    x0_hat, _ = to_x0_eps(parameterization, x_t, jax.lax.stop_gradient(output), alpha, sigma)
    model_mean, _ = gaussian_posterior(x_t, x0_hat, logsnr_t, logsnr_s)
    true_mean, _ = gaussian_posterior(x_t, x0, logsnr_t, logsnr_s)
    true_log_var = expand_to(log_beta_tilde, x0)

    kl = mean_per_sample(normal_kl(true_mean, true_log_var, model_mean, model_log_var))
    decoder_nll = -mean_per_sample(discretized_gaussian_log_likelihood(x0, model_mean,
                                                                       model_log_var))
    vlb_term = jnp.where(timesteps == 0, decoder_nll, kl) / math.log(2.0)
    return simple + vlb_weight * num_steps * vlb_term, vlb_term
