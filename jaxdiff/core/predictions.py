"""Exact conversions between the quantities a denoiser can predict.

Gaussian processes, x_t = alpha x0 + sigma eps (alpha^2 + sigma^2 = 1 in the VP case):
  eps-prediction (Ho et al. 2020), x0-prediction, and v = alpha eps - sigma x0 (Salimans & Ho
  2022, "Progressive distillation", sec. 4), for which x0 = alpha x_t - sigma v and
  eps = sigma x_t + alpha v (these two need alpha^2 + sigma^2 = 1).

Analytic attenuation (Huang et al. 2023, arXiv 2306.13720), x_t = x0 + c t + sqrt(t) eps with the
attenuation c = -x0, i.e. x_t = (1 - t) x0 + sqrt(t) eps. The network predicts the pair (c, eps);
either half determines the other given x_t and t.

alpha, sigma and t may be scalars or per-sample arrays of shape (B,); they are broadcast
against the image batch.
"""

import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to

PARAMETERIZATIONS = ("eps", "x0", "v")


def x0_from_eps(x_t, eps, alpha, sigma):
    """x0 = (x_t - sigma eps) / alpha."""
    return (x_t - expand_to(sigma, x_t) * eps) / expand_to(alpha, x_t)


def eps_from_x0(x_t, x0, alpha, sigma):
    """eps = (x_t - alpha x0) / sigma."""
    return (x_t - expand_to(alpha, x_t) * x0) / expand_to(sigma, x_t)


def v_from_x0_eps(x0, eps, alpha, sigma):
    """v = alpha eps - sigma x0."""
    return expand_to(alpha, x0) * eps - expand_to(sigma, x0) * x0


def x0_from_v(x_t, v, alpha, sigma):
    """x0 = alpha x_t - sigma v (variance preserving)."""
    return expand_to(alpha, x_t) * x_t - expand_to(sigma, x_t) * v


def eps_from_v(x_t, v, alpha, sigma):
    """eps = sigma x_t + alpha v (variance preserving)."""
    return expand_to(sigma, x_t) * x_t + expand_to(alpha, x_t) * v


def to_x0_eps(parameterization: str, x_t, output, alpha, sigma):
    """Turn a network output of the given parameterization into the pair (x0_hat, eps_hat)."""
    if parameterization == "eps":
        return x0_from_eps(x_t, output, alpha, sigma), output
    if parameterization == "x0":
        return output, eps_from_x0(x_t, output, alpha, sigma)
    if parameterization == "v":
        return x0_from_v(x_t, output, alpha, sigma), eps_from_v(x_t, output, alpha, sigma)
    raise ValueError(
        f"Unknown parameterization {parameterization!r}; expected one of {PARAMETERIZATIONS}.")


def target_from_x0_eps(parameterization: str, x0, eps, alpha, sigma):
    """The regression target of a parameterization for a clean image x0 and its noise eps."""
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        return v_from_x0_eps(x0, eps, alpha, sigma)
    raise ValueError(
        f"Unknown parameterization {parameterization!r}; expected one of {PARAMETERIZATIONS}.")


# Analytic attenuation: x_t = (1 - t) x0 + sqrt(t) eps, c = -x0.


def attenuation_x0_from_c(c):
    """x0 = -c."""
    return -c


def attenuation_eps_from_c(x_t, c, t):
    """eps = (x_t - x0 - c t) / sqrt(t) = (x_t + (1 - t) c) / sqrt(t)."""
    t = expand_to(t, x_t)
    return (x_t + (1.0 - t) * c) / jnp.sqrt(t)


def attenuation_c_from_eps(x_t, eps, t):
    """c = -x0 = -(x_t - sqrt(t) eps) / (1 - t)."""
    t = expand_to(t, x_t)
    return -(x_t - jnp.sqrt(t) * eps) / (1.0 - t)
