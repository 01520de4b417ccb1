"""Forward processes, posteriors and the Matryoshka pyramid, against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import processes, schedules

T = 1000


def test_gaussian_corrupt_at_logsnr_zero():
    x_t = processes.gaussian_corrupt(np.full((1, 1, 1, 1), 0.5), np.ones((1, 1, 1, 1)), 0.0)
    assert float(x_t[0, 0, 0, 0]) == pytest.approx(1.5 / math.sqrt(2.0), rel=1e-6)


def test_posterior_matches_ddpm_eq7_on_linear_table():
    """Ho et al. 2020 eq. 7: mean = c0 x0 + ct x_t, variance = beta_tilde."""
    betas = schedules.linear_betas(T)
    alpha_bar = schedules.alphas_cumprod(betas)
    logsnr_fn = schedules.discrete_logsnr_fn(alpha_bar)
    steps = np.array([1, 10, 500, 999])
    prev = alpha_bar[steps - 1]
    coef_x0 = np.sqrt(prev) * betas[steps] / (1.0 - alpha_bar[steps])
    coef_xt = np.sqrt(1.0 - betas[steps]) * (1.0 - prev) / (1.0 - alpha_bar[steps])
    beta_tilde = (1.0 - prev) / (1.0 - alpha_bar[steps]) * betas[steps]

    logsnr_t = logsnr_fn(schedules.discrete_times(steps, T))
    logsnr_s = logsnr_fn(schedules.discrete_times(steps - 1, T))
    ones, zeros = np.ones((4, 1, 1, 1)), np.zeros((4, 1, 1, 1))
    mean_x0, variance = processes.gaussian_posterior(zeros, ones, logsnr_t, logsnr_s)
    mean_xt, _ = processes.gaussian_posterior(ones, zeros, logsnr_t, logsnr_s)
    np.testing.assert_allclose(mean_x0[:, 0, 0, 0], coef_x0, rtol=2e-4)
    np.testing.assert_allclose(mean_xt[:, 0, 0, 0], coef_xt, rtol=2e-4)
    np.testing.assert_allclose(variance, beta_tilde, rtol=2e-4)
    np.testing.assert_allclose(processes.gaussian_posterior_variance(logsnr_t, logsnr_s),
                               beta_tilde, rtol=2e-4)
    np.testing.assert_allclose(processes.gaussian_transition_variance(logsnr_t, logsnr_s),
                               betas[steps], rtol=2e-4)


def test_posterior_into_the_data_is_exact():
    """The step from t_0 into t = 0 (logSNR +inf): mean x0, variance 0, beta = beta_0."""
    alpha_bar = schedules.alphas_cumprod(schedules.linear_betas(T))
    logsnr_fn = schedules.discrete_logsnr_fn(alpha_bar)
    x_t, x0 = np.full((1, 1, 1, 1), 3.0), np.full((1, 1, 1, 1), -0.25)
    mean, variance = processes.gaussian_posterior(x_t, x0, logsnr_fn(1.0 / T), logsnr_fn(0.0))
    assert float(mean[0, 0, 0, 0]) == pytest.approx(-0.25) and float(variance) == 0.0
    beta_0 = processes.gaussian_transition_variance(logsnr_fn(1.0 / T), logsnr_fn(0.0))
    assert float(beta_0) == pytest.approx(1e-4, rel=1e-3)


def test_learned_range_log_variance_interpolates():
    log_beta, log_beta_tilde = np.log(np.array([0.02])), np.log(np.array([0.01]))
    v = np.array([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3)
    log_var = processes.learned_range_log_variance(v, log_beta, log_beta_tilde)
    np.testing.assert_allclose(log_var[0, 0, 0], np.log([0.01, math.sqrt(0.0002), 0.02]),
                               rtol=1e-6)


def test_attenuation_forward_and_posterior():
    x0, eps, t = np.full((1, 1, 1, 1), 0.5), np.ones((1, 1, 1, 1)), np.array([0.25])
    x_t = processes.attenuation_corrupt(x0, eps, t)
    assert float(x_t[0, 0, 0, 0]) == pytest.approx(0.875)
    mean, variance = processes.attenuation_posterior(x_t, -x0, eps, t, 0.05)
    assert float(mean[0, 0, 0, 0]) == pytest.approx(0.8, abs=1e-6)
    assert math.sqrt(float(variance[0])) == pytest.approx(0.2, abs=1e-6)
    # At t = 1 the process is pure noise.
    assert float(processes.attenuation_corrupt(x0, eps, np.array([1.0]))[0, 0, 0, 0]) == 1.0


IMAGE_4X4 = np.array([[1.0, 3.0, 0.0, 2.0],
                      [5.0, 7.0, 4.0, 6.0],
                      [8.0, 8.0, 1.0, 1.0],
                      [0.0, 0.0, 1.0, 5.0]]).reshape(1, 4, 4, 1)


def test_image_pyramid_by_average_pooling():
    full, half, single = processes.image_pyramid(IMAGE_4X4, (1, 2, 4))
    np.testing.assert_array_equal(full, IMAGE_4X4)
    np.testing.assert_allclose(half[0, :, :, 0], [[4.0, 3.0], [4.0, 2.0]])
    np.testing.assert_allclose(single[0, :, :, 0], [[13.0 / 4.0]])


def test_image_pyramid_rejects_bad_factors():
    with pytest.raises(ValueError, match="strictly increasing"):
        processes.image_pyramid(IMAGE_4X4, (2, 1))
    with pytest.raises(ValueError, match="strictly increasing"):
        processes.image_pyramid(IMAGE_4X4, ())
    with pytest.raises(ValueError, match="Cannot average-pool a 4x4 image by 3"):
        processes.image_pyramid(IMAGE_4X4, (1, 3))


def test_corrupt_pyramid_one_logsnr_per_level():
    """MDM: each level noised with its own shifted schedule at the same t, independent noise."""
    base = schedules.cosine_logsnr
    logsnr_fns = [lambda t: schedules.resolution_shift(base(t), 4, 1),   # 4x4 level
                  base]                                                   # 1x1 level
    pyramid = processes.image_pyramid(jnp.full((2, 4, 4, 1), 0.5), (1, 4))
    noises = processes.pyramid_noise(jax.random.key(0), pyramid)
    assert [n.shape for n in noises] == [(2, 4, 4, 1), (2, 1, 1, 1)]
    assert not np.allclose(noises[0][:, :1, :1], noises[1])
    t = jnp.array([0.5, 0.25])
    logsnrs = processes.pyramid_logsnrs(logsnr_fns, t)
    np.testing.assert_allclose(logsnrs[0], [-2.0 * math.log(4.0), 1.7611832 - 2 * math.log(4.0)],
                               atol=1e-5)
    noisy = processes.corrupt_pyramid(pyramid, noises, logsnrs)
    for level, noise, logsnr, x_t in zip(pyramid, noises, logsnrs, noisy):
        alpha = np.sqrt(1.0 / (1.0 + np.exp(-np.asarray(logsnr))))[:, None, None, None]
        np.testing.assert_allclose(x_t, alpha * 0.5 + np.sqrt(1.0 - alpha**2) * noise,
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="must match one to one"):
        processes.corrupt_pyramid(pyramid, noises[:1], logsnrs)
