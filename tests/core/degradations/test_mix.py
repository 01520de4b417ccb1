"""Mixing with another dataset's image (degradations/mix.py): hand values of the cosine schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import degradations as dg


def test_mix_hand_values():
    """abar_s = f(s/T)/f(0), f(t) = cos^2((t + 0.008)/1.008 pi/2); T = 4, x0 = 0.6, z = -0.2."""
    mix = dg.MixImages(num_steps=4)
    np.testing.assert_allclose(mix.alpha_bars()[1:3], [0.8470122, 0.4938436], atol=1e-7)
    x0, z = jnp.full((2, 1, 1, 1), 0.6), jnp.full((2, 1, 1, 1), -0.2)
    out = mix(x0, jnp.array([1, 2]), z).ravel()
    np.testing.assert_allclose(out, [0.4739723, 0.2793547], atol=1e-6)
    with pytest.raises(ValueError, match="other"):
        mix.sample_aux(jax.random.key(0), x0, None)
