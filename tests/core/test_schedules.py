"""Hand-computed values of the noise schedules (T = 1000 where discrete)."""

import math

import jax
import numpy as np
import pytest

from jaxdiff.core import schedules

T = 1000


def test_linear_betas_endpoints_and_alpha_bar():
    betas = schedules.linear_betas(T)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    # 1000 / T scaling: half the steps, twice the betas.
    assert schedules.linear_betas(500)[-1] == pytest.approx(0.04)
    assert schedules.alphas_cumprod(betas)[499] == pytest.approx(0.0785872, rel=1e-6)


def test_cosine_betas_alpha_bar_and_clip():
    betas = schedules.cosine_betas(T)
    alpha_bar = schedules.alphas_cumprod(betas)
    assert alpha_bar[499] == pytest.approx(0.4938436, rel=1e-6)
    assert betas[999] == pytest.approx(0.999)
    # Before the clip, alpha_bar follows f(t)/f(0) of Nichol & Dhariwal eq. 17.
    f = lambda step: math.cos((step / T + 0.008) / 1.008 * math.pi / 2) ** 2
    assert alpha_bar[99] == pytest.approx(f(100) / f(0), rel=1e-9)


def test_continuous_cosine_logsnr_values():
    values = schedules.cosine_logsnr(np.array([0.0, 0.25, 0.5, 1.0]))
    np.testing.assert_allclose(values, [15.0, 1.7611832, 0.0, -15.0], atol=2e-5)


def test_shifted_cosine_64_to_256_at_half():
    shifted = schedules.resolution_shift(schedules.cosine_logsnr(0.5), 256, 64)
    assert float(jax.nn.sigmoid(shifted)) == pytest.approx(1.0 / 17.0, rel=1e-5)


def test_interpolated_shift_of_the_cosine_values():
    """Simple diffusion's 512 px schedule: the shift for 256 px at the data, for 32 px at the
    prior."""
    def interpolated(t):
        return schedules.interpolated_resolution_shift(schedules.cosine_logsnr(t), t, 512, 256, 32)

    assert float(interpolated(0.5)) == pytest.approx(-3.4657359, abs=1e-5)
    # At t = 0.25 the weights are 1/4 on the 32-shift (-2 log 16) and 3/4 on the 256-shift
    # (-2 log 2): cosine(0.25) - 0.5 log 16 - 1.5 log 2 = 1.7611832 - 3.5 log 2.
    assert float(interpolated(0.25)) == pytest.approx(1.7611832 - 3.5 * math.log(2.0), abs=1e-5)


def test_resolution_shift_divides_snr():
    assert schedules.resolution_shift(1.0, 128, 32, power=1.0) == pytest.approx(1.0 - math.log(4))
    assert schedules.resolution_shift(0.0, 256, 64) == pytest.approx(-2.0 * math.log(4))


def test_respacing_reproduces_alpha_bar_at_kept_steps():
    alpha_bar = schedules.alphas_cumprod(schedules.cosine_betas(T))
    kept = schedules.respaced_timesteps(T, 10)
    assert kept[0] == 0 and kept[-1] == T - 1 and len(kept) == 10
    np.testing.assert_array_equal(kept, [0, 111, 222, 333, 444, 555, 666, 777, 888, 999])
    respaced = schedules.alphas_cumprod(schedules.respace_betas(alpha_bar, kept))
    np.testing.assert_allclose(respaced, alpha_bar[kept], rtol=1e-8)


def test_respacing_rejects_bad_counts():
    with pytest.raises(ValueError, match="Cannot keep"):
        schedules.respaced_timesteps(T, 0)
    with pytest.raises(ValueError, match="Cannot keep"):
        schedules.respaced_timesteps(T, T + 1)


def test_discrete_logsnr_fn_grid():
    alpha_bar = schedules.alphas_cumprod(schedules.linear_betas(T))
    logsnr_fn = schedules.discrete_logsnr_fn(alpha_bar)
    steps = np.array([0, 499, 999])
    expected = np.log(alpha_bar[steps] / (1.0 - alpha_bar[steps]))
    np.testing.assert_allclose(logsnr_fn(schedules.discrete_times(steps, T)), expected, rtol=1e-6)
    assert np.isposinf(logsnr_fn(0.0))
    alpha, sigma = schedules.alpha_sigma_from_logsnr(logsnr_fn(0.0))
    assert float(alpha) == 1.0 and float(sigma) == 0.0


def test_alpha_sigma_variance_preserving():
    alpha, sigma = schedules.alpha_sigma_from_logsnr(np.array([-3.0, 0.0, 4.0]))
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.log(alpha**2 / sigma**2), [-3.0, 0.0, 4.0], atol=1e-5)
    alpha, sigma = schedules.alpha_sigma_from_alphas_cumprod(0.36)
    assert float(alpha) == pytest.approx(0.6) and float(sigma) == pytest.approx(0.8)
