"""The Gaussian methods' shared pieces: the schedule their settings name, shifted for a side,
and one training forward pass x_t = alpha_t x0 + sigma_t eps."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.schedules import alpha_sigma_from_logsnr
from jaxdiff.methods import gaussian
from jaxdiff.methods.conditioning import Conditioning
from jaxdiff.methods.settings import GaussianSettings


def test_shift_for_takes_the_lowest_side_as_the_default_base():
    settings = GaussianSettings(schedule="cosine")
    base = gaussian.base_schedule(settings)
    assert gaussian.shift_for(base, settings, 16, 16) is base
    np.testing.assert_allclose(gaussian.shift_for(base, settings, 32, 8).logsnr_fn(0.5),
                               -2 * np.log(4.0), atol=1e-5)
    pinned = GaussianSettings(schedule="cosine", shift_base_resolution=64)
    np.testing.assert_allclose(gaussian.shift_for(base, pinned, 256, 256).logsnr_fn(0.5),
                               -np.log(16.0), rtol=1e-6)


def test_the_training_forward_corrupts_with_the_drawn_time_and_noise():
    settings = GaussianSettings(schedule="cosine")
    schedule = gaussian.base_schedule(settings)
    x0 = jnp.linspace(-1.0, 1.0, 2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    seen = {}

    def apply_fn(variables, x, t, labels=None, train=False, rngs=None):
        seen.update(x=x, t=t, labels=labels, train=train)
        return jnp.zeros_like(x)

    forward = gaussian.gaussian_training_forward(apply_fn, {}, {"image": x0},
                                                 jax.random.PRNGKey(0), schedule, Conditioning(),
                                                 settings)
    alpha, sigma = alpha_sigma_from_logsnr(schedule.logsnr_fn(forward.t))
    expected = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * forward.noise
    np.testing.assert_allclose(forward.x_t, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(seen["x"], forward.x_t)
    assert seen["train"] and seen["labels"] is None and forward.output.shape == x0.shape
