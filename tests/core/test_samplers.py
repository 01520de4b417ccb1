"""Samplers driven by the exact Gaussian denoiser must reproduce the data distribution.

Statistical tolerance: with N independent samples per pixel, the sample mean has standard error
s / sqrt(N) and the sample variance s^2 sqrt(2 / (N - 1)). Each check allows 5 standard errors
(a false alarm has probability < 1e-6 per pixel) plus the sampler's own discretization bias on
Gaussian data for the grid used, computed beforehand by propagating the (linear-Gaussian) chain's
mean and variance exactly: at most 2% of s^2 in variance for the grids below (DPM-Solver++(2M)
on 25 steps is 1.9% high and DDPM fixedsmall on 1000 steps 1.6% low at s^2 = 0.25; DDIM eta = 0
on 1000 steps 0.6% low) and 0.004 in mean (the prior N(0, 1) differs from the true x_T by
alpha_T m, which a deterministic sampler carries to the output: 0.0016 at m = 0.5).
For analytic attenuation the exact chain moments are computed here (attenuation_chain_moments).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import (analytic, attenuation_samplers, processes, samplers, schedules,
                          time_grids)

NUM_SAMPLES = 8192
MEAN = np.array([-0.5, 0.0, 0.25, 0.5], dtype=np.float32).reshape(2, 2, 1)
VARIANCE = np.array([0.25, 0.5, 0.75, 1.0], dtype=np.float32).reshape(2, 2, 1)
DISCRETIZATION_VARIANCE_BIAS = 0.02
DISCRETIZATION_MEAN_BIAS = 0.004

DISCRETE_LOGSNR = schedules.discrete_logsnr_fn(schedules.alphas_cumprod(
    schedules.linear_betas(1000)))
FULL_CHAIN = time_grids.respaced_time_grid(1000, 1000)


def uniform_grid(num_steps):
    return time_grids.time_grid("uniform", num_steps)


def linear_logsnr(t):
    """logSNR(t) = 10 - 20 t: uniform in logSNR, the grid DPM-Solver++ works best on."""
    return 10.0 - 20.0 * t


def assert_matches_gaussian(samples, mean, variance, variance_bias=DISCRETIZATION_VARIANCE_BIAS):
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[0]
    mean_tol = 5.0 * np.sqrt(variance / n) + DISCRETIZATION_MEAN_BIAS
    variance_tol = variance * (5.0 * np.sqrt(2.0 / (n - 1)) + variance_bias)
    np.testing.assert_array_less(np.abs(samples.mean(axis=0) - mean), mean_tol)
    np.testing.assert_array_less(np.abs(samples.var(axis=0, ddof=1) - variance), variance_tol)


@pytest.fixture(scope="module")
def x_T():
    return jax.random.normal(jax.random.PRNGKey(0), (NUM_SAMPLES, 2, 2, 1))


# ----------------------------------------------------------------------------------------------
# Hand values.


def test_ddim_sigma_hand_value():
    # eta sqrt((1 - abar_479) / (1 - abar_499)) sqrt(1 - abar_499 / abar_479), linear betas.
    sigma = samplers.ddim_sigma(DISCRETE_LOGSNR(500 / 1000), DISCRETE_LOGSNR(480 / 1000), 1.0)
    np.testing.assert_allclose(sigma, 0.4198452, rtol=2e-6)


# ----------------------------------------------------------------------------------------------
# Exact-denoiser tests: DDPM on the full 1000-step linear chain.


@pytest.mark.parametrize("variance", ["fixedsmall", "fixedlarge"])
def test_ddpm_reproduces_gaussian_data(x_T, variance):
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, DISCRETE_LOGSNR, "eps")
    sample = jax.jit(lambda x: samplers.ddpm_sample(
        denoise, jax.random.PRNGKey(1), x, DISCRETE_LOGSNR, FULL_CHAIN, variance=variance))
    assert_matches_gaussian(sample(x_T), MEAN, VARIANCE)


@pytest.mark.parametrize("variance_output, equivalent", [(-1.0, "fixedsmall"),
                                                         (1.0, "fixedlarge")])
def test_ddpm_learned_range_endpoints(x_T, variance_output, equivalent):
    """v = -1 gives beta_tilde and v = +1 gives beta: the same samples as fixedsmall/fixedlarge,
    which reproduce the data above (respaced 100-step chain)."""
    times = time_grids.respaced_time_grid(1000, 100)
    eps_denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, DISCRETE_LOGSNR, "eps")

    def learned_denoise(x, t):
        return eps_denoise(x, t), jnp.full_like(x, variance_output)

    x = x_T[:256]
    rng = jax.random.PRNGKey(3)
    learned = samplers.ddpm_sample(learned_denoise, rng, x, DISCRETE_LOGSNR, times,
                                   variance="learned_range")
    fixed = samplers.ddpm_sample(eps_denoise, rng, x, DISCRETE_LOGSNR, times,
                                 variance=equivalent)
    np.testing.assert_allclose(learned, fixed, atol=2e-5)


def test_ddpm_fixedlarge_is_exact_for_unit_variance_on_a_continuous_schedule(x_T):
    """For N(m, 1) data the true reverse kernel has variance beta at any step size.

    So fixedlarge on only 20 steps of the clipped cosine schedule (sampled as ancestral steps
    between continuous times) has no discretization bias: 5 standard errors, no allowance.
    """
    logsnr_fn = functools.partial(schedules.cosine_logsnr, logsnr_min=-10.0, logsnr_max=10.0)
    denoise = analytic.gaussian_denoiser(MEAN, 1.0, logsnr_fn, "v")
    samples = jax.jit(lambda x: samplers.ddpm_sample(
        denoise, jax.random.PRNGKey(5), x, logsnr_fn, uniform_grid(20),
        parameterization="v", variance="fixedlarge"))(x_T)
    assert_matches_gaussian(samples, MEAN, np.ones_like(VARIANCE), variance_bias=0.0)


@pytest.mark.parametrize("variance", ["fixedsmall", "fixedlarge", "learned_range", "ddim"])
def test_last_step_returns_the_mean(variance):
    """On a one-step grid t = 1 -> 0 (logSNR -10 -> 10) the output is the posterior mean,
    whatever the key: no noise is added on the step into the end of the grid."""
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, linear_logsnr, "eps")
    x = jax.random.normal(jax.random.PRNGKey(12), (4, 2, 2, 1))
    times = np.array([1.0, 0.0])

    def run(key):
        if variance == "ddim":
            return samplers.ddim_sample(denoise, key, x, linear_logsnr, times, eta=1.0)
        if variance == "learned_range":
            return samplers.ddpm_sample(lambda y, t: (denoise(y, t), jnp.zeros_like(y)), key,
                                        x, linear_logsnr, times, variance=variance)
        return samplers.ddpm_sample(denoise, key, x, linear_logsnr, times, variance=variance)

    alpha, sigma = schedules.alpha_sigma_from_logsnr(linear_logsnr(1.0))
    x0 = analytic.gaussian_x0_posterior_mean(x, alpha, sigma, MEAN, VARIANCE)
    mean, _ = processes.gaussian_posterior(x, x0, linear_logsnr(1.0), linear_logsnr(0.0))
    first, second = run(jax.random.PRNGKey(0)), run(jax.random.PRNGKey(1))
    np.testing.assert_array_equal(first, second)
    # float32 round-off of x0 = (x_t - sigma eps) / alpha at alpha = 0.0067; the omitted noise
    # would have standard deviation sqrt(beta_tilde) = 0.0067.
    np.testing.assert_allclose(first, mean, atol=2e-4)


# ----------------------------------------------------------------------------------------------
# DDIM and DPM-Solver++.


def test_ddim_eta0_reproduces_gaussian_data(x_T):
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, DISCRETE_LOGSNR, "eps")
    samples = jax.jit(lambda x: samplers.ddim_sample(
        denoise, jax.random.PRNGKey(6), x, DISCRETE_LOGSNR, FULL_CHAIN, eta=0.0))(x_T)
    assert_matches_gaussian(samples, MEAN, VARIANCE)


def test_ddim_eta1_equals_ancestral_fixedsmall():
    """Same mean, variance and noise draws: identical samples (respaced 100-step chain)."""
    times = time_grids.respaced_time_grid(1000, 100)
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, DISCRETE_LOGSNR, "eps")
    x = jax.random.normal(jax.random.PRNGKey(7), (256, 2, 2, 1))
    rng = jax.random.PRNGKey(8)
    ddim = samplers.ddim_sample(denoise, rng, x, DISCRETE_LOGSNR, times, eta=1.0)
    ddpm = samplers.ddpm_sample(denoise, rng, x, DISCRETE_LOGSNR, times, variance="fixedsmall")
    np.testing.assert_allclose(ddim, ddpm, atol=1e-4)


def test_ddim_eta1_reproduces_gaussian_data(x_T):
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, DISCRETE_LOGSNR, "x0")
    samples = jax.jit(lambda x: samplers.ddim_sample(
        denoise, jax.random.PRNGKey(9), x, DISCRETE_LOGSNR, FULL_CHAIN, parameterization="x0",
        eta=1.0))(x_T)
    assert_matches_gaussian(samples, MEAN, VARIANCE)


def test_dpm_solver_pp_2m_reproduces_gaussian_data_in_25_steps(x_T):
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, linear_logsnr, "v")
    samples = jax.jit(lambda x: samplers.dpm_solver_pp_sample(
        denoise, x, linear_logsnr, uniform_grid(25), parameterization="v"))(x_T)
    assert_matches_gaussian(samples, MEAN, VARIANCE)


def test_dpm_solver_pp_2m_second_order_beats_first_order(x_T):
    """On 8 steps the exact chain moments give Var/s^2 = 1.06-1.08 for 2M and 0.53-0.54 for
    DDIM (first order); the samples must show the same ordering."""
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, linear_logsnr, "eps")
    times = uniform_grid(8)
    dpm = samplers.dpm_solver_pp_sample(denoise, x_T, linear_logsnr, times)
    ddim = samplers.ddim_sample(denoise, None, x_T, linear_logsnr, times)
    dpm_error = np.abs(np.var(dpm, axis=0) / VARIANCE - 1.0).max()
    ddim_error = np.abs(np.var(ddim, axis=0) / VARIANCE - 1.0).max()
    assert dpm_error < 0.15 < 0.4 < ddim_error


def test_dpm_solver_pp_2m_lower_order_final_step(x_T):
    """On the clipped cosine schedule, uniform in t, the last step (into logSNR 15) is far longer
    in lambda than the one before: a second-order last step overshoots the variance by 1.4-2.2x
    at 10 steps, a first-order one (the default) stays within 10%. With 2 steps the default is
    first order throughout, i.e. DDIM(eta = 0)."""
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, schedules.cosine_logsnr, "v")
    times = uniform_grid(10)
    sample = jax.jit(lambda x, final: samplers.dpm_solver_pp_sample(
        denoise, x, schedules.cosine_logsnr, times, parameterization="v",
        lower_order_final=final), static_argnums=1)
    ratio = np.var(sample(x_T, True), axis=0) / VARIANCE
    overshoot = np.var(sample(x_T, False), axis=0) / VARIANCE
    np.testing.assert_array_less(np.abs(ratio - 1.0), 0.1)
    assert overshoot.min() > 1.3
    two = uniform_grid(2)
    np.testing.assert_allclose(
        samplers.dpm_solver_pp_sample(denoise, x_T[:8], schedules.cosine_logsnr, two,
                                         parameterization="v"),
        samplers.ddim_sample(denoise, None, x_T[:8], schedules.cosine_logsnr, two,
                             parameterization="v"), atol=1e-6)


def test_x0_transform_is_applied():
    """With clipping, DDIM's x0 estimates stay in [-1, 1] even for data centered at 3.

    The output is alpha_0 x0_hat + sigma_0 eps_hat at logSNR = 10 (sigma_0 = 0.0067), so it may
    exceed 1 by a few sigma_0 only.
    """
    denoise = analytic.gaussian_denoiser(3.0, 0.01, linear_logsnr, "eps")
    x = jax.random.normal(jax.random.PRNGKey(8), (64, 2, 2, 1))
    clipped = samplers.ddim_sample(denoise, None, x, linear_logsnr, uniform_grid(5),
                                   x0_transform=lambda x0: jnp.clip(x0, -1.0, 1.0))
    free = samplers.ddim_sample(denoise, None, x, linear_logsnr, uniform_grid(5))
    assert float(jnp.max(jnp.abs(clipped))) <= 1.05
    np.testing.assert_allclose(free.mean(), 3.0, atol=0.05)


# ----------------------------------------------------------------------------------------------
# Matryoshka diffusion: joint sampling of a two-level pyramid with shifted schedules.


def test_mdm_joint_pyramid_sampling():
    high_mean = np.linspace(-0.5, 0.5, 16, dtype=np.float32).reshape(4, 4, 1)
    high_variance = np.linspace(0.25, 1.0, 16, dtype=np.float32).reshape(4, 4, 1)
    # The 2 px level keeps more signal: logSNR shifted by +2 log 2 (resolution_shift 2 vs 4).
    low_logsnr = lambda t: schedules.resolution_shift(linear_logsnr(t), 2.0, 4.0)  # noqa: E731
    logsnr_fns = [linear_logsnr, low_logsnr]
    denoise = analytic.pyramid_gaussian_denoiser(high_mean, high_variance, logsnr_fns, "eps")
    keys = jax.random.split(jax.random.PRNGKey(11))
    state = [jax.random.normal(keys[0], (8192, 4, 4, 1)),
             jax.random.normal(keys[1], (8192, 2, 2, 1))]
    high, low = jax.jit(lambda x: samplers.dpm_solver_pp_sample(
        denoise, x, logsnr_fns, uniform_grid(25)))(state)
    pool = lambda x: np.asarray(processes.average_pool(jnp.asarray(x), 2))  # noqa: E731
    assert_matches_gaussian(high, high_mean, high_variance)
    # Low level: N(pool(m), sum of the block's s^2 / 16).
    assert_matches_gaussian(low, pool(high_mean[None])[0], pool(high_variance[None])[0] / 4.0)
    # Consistent with the pooled high level: only the residual noise of t = 0 (sigma < 0.01).
    np.testing.assert_array_less(np.abs(pool(high) - np.asarray(low)), 0.05)


# ----------------------------------------------------------------------------------------------
# One compiled program per (shape, steps); the step loop is a single scan.


def _sampler_calls():
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, linear_logsnr, "eps")
    att = analytic.attenuation_gaussian_denoiser(MEAN, VARIANCE)
    rng = jax.random.PRNGKey(0)
    return {
        "ddpm": lambda x, times: samplers.ddpm_sample(denoise, rng, x, linear_logsnr, times),
        "ddim": lambda x, times: samplers.ddim_sample(denoise, rng, x, linear_logsnr, times,
                                                      eta=0.5),
        "dpm_solver_pp_2m": lambda x, times: samplers.dpm_solver_pp_sample(
            denoise, x, linear_logsnr, times),
        "attenuation": lambda x, times: attenuation_samplers.attenuation_sample(att, rng, x, times),
        "attenuation_ode": lambda x, times: attenuation_samplers.attenuation_ode_sample(
            att, x, times),
    }


@pytest.mark.parametrize("name", sorted(_sampler_calls()))
def test_compiles_once_and_loops_in_one_scan(name):
    call = _sampler_calls()[name]
    x = jnp.zeros((2, 2, 2, 1))
    jaxprs = [jax.make_jaxpr(call)(x, uniform_grid(n)) for n in (4, 8)]
    primitives = [[eqn.primitive.name for eqn in j.jaxpr.eqns] for j in jaxprs]
    assert primitives[0] == primitives[1]
    assert primitives[0].count("scan") == 1
    hlo = [len(jax.jit(call).lower(x, uniform_grid(n)).as_text().splitlines())
           for n in (4, 8)]
    assert hlo[0] == hlo[1]
    traces = []

    def traced_call(x, times):
        traces.append(times.shape)
        return call(x, times)

    jitted = jax.jit(traced_call)
    jitted(x, uniform_grid(4))
    jitted(x, time_grids.time_grid("power", 4, power=2.0))  # same length: no retrace
    assert traces == [(5,)]


# ----------------------------------------------------------------------------------------------
# Bad input.


def test_bad_arguments_fail_clearly(x_T):
    denoise = analytic.gaussian_denoiser(MEAN, VARIANCE, linear_logsnr, "eps")
    x = x_T[:2]
    with pytest.raises(ValueError, match="Unknown DDPM variance"):
        samplers.ddpm_sample(denoise, None, x, linear_logsnr, uniform_grid(2),
                             variance="fixed")
    with pytest.raises(ValueError, match="Unknown parameterization"):
        samplers.ddim_sample(denoise, None, x, linear_logsnr, uniform_grid(2),
                             parameterization="score")
    with pytest.raises(ValueError, match="decrease strictly"):
        samplers.ddim_sample(denoise, None, x, linear_logsnr, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        samplers.ddim_sample(denoise, None, x, linear_logsnr, uniform_grid(2), eta=-1.0)
    with pytest.raises(ValueError, match="at least one step"):
        uniform_grid(0)
