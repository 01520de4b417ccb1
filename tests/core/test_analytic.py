"""The exact Gaussian-data denoisers against hand values and brute-force Gaussian conditioning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import analytic, predictions
from jaxdiff.core.processes import average_pool
from jaxdiff.core.schedules import alpha_sigma_from_logsnr


def test_vp_posterior_mean_hand_value():
    alpha, sigma = alpha_sigma_from_logsnr(jnp.array([0.0]))
    x0 = analytic.gaussian_x0_posterior_mean(jnp.ones((1, 1, 1, 1)), alpha, sigma, 0.5, 0.25)
    np.testing.assert_allclose(x0, 0.4 + 0.2 * np.sqrt(2.0), rtol=1e-6)  # 0.6828427


def test_vp_posterior_mean_is_the_least_squares_regression():
    """Monte Carlo: regressing x0 on x_t recovers the slope alpha s^2 / (alpha^2 s^2 + sigma^2)."""
    rng = np.random.default_rng(0)
    m, s2, alpha, sigma = 0.3, 0.5, 0.8, 0.6
    x0 = m + np.sqrt(s2) * rng.standard_normal(200_000)
    x_t = alpha * x0 + sigma * rng.standard_normal(200_000)
    slope, intercept = np.polyfit(x_t, x0, 1)
    predicted = analytic.gaussian_x0_posterior_mean(jnp.array([0.0, 1.0]), alpha, sigma, m, s2)
    np.testing.assert_allclose([predicted[0], predicted[1] - predicted[0]], [intercept, slope],
                               atol=0.01)


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_gaussian_denoiser_parameterizations_agree(parameterization):
    mean = jnp.array([0.5, -0.2]).reshape(1, 2, 1)
    variance = jnp.array([0.25, 0.8]).reshape(1, 2, 1)
    logsnr_fn = lambda t: 4.0 - 8.0 * t  # noqa: E731
    x_t = jax.random.normal(jax.random.PRNGKey(0), (3, 1, 2, 1))
    t = jnp.array([0.1, 0.5, 0.9])
    alpha, sigma = alpha_sigma_from_logsnr(logsnr_fn(t))
    output = analytic.gaussian_denoiser(mean, variance, logsnr_fn, parameterization)(x_t, t)
    x0, _ = predictions.to_x0_eps(parameterization, x_t, output, alpha, sigma)
    expected = analytic.gaussian_x0_posterior_mean(x_t, alpha, sigma, mean, variance)
    np.testing.assert_allclose(x0, expected, rtol=1e-5, atol=1e-6)


def test_attenuation_denoiser_hand_values():
    # t = 0.5: alpha = 0.5, sigma^2 = 0.5; gain = 0.125 / 0.5625 = 2/9;
    # x0 = 0.5 + (2/9)(1 - 0.25) = 2/3, c = -2/3, eps = (1 - 0.5 * 2/3) / sqrt(0.5) = 0.9428090.
    denoise = analytic.attenuation_gaussian_denoiser(0.5, 0.25)
    c, eps = denoise(jnp.ones((1, 1, 1, 1)), jnp.array([0.5]))
    np.testing.assert_allclose(c, -2.0 / 3.0, rtol=1e-6)
    np.testing.assert_allclose(eps, 0.9428090, rtol=1e-6)


def brute_force_pyramid_mean(y_high, y_low, a_h, s_h, a_l, s_l, mean, variance):
    """Posterior mean of x0 (16 pixels) given 16 + 4 linear observations, by dense algebra."""
    pool = np.zeros((4, 16))
    for row in range(4):
        for col in range(4):
            pool[(row // 2) * 2 + col // 2, row * 4 + col] = 0.25
    observation = np.concatenate([a_h * np.eye(16), a_l * pool])
    noise = np.diag(np.concatenate([np.full(16, s_h**2), np.full(4, s_l**2)]))
    prior = np.diag(variance)
    y = np.concatenate([y_high, y_low])
    gain = prior @ observation.T @ np.linalg.inv(observation @ prior @ observation.T + noise)
    return mean + gain @ (y - observation @ mean)


def test_pyramid_posterior_mean_matches_dense_conditioning():
    rng = np.random.default_rng(1)
    mean = rng.uniform(-0.5, 0.5, 16)
    variance = rng.uniform(0.1, 1.0, 16)  # varies inside every 2x2 block
    a_h, s_h = 0.6, 0.8
    a_l, s_l = 0.9, np.sqrt(1 - 0.81)
    y_high, y_low = rng.standard_normal(16), rng.standard_normal(4)
    expected = brute_force_pyramid_mean(y_high, y_low, a_h, s_h, a_l, s_l, mean, variance)
    got = analytic.pyramid_x0_posterior_mean(
        jnp.asarray(y_high, jnp.float32).reshape(1, 4, 4, 1),
        jnp.asarray(y_low, jnp.float32).reshape(1, 2, 2, 1),
        a_h, s_h, a_l, s_l,
        jnp.asarray(mean, jnp.float32).reshape(4, 4, 1),
        jnp.asarray(variance, jnp.float32).reshape(4, 4, 1))
    np.testing.assert_allclose(np.asarray(got).ravel(), expected, rtol=1e-5, atol=1e-5)


def test_pyramid_without_low_signal_is_the_single_level_denoiser():
    mean = jnp.linspace(-0.5, 0.5, 16).reshape(4, 4, 1)
    variance = jnp.linspace(0.2, 1.0, 16).reshape(4, 4, 1)
    keys = jax.random.split(jax.random.PRNGKey(2))
    x_high = jax.random.normal(keys[0], (2, 4, 4, 1))
    x_low = jax.random.normal(keys[1], (2, 2, 2, 1))
    got = analytic.pyramid_x0_posterior_mean(x_high, x_low, 0.7, np.sqrt(0.51), 0.0, 1.0,
                                             mean, variance)
    single = analytic.gaussian_x0_posterior_mean(x_high, 0.7, np.sqrt(0.51), mean, variance)
    np.testing.assert_allclose(got, single, rtol=1e-6)


def test_pyramid_denoiser_outputs_are_consistent():
    mean, variance = 0.2, 0.5
    logsnr_fns = [lambda t: 2.0 - 4.0 * t, lambda t: 3.0 - 4.0 * t]
    denoise = analytic.pyramid_gaussian_denoiser(mean, variance, logsnr_fns, "x0")
    keys = jax.random.split(jax.random.PRNGKey(3))
    state = [jax.random.normal(keys[0], (2, 4, 4, 1)), jax.random.normal(keys[1], (2, 2, 2, 1))]
    high, low = denoise(state, jnp.array([0.25, 0.75]))
    np.testing.assert_allclose(low, average_pool(high, 2), rtol=1e-6)
