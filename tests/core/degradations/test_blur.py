"""Gaussian blur (degradations/blur.py): hand kernel values, the blur schedules, final_mean,
and an independent SciPy reference for the padding modes."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxdiff.core import degradations as dg
from test_degradations import X0


def test_gaussian_kernel_values():
    np.testing.assert_allclose(dg.gaussian_kernel_1d(3, 1.0),
                               [0.2740686, 0.4518628, 0.2740686], atol=5e-8)


@pytest.mark.parametrize("padding, scipy_mode", [("circular", "wrap"), ("reflect", "mirror")])
def test_blur_matches_scipy_convolution(padding, scipy_mode):
    """Independent reference: SciPy's 2-D convolution chain with the repo's padding modes
    (torch "circular" = SciPy "wrap"; torch "reflect" = SciPy "mirror", edge not repeated)."""
    blur = dg.GaussianBlur(num_steps=3, kernel_size=5, kernel_std=0.7, padding=padding)
    reference = np.asarray(X0, np.float64)
    for index, sigma in enumerate(blur.sigmas()):
        taps = dg.gaussian_kernel_1d(5, sigma)
        reference = np.stack([
            np.stack([ndimage.convolve(reference[b, :, :, c], np.outer(taps, taps), mode=scipy_mode)
                      for c in range(3)], -1)
            for b in range(3)])
        np.testing.assert_allclose(blur(X0, index + 1), reference, atol=1e-6)


def test_blur_schedules():
    np.testing.assert_allclose(dg.GaussianBlur(num_steps=3, kernel_std=0.1).sigmas(),
                               [0.1, 0.2, 0.3])
    np.testing.assert_allclose(
        dg.GaussianBlur(num_steps=3, kernel_std=0.01, routine="exponential").sigmas(),
        [1.0, math.exp(0.01), math.exp(0.02)])
    np.testing.assert_allclose(
        dg.GaussianBlur(num_steps=2, kernel_std=7.0, routine="constant").sigmas(), [7.0, 7.0])


def test_blur_final_mean_is_flat_channel_mean():
    """With final_mean the last step is the flat per-channel mean; circular blurs keep the mean."""
    blur = dg.GaussianBlur(num_steps=3, kernel_size=3, kernel_std=1.0, routine="constant",
                           final_mean=True)
    expected = jnp.broadcast_to(X0.mean(axis=(1, 2), keepdims=True), X0.shape)
    np.testing.assert_allclose(blur(X0, 3), expected, atol=1e-6)
