"""The schedule vocabulary of the Gaussian methods: discrete chains and the continuous cosine,
their training times and sampling grids, and resolution shifts, against hand values."""

import jax
import numpy as np
import pytest

from jaxdiff.core import schedules
from jaxdiff.core.schedule_registry import SCHEDULE_NAMES, make_schedule


def test_discrete_training_times_lie_on_the_chain_grid():
    """Discrete schedules draw t = (i + 1) / T with i uniform in 0..T-1."""
    schedule = make_schedule("cosine_betas", num_timesteps=10)
    assert schedule.num_timesteps == 10
    t = np.asarray(schedule.training_times(jax.random.PRNGKey(0), 5000))
    steps = t * 10 - 1
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-5)
    assert set(np.round(steps).astype(int)) == set(range(10))
    # Respacing 10 steps to 3 keeps steps 0, 4 (round(4.5)) and 9.
    np.testing.assert_allclose(schedule.sampling_times(3), [1.0, 0.5, 0.1, 0.0])


def test_every_schedule_by_name_against_its_formula():
    linear = make_schedule("linear_betas", num_timesteps=1000)
    alpha_bar = schedules.alphas_cumprod(schedules.linear_betas(1000))
    np.testing.assert_allclose(linear.logsnr_fn(0.5), np.log(alpha_bar[499] / (1 - alpha_bar[499])),
                               rtol=1e-5)
    np.testing.assert_allclose(linear.alphas_cumprod, alpha_bar)
    continuous = make_schedule("cosine", logsnr_min=-15.0, logsnr_max=15.0)
    assert continuous.num_timesteps is None and continuous.alphas_cumprod is None
    np.testing.assert_allclose(continuous.logsnr_fn(0.5), 0.0, atol=1e-5)
    np.testing.assert_allclose(continuous.logsnr_fn(0.25), 1.7611832, rtol=1e-6)
    np.testing.assert_allclose(continuous.sampling_times(4), [1.0, 0.75, 0.5, 0.25, 0.0])
    assert set(SCHEDULE_NAMES) == {"linear_betas", "cosine_betas", "cosine"}


def test_resolution_shift_and_its_interpolation_hand_values():
    """Shifting the cosine from 64 to 256 px at t = 0.5 gives SNR 1/16 (Hoogeboom et al. 2023,
    sec. 3.1); the interpolated shift (d = 512, base 256 at the data, 32 at the prior) at
    t = 0.5 gives -3.4657359; at t = 1 it is the 32 px shift, at t = 0 the 256 px one."""
    cosine = make_schedule("cosine")
    assert cosine.shifted(64, 64, 2.0) is cosine
    np.testing.assert_allclose(cosine.shifted(256, 64, 2.0).logsnr_fn(0.5), -np.log(16.0),
                               rtol=1e-6)
    interpolated = cosine.shifted(512, 256, 2.0, prior_base_resolution=32).logsnr_fn
    np.testing.assert_allclose(interpolated(0.5), -3.4657359, rtol=1e-6)
    np.testing.assert_allclose(interpolated(1.0), -15.0 - 2 * np.log(16.0), rtol=1e-5)
    np.testing.assert_allclose(interpolated(0.0), 15.0 - 2 * np.log(2.0), rtol=1e-5)
    # A shifted discrete chain keeps its table and its grid; power 1 halves the shift.
    chain = make_schedule("cosine_betas", num_timesteps=100)
    shifted = chain.shifted(32, 8, 1.0)
    assert shifted.num_timesteps == 100 and shifted.alphas_cumprod is None
    np.testing.assert_allclose(shifted.logsnr_fn(0.5), chain.logsnr_fn(0.5) - np.log(4.0),
                               rtol=1e-6)


def test_bad_schedules_raise_one_sentence():
    with pytest.raises(ValueError, match="Unknown schedule 'sqrt'"):
        make_schedule("sqrt")
    with pytest.raises(ValueError, match="betas >= 1"):
        make_schedule("linear_betas", num_timesteps=20)
    with pytest.raises(ValueError, match="logsnr_min"):
        make_schedule("cosine", logsnr_min=5.0, logsnr_max=-5.0)
    with pytest.raises(ValueError, match="num_timesteps"):
        make_schedule("cosine_betas", num_timesteps=0)
