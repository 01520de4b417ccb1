"""The analytic-attenuation samplers driven by the exact denoiser of Gaussian data: the exact
moments of the few-step chain, and the data law at many steps (tolerances as in
test_samplers.py)."""

import jax
import numpy as np
import pytest
from test_samplers import MEAN, VARIANCE, assert_matches_gaussian

from jaxdiff.core import analytic, time_grids
from jaxdiff.core.attenuation_samplers import attenuation_ode_sample, attenuation_sample


@pytest.fixture(scope="module")
def x_T():
    return jax.random.normal(jax.random.PRNGKey(0), (8192, 2, 2, 1))



def attenuation_chain_moments(times, mean, variance, stochastic):
    """Exact mean and variance of the 10-step chain's output, per pixel (test oracle).

    With the exact denoiser, x0_hat = m + g (x_t - (1 - t) m), g = (1 - t) s^2 / ((1 - t)^2 s^2
    + t), and each step is affine in x_t plus independent Gaussian noise, so mean and variance
    propagate exactly from x_1 ~ N(0, 1).
    """
    mu, var = np.zeros_like(mean, dtype=np.float64), np.ones_like(variance, dtype=np.float64)
    for t, s in zip(times[:-1], times[1:]):
        d = t - s
        gain = (1 - t) * variance / ((1 - t) ** 2 * variance + t)
        x0_a, x0_b = gain, mean * (1 - gain * (1 - t))           # x0_hat = a x + b
        eps_a, eps_b = (1 - (1 - t) * x0_a) / np.sqrt(t), -(1 - t) * x0_b / np.sqrt(t)
        eps_weight = d / np.sqrt(t) if stochastic else np.sqrt(t) - np.sqrt(s)
        a = 1 + d * x0_a - eps_weight * eps_a                     # x - c d - eps_weight eps
        b = d * x0_b - eps_weight * eps_b
        mu, var = a * mu + b, a * a * var + (d * s / t if stochastic else 0.0)
    return mu, var


@pytest.mark.parametrize("stochastic", [True, False])
def test_attenuation_samplers_match_exact_chain_moments(x_T, stochastic):
    """10 steps: samples match the chain's exact moments within 5 standard errors.

    On Gaussian data the 10-step chain itself loses variance (its last step returns x0_hat at
    t = 0.1, whose variance is s^2 minus the posterior variance there): the oracle gives the
    exact output moments, and the test also checks that the loss is what the formula says.
    """
    times = time_grids.time_grid("uniform", 10)
    denoise = analytic.attenuation_gaussian_denoiser(MEAN, VARIANCE)
    if stochastic:
        run = jax.jit(lambda x: attenuation_sample(denoise, jax.random.PRNGKey(9), x,
                                                            times))
    else:
        run = jax.jit(lambda x: attenuation_ode_sample(denoise, x, times))
    chain_mean, chain_variance = attenuation_chain_moments(times, MEAN, VARIANCE, stochastic)
    assert_matches_gaussian(run(x_T), chain_mean, chain_variance, variance_bias=0.0)
    # The chain reproduces the data mean exactly and keeps at least half the variance.
    np.testing.assert_allclose(chain_mean, MEAN, atol=1e-6)
    assert np.all((0.5 * VARIANCE < chain_variance) & (chain_variance < VARIANCE))


@pytest.mark.parametrize("stochastic", [True, False])
def test_attenuation_samplers_converge_to_data(x_T, stochastic):
    """With 400 steps on the grid t_k = (1 - k/400)^2 both samplers reproduce the data.

    The exact chain moments for this grid are within 1.5% of s^2 (checked by the oracle).
    """
    times = time_grids.time_grid("power", 400, power=2.0)
    _, chain_variance = attenuation_chain_moments(times, MEAN, VARIANCE, stochastic)
    np.testing.assert_array_less(np.abs(chain_variance / VARIANCE - 1.0), 0.015)
    denoise = analytic.attenuation_gaussian_denoiser(MEAN, VARIANCE)
    if stochastic:
        samples = attenuation_sample(denoise, jax.random.PRNGKey(10), x_T, times)
    else:
        samples = attenuation_ode_sample(denoise, x_T, times)
    assert_matches_gaussian(samples, MEAN, VARIANCE)

