"""Pixelation (degradations/pixelate.py): hand block-average values."""

import jax.numpy as jnp
import numpy as np

from jaxdiff.core import degradations as dg


def test_pixelate_hand_values():
    image = jnp.arange(16.0).reshape(1, 4, 4, 1) / 16.0
    pixelate = dg.Pixelate(num_steps=2)
    level1 = np.asarray(pixelate(image, 1))[0, :, :, 0]
    # 2x2 block means: (0+1+4+5)/64, (2+3+6+7)/64, (8+9+12+13)/64, (10+11+14+15)/64.
    np.testing.assert_allclose(level1[:2, :2], 0.15625)
    np.testing.assert_allclose(level1[:2, 2:], 0.28125)
    np.testing.assert_allclose(level1[2:, :2], 0.65625)
    np.testing.assert_allclose(level1[2:, 2:], 0.78125)
    np.testing.assert_allclose(pixelate(image, 2), 7.5 / 16.0)
