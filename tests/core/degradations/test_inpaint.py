"""Gaussian-mask inpainting (degradations/inpaint.py): hand mask values and random centres."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import degradations as dg


def test_inpaint_mask_hand_values():
    """Centred hole at (3, 3) on 8x8, sigma_i = 0.1 (i + 11):
    M_2 = (1 - e^{-d2/2.42})(1 - e^{-d2/2.88})."""
    inpaint = dg.GaussianMaskInpaint(num_steps=2)
    ones = jnp.ones((1, 8, 8, 1))
    mask = np.asarray(inpaint(ones, 2))[0, :, :, 0]
    assert mask[3, 3] == 0.0
    np.testing.assert_allclose(mask[3, 5], 0.6069023, atol=1e-6)  # d2 = 4
    np.testing.assert_allclose(mask[1, 2], 0.7194398, atol=1e-6)  # d2 = 5
    np.testing.assert_allclose(np.asarray(inpaint(ones, 1))[0, 3, 5, 0], 0.8085048, atol=1e-6)
    # Random centre (-1, 6): pixel (0, 7) has d2 = 2, so M_1 = 1 - e^{-2/2.42}.
    random = dg.GaussianMaskInpaint(num_steps=2, random_centre=True)
    value = random(ones, 1, jnp.array([[-1, 6]], jnp.int32))[0, 0, 7, 0]
    np.testing.assert_allclose(value, 0.5623984, atol=1e-6)


def test_inpaint_random_centres_range():
    """The repo's crops put the centre uniformly on -1..N-1 per axis."""
    inpaint = dg.GaussianMaskInpaint(num_steps=2, random_centre=True)
    centres = np.asarray(inpaint.sample_aux(jax.random.key(0), jnp.zeros((4000, 4, 6, 1))))
    assert centres.dtype == np.int32
    assert set(centres[:, 0]) == set(range(-1, 4)) and set(centres[:, 1]) == set(range(-1, 6))
    with pytest.raises(ValueError, match="centres"):
        inpaint(jnp.zeros((1, 4, 4, 1)), 1)
