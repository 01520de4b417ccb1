"""Decolorization (degradations/decolorize.py): hand values of both routines and total_remove."""

import jax.numpy as jnp
import numpy as np

from jaxdiff.core import degradations as dg


def test_decolorize_hand_values():
    pixel = jnp.array([0.5, 0.2, -0.4]).reshape(1, 1, 1, 3)  # grayscale (channel mean) 0.1
    # constant routine, f = 0.9: c_2 = 0.81, x = 0.81 x0 + 0.19 * 0.1.
    np.testing.assert_allclose(dg.Decolorize()(pixel, 2).ravel(), [0.424, 0.181, -0.305], atol=1e-6)
    linear = dg.Decolorize(num_steps=4, routine="linear")
    np.testing.assert_allclose(linear.colour_fractions(), [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-12)
    # c_1 = 0.75: 0.75 * 0.5 + 0.25 * 0.1 = 0.4.
    np.testing.assert_allclose(linear(pixel, 1).ravel(), [0.4, 0.175, -0.275], atol=1e-6)
    np.testing.assert_allclose(
        dg.Decolorize(num_steps=3, total_remove=True).colour_fractions(), [1.0, 0.9, 0.81, 0.0])
