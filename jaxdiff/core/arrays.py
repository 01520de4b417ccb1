"""Array helpers shared by the core math."""

import jax.numpy as jnp


def expand_to(values, x):
    """Append trailing unit axes to `values` so it broadcasts against `x`.

    A per-sample quantity of shape (B,) becomes (B, 1, 1, 1) for an NHWC batch; a scalar stays
    a scalar. Used wherever a per-sample alpha, sigma or t multiplies an image.
    """
    values = jnp.asarray(values)
    return jnp.reshape(values, values.shape + (1,) * (jnp.ndim(x) - values.ndim))
