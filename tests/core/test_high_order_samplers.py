"""EDM's Heun, DPM-Solver++(3M) and the time grids driven by exact denoisers: Gaussian data
(the data law at high step counts, the order of accuracy at few steps) and a Gaussian mixture
with narrow components (fine detail), whose spread few-step samplers lose on a poor grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_samplers import MEAN, VARIANCE, assert_matches_gaussian, linear_logsnr

from jaxdiff.core import analytic, samplers, time_grids
from jaxdiff.core.schedule_registry import make_schedule

COSINE = make_schedule("cosine")
CHAIN = make_schedule("cosine_betas", num_timesteps=1000)
# A mixture of narrow components: stds 0.05, 0.08, 0.04 on the data range [-1, 1].
WEIGHTS = np.array([0.3, 0.5, 0.2])
MEANS = np.array([-0.6, 0.1, 0.7])
STDS = np.array([0.05, 0.08, 0.04])


@pytest.fixture(scope="module")
def x_T():
    return jax.random.normal(jax.random.PRNGKey(0), (8192, 2, 2, 1))


def run(sampler, denoise, x, schedule, times, parameterization="eps"):
    if sampler == "heun":
        return samplers.heun_sample(denoise, x, schedule.logsnr_fn, times, parameterization)
    return samplers.dpm_solver_pp_sample(denoise, x, schedule.logsnr_fn, times, parameterization,
                                         order=3 if sampler == "3m" else 2)


@pytest.mark.parametrize("sampler, schedule, grid, steps, parameterization", [
    ("heun", COSINE, "karras", 40, "v"),
    ("heun", CHAIN, "karras", 40, "eps"),
    ("3m", COSINE, "logsnr", 25, "eps"),
    ("3m", CHAIN, "power", 25, "x0"),
])
def test_reproduce_gaussian_data(x_T, sampler, schedule, grid, steps, parameterization):
    """Mean within 5 standard errors, variance within 5 standard errors plus 2% (the grids'
    own bias, measured beforehand from these runs: at most 1.2%)."""
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, schedule.logsnr_fn, parameterization)
    times = schedule.sampling_times(steps, grid)
    samples = jax.jit(lambda x: run(sampler, denoise, x, schedule, times, parameterization))(x_T)
    assert_matches_gaussian(samples, MEAN, VARIANCE)


def test_higher_orders_are_more_accurate_at_few_steps(x_T):
    """20 steps uniform in logSNR (linear_logsnr): the largest variance error shrinks with the
    order, DDIM (Euler in EDM's variables) > Heun on the same grid, and 2M > 3M; measured 0.23,
    0.10, 0.054 and 0.042 (the same x_T for all, so their sampling noise is shared)."""
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, linear_logsnr)
    times = time_grids.time_grid("uniform", 20)

    def error(samples):
        return float(np.abs(np.var(samples, axis=0) / VARIANCE - 1.0).max())

    ddim = error(samplers.ddim_sample(denoise, None, x_T, linear_logsnr, times))
    heun = error(samplers.heun_sample(denoise, x_T, linear_logsnr, times))
    second = error(samplers.dpm_solver_pp_sample(denoise, x_T, linear_logsnr, times, order=2))
    third = error(samplers.dpm_solver_pp_sample(denoise, x_T, linear_logsnr, times, order=3))
    assert heun < ddim and third < second < ddim


def count_calls(denoise):
    calls = []

    def counted(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return denoise(x, t)

    return counted, calls


@pytest.mark.parametrize("schedule, expected", [(COSINE, 7), (CHAIN, 6)])
def test_heun_calls_the_network_twice_per_step_but_the_first_and_into_sigma_zero(schedule,
                                                                                  expected):
    """4 steps: 7 calls on the clipped cosine (logSNR(0) = 15), 6 on a chain, whose t = 0 has
    sigma = 0 and gets EDM's final Euler step; num_evaluations says the same."""
    denoise, calls = count_calls(analytic.gaussian_denoiser(0.0, 0.25, schedule.logsnr_fn))
    times = schedule.sampling_times(4, "karras")
    jax.block_until_ready(jax.jit(lambda x: samplers.heun_sample(
        denoise, x, schedule.logsnr_fn, times))(jnp.ones((2, 1))))
    assert len(calls) == expected == samplers.num_evaluations("heun", times, schedule.logsnr_fn)
    assert samplers.num_evaluations("dpm_solver_pp", times, schedule.logsnr_fn) == 4


def mixture_spreads_and_shares(samples):
    """Each sample to its nearest component; the share of each and its std / the true std."""
    values = np.asarray(samples).ravel()
    nearest = np.argmin(np.abs(values[:, None] - MEANS[None]), axis=1)
    shares = np.array([np.mean(nearest == k) for k in range(len(MEANS))])
    spreads = np.array([values[nearest == k].std() / STDS[k] for k in range(len(MEANS))])
    return shares, spreads


@pytest.mark.parametrize("steps, grid, power, share_tolerance, tolerance", [
    (250, "logsnr", 2.0, 0.015, 0.03),  # the data law
    (10, "power", 4.0, 0.035, 0.1),
    (20, "power", 2.0, 0.015, 0.1),
])
def test_narrow_components_keep_their_spread_on_a_good_grid(steps, grid, power,
                                                            share_tolerance, tolerance):
    """DPM-Solver++(2M) from the exact mixture denoiser, 20000 pixels: each component's share
    within share_tolerance of its weight and its spread within `tolerance` of the truth
    (statistical error about 0.4% and 1%). Measured: at 10 NFE spreads 0.91-1.01 on the power-4
    grid (shares 3% off); at 20 NFE 1.03-1.04 on the power-2 grid."""
    denoise = analytic.mixture_denoiser(WEIGHTS, MEANS, STDS**2, COSINE.logsnr_fn)
    x = jax.random.normal(jax.random.PRNGKey(1), (20000, 1, 1, 1))
    times = COSINE.sampling_times(steps, grid, power=power)
    shares, spreads = mixture_spreads_and_shares(samplers.dpm_solver_pp_sample(
        denoise, x, COSINE.logsnr_fn, times))
    np.testing.assert_array_less(np.abs(shares - WEIGHTS), share_tolerance)
    np.testing.assert_array_less(np.abs(spreads - 1.0), tolerance)


def test_the_uniform_grid_loses_the_detail_at_10_steps():
    """The same sampler on the grid uniform in t blurs the components: 1.2-2x their spread."""
    denoise = analytic.mixture_denoiser(WEIGHTS, MEANS, STDS**2, COSINE.logsnr_fn)
    x = jax.random.normal(jax.random.PRNGKey(1), (20000, 1, 1, 1))
    _, spreads = mixture_spreads_and_shares(samplers.dpm_solver_pp_sample(
        denoise, x, COSINE.logsnr_fn, COSINE.sampling_times(10, "uniform")))
    assert spreads.max() > 1.2


def test_mixture_posterior_mean_hand_value():
    alpha = sigma = np.sqrt(0.5)
    x0 = analytic.mixture_x0_posterior_mean(jnp.array([0.5]), alpha, sigma, [0.5, 0.5],
                                            [-1.0, 1.0], [0.25, 0.25])
    np.testing.assert_allclose(x0, [0.5511683], rtol=1e-6)
    # One component: the Gaussian posterior mean.
    np.testing.assert_allclose(
        analytic.mixture_x0_posterior_mean(jnp.array([0.3]), 0.6, 0.8, [1.0], [0.5], [0.25]),
        analytic.gaussian_x0_posterior_mean(jnp.array([0.3]), 0.6, 0.8, 0.5, 0.25), rtol=1e-6)

