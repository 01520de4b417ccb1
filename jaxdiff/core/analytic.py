"""Exact (Bayes-optimal) denoisers for Gaussian data, to stand in for a network.

Data: every pixel independent, x0 ~ N(m, s^2) with per-pixel mean m and variance s^2 (arrays of
the image shape (H, W, C), or scalars). The optimal denoiser under a squared loss is the
posterior mean E[x0 | x_t], which is linear in x_t here, so a sampler driven by it must
reproduce N(m, s^2) up to its own discretization error. Tests use these to check samplers
without training anything.

Each factory returns a ``denoise(x_t, t)`` with t of shape (B,), in the samplers' convention.
"""

import jax
import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.predictions import (
    attenuation_eps_from_c,
    eps_from_x0,
    target_from_x0_eps,
)
from jaxdiff.core.processes import average_pool
from jaxdiff.core.schedules import alpha_sigma_from_logsnr


def gaussian_x0_posterior_mean(x_t, alpha, sigma, mean, variance):
    """E[x0 | x_t] for x_t = alpha x0 + sigma eps, x0 ~ N(m, s^2) per pixel.

    E[x0 | x_t] = m + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha m).
    Example: m = 0.5, s^2 = 0.25, logSNR = 0 (alpha = sigma = sqrt(1/2)), x_t = 1 gives
    0.5 + 0.2 sqrt(2) (1 - sqrt(1/8)) = 0.4 + 0.2 sqrt(2) = 0.6828427.
    """
    alpha, sigma = expand_to(alpha, x_t), expand_to(sigma, x_t)
    gain = alpha * variance / (alpha**2 * variance + sigma**2)
    return mean + gain * (x_t - alpha * mean)


def mixture_x0_posterior_mean(x_t, alpha, sigma, weights, means, variances):
    """E[x0 | x_t] per pixel for x0 ~ sum_k pi_k N(mu_k, s_k^2), independent over pixels.

    Given component k, x_t ~ N(alpha mu_k, alpha^2 s_k^2 + sigma^2), so the responsibilities
    are r_k(x_t) proportional to pi_k N(x_t; alpha mu_k, alpha^2 s_k^2 + sigma^2), and
        E[x0 | x_t] = sum_k r_k E_k[x0 | x_t]   (gaussian_x0_posterior_mean per component).
    weights, means and variances are 1-D (K,). Example: pi = (1/2, 1/2), mu = (-1, 1),
    s^2 = (0.25, 0.25), logSNR = 0, x_t = 0.5 gives 0.5511683.
    """
    weights, means, variances = (jnp.asarray(v, jnp.float32) for v in (weights, means,
                                                                       variances))
    alpha, sigma = expand_to(alpha, x_t)[..., None], expand_to(sigma, x_t)[..., None]
    x = x_t[..., None]
    marginal_variance = alpha**2 * variances + sigma**2
    log_likelihood = (jnp.log(weights) - 0.5 * jnp.log(marginal_variance)
                      - 0.5 * (x - alpha * means) ** 2 / marginal_variance)
    responsibilities = jax.nn.softmax(log_likelihood, axis=-1)
    component_means = means + alpha * variances / marginal_variance * (x - alpha * means)
    return jnp.sum(responsibilities * component_means, axis=-1)


def _vp_denoiser(x0_posterior_mean, logsnr_fn, parameterization):
    def denoise(x_t, t):
        alpha, sigma = alpha_sigma_from_logsnr(logsnr_fn(t))
        x0 = x0_posterior_mean(x_t, alpha, sigma)
        eps = eps_from_x0(x_t, x0, alpha, sigma)
        return target_from_x0_eps(parameterization, x0, eps, alpha, sigma)

    return denoise


def _attenuation_denoiser(x0_posterior_mean):
    """The (c, eps) pair from E[x0 | x_t] with alpha = 1 - t, sigma = sqrt(t): c = -E[x0 | x_t]
    and eps = E[eps | x_t] = (x_t - (1 - t) E[x0 | x_t]) / sqrt(t)."""

    def denoise(x_t, t):
        c = -x0_posterior_mean(x_t, 1.0 - t, jnp.sqrt(t))
        return c, attenuation_eps_from_c(x_t, c, t)

    return denoise


def gaussian_denoiser(mean, variance, logsnr_fn, parameterization="eps"):
    """Exact denoiser of the VP process for Gaussian data, returning `parameterization`."""
    return _vp_denoiser(lambda x, alpha, sigma: gaussian_x0_posterior_mean(
        x, alpha, sigma, mean, variance), logsnr_fn, parameterization)


def mixture_denoiser(weights, means, variances, logsnr_fn, parameterization="eps"):
    """Exact denoiser of the VP process for pixels drawn from a 1-D Gaussian mixture."""
    return _vp_denoiser(lambda x, alpha, sigma: mixture_x0_posterior_mean(
        x, alpha, sigma, weights, means, variances), logsnr_fn, parameterization)


def attenuation_gaussian_denoiser(mean, variance):
    """Exact (c, eps) denoiser of analytic attenuation, x_t = (1 - t) x0 + sqrt(t) eps, for
    Gaussian data: the VP formula with alpha = 1 - t and sigma = sqrt(t),
        E[x0 | x_t] = m + (1 - t) s^2 / ((1 - t)^2 s^2 + t) (x_t - (1 - t) m)."""
    return _attenuation_denoiser(lambda x, alpha, sigma: gaussian_x0_posterior_mean(
        x, alpha, sigma, mean, variance))


def attenuation_mixture_denoiser(weights, means, variances):
    """Exact (c, eps) denoiser of analytic attenuation for pixels from a 1-D Gaussian mixture."""
    return _attenuation_denoiser(lambda x, alpha, sigma: mixture_x0_posterior_mean(
        x, alpha, sigma, weights, means, variances))


def _upsample_2x2(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def pyramid_x0_posterior_mean(x_high, x_low, alpha_high, sigma_high, alpha_low, sigma_low,
                              mean, variance):
    """E[x0 | both noisy levels] for a two-level Matryoshka pyramid of Gaussian data.

    x0 (B, H, W, C) has independent pixels N(m, s^2); its low level is P x0 = average_pool(x0, 2).
    Observed: y_h = alpha_h x0 + sigma_h e_h and y_l = alpha_l P x0 + sigma_l e_l with
    independent noises. Blocks are independent; within a 2x2 block with prior precision
    D^-1 = diag(1 / s_i^2) and w = (1/4, 1/4, 1/4, 1/4), the posterior precision is
        A = P + snr_l w w^T,   P = D^-1 + snr_h I  (diagonal),   snr = alpha^2 / sigma^2,
    and the posterior mean is m + A^-1 b with
        b = (alpha_h / sigma_h^2)(y_h - alpha_h m) + (alpha_l / sigma_l^2) w (y_l - alpha_l w^T m).
    Sherman-Morrison gives A^-1 b = g - snr_l P^-1 w (w^T g) / (1 + snr_l w^T P^-1 w), g = P^-1 b.
    (With equal s^2 in a block this is: the block mean is seen through both levels, the
    within-block residual only through the high level.) Returns the high-level estimate; the low
    level's estimate is its average pool.
    """
    alpha_h, sigma_h = expand_to(alpha_high, x_high), expand_to(sigma_high, x_high)
    alpha_l, sigma_l = expand_to(alpha_low, x_low), expand_to(sigma_low, x_low)
    mean = jnp.broadcast_to(mean, x_high.shape)
    snr_high, snr_low = (alpha_h / sigma_h) ** 2, (alpha_l / sigma_l) ** 2
    precision = jnp.broadcast_to(1.0 / variance + snr_high, x_high.shape)
    low_residual = alpha_l / sigma_l**2 * (x_low - alpha_l * average_pool(mean, 2))
    b = alpha_h / sigma_h**2 * (x_high - alpha_h * mean) + _upsample_2x2(low_residual) / 4.0
    g = b / precision
    # w^T P^-1 w = sum_i 1 / (16 P_i) = pool(1 / P) / 4;  w^T g = pool(g).
    w_p_w = average_pool(1.0 / precision, 2) / 4.0
    rank_one = snr_low * average_pool(g, 2) / (1.0 + snr_low * w_p_w)
    return mean + g - _upsample_2x2(rank_one) / (4.0 * precision)


def pyramid_gaussian_denoiser(mean, variance, logsnr_fns, parameterization="eps"):
    """Exact denoiser of a two-level pyramid [x_high, x_low] with one schedule per level.

    logsnr_fns = [logsnr_high, logsnr_low]; returns [out_high, out_low] in `parameterization`,
    from x0_high = pyramid_x0_posterior_mean(...) and x0_low = average_pool(x0_high, 2).
    """
    logsnr_high, logsnr_low = logsnr_fns

    def denoise(x_t, t):
        x_high, x_low = x_t
        alpha_h, sigma_h = alpha_sigma_from_logsnr(logsnr_high(t))
        alpha_l, sigma_l = alpha_sigma_from_logsnr(logsnr_low(t))
        x0_high = pyramid_x0_posterior_mean(x_high, x_low, alpha_h, sigma_h, alpha_l, sigma_l,
                                            mean, variance)
        x0_low = average_pool(x0_high, 2)
        outputs = []
        for x, x0, alpha, sigma in ((x_high, x0_high, alpha_h, sigma_h),
                                    (x_low, x0_low, alpha_l, sigma_l)):
            eps = eps_from_x0(x, x0, alpha, sigma)
            outputs.append(target_from_x0_eps(parameterization, x0, eps, alpha, sigma))
        return outputs

    return denoise
