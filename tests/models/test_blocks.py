"""Tests of jaxdiff/models/blocks.py (resolution changes, residual block, output head): values
computed by hand from the formulas in the docstrings."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.models.blocks import (ConvResample, OutputHead, ResBlock, average_pool_2x,
                                   nearest_upsample_2x)
from jaxdiff.models.layers import remat_if
from test_layers import KEY, assert_same_value_and_grad, fast_jit


# ----------------------------------------------------------------------------------------------
# Resolution changes.


def test_resampling_values():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(average_pool_2x(x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    up = nearest_upsample_2x(jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1))
    np.testing.assert_array_equal(
        up[0, :, :, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    with pytest.raises(ValueError, match="Cannot average-pool a 3x4 image by 2"):
        average_pool_2x(jnp.ones((1, 3, 4, 1)))


def test_down_and_up_blocks_shapes():
    x = jnp.ones((2, 8, 8, 4))
    down = ConvResample(6, "down")
    assert down.apply(down.init(KEY, x), x).shape == (2, 4, 4, 6)
    up = ConvResample(6, "up")
    assert up.apply(up.init(KEY, x), x).shape == (2, 16, 16, 6)
    with pytest.raises(ValueError, match="even height and width"):
        down.init(KEY, jnp.ones((1, 5, 4, 4)))
    with pytest.raises(ValueError, match="direction must be one of"):
        ConvResample(6, "sideways").init(KEY, x)


# ----------------------------------------------------------------------------------------------
# Residual block.


def test_res_block_is_identity_or_skip_at_init():
    x = jax.random.normal(KEY, (2, 4, 4, 8))
    emb = jax.random.normal(KEY, (2, 12))
    same = ResBlock(8, num_groups=4)
    np.testing.assert_array_equal(same.apply(same.init(KEY, x, emb), x, emb), x)
    # Zero last conv: out = skip(x) = 1x1 conv of the average-pooled x.
    wider_down = ResBlock(16, num_groups=4, resample="down")
    variables = wider_down.init(KEY, x, emb)
    skip = variables["params"]["skip"]["conv"]
    expected = average_pool_2x(x) @ skip["kernel"].value[0, 0] + skip["bias"].value
    np.testing.assert_allclose(wider_down.apply(variables, x, emb), expected, atol=1e-5)


def test_res_block_film_and_additive_conditioning_shapes():
    x, emb = jnp.ones((1, 4, 4, 8)), jnp.ones((1, 12))
    film = ResBlock(8, num_groups=4).init(KEY, x, emb)["params"]["emb_proj"]["dense"]
    additive = ResBlock(8, num_groups=4, scale_shift=False).init(KEY, x, emb)
    assert film["kernel"].value.shape == (12, 16)  # scale and shift
    assert additive["params"]["emb_proj"]["dense"]["kernel"].value.shape == (12, 8)


def test_res_block_rejects_unknown_resample():
    with pytest.raises(ValueError, match="Unknown resample"):
        ResBlock(8, num_groups=4, resample="sideways").init(
            KEY, jnp.ones((1, 4, 4, 8)), jnp.ones((1, 4)))


@pytest.mark.parametrize("policy", [True, "full", "dots_with_no_batch_dims_saveable"])
def test_remat_gives_identical_values_and_gradients(policy):
    assert remat_if(ResBlock, False) is ResBlock and remat_if(ResBlock, "none") is ResBlock
    x = jax.random.normal(KEY, (2, 4, 4, 8))
    emb = jax.random.normal(jax.random.key(1), (2, 12))
    plain = ResBlock(8, dropout=0.5, num_groups=4, zero_init_last=False)
    remat = remat_if(ResBlock, policy, static_argnums=(3,))(
        8, dropout=0.5, num_groups=4, zero_init_last=False)
    params = nn.unbox(plain.init(KEY, x, emb)["params"])

    def loss(module, params):
        out = module.apply({"params": params}, x, emb, True, rngs={"dropout": KEY})
        return jnp.sum(out**2)

    value_and_grad = lambda module: fast_jit(
        jax.value_and_grad(lambda p: loss(module, p)))
    assert_same_value_and_grad(value_and_grad(remat)(params), value_and_grad(plain)(params))


# ----------------------------------------------------------------------------------------------
# Output head.


def test_output_head_is_zero_and_float32_at_init():
    x = jax.random.normal(KEY, (2, 4, 4, 8)).astype(jnp.bfloat16)
    module = OutputHead(3, num_groups=4, dtype=jnp.bfloat16)
    out = module.apply(module.init(KEY, x), x)
    assert out.dtype == jnp.float32 and out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out, 0.0)
