"""Tests of jaxdiff/models/attention.py: values computed by hand from the formulas in the
docstrings."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_layers import KEY, assert_logical_axes

from jaxdiff.models.attention import (AttentionBlock, FeedForward, MultiHeadAttention, attend,
                                      attention_weights, num_attention_heads)


def test_attention_weights_are_float32_softmax_even_for_bfloat16():
    q = jax.random.normal(KEY, (2, 5, 3, 4)).astype(jnp.bfloat16)
    k = jax.random.normal(jax.random.key(1), (2, 6, 3, 4)).astype(jnp.bfloat16)
    weights = attention_weights(q, k)
    assert weights.dtype == jnp.float32 and weights.shape == (2, 3, 5, 6)
    logits = np.einsum("bqhd,bkhd->bhqk", np.asarray(q, np.float64),
                       np.asarray(k, np.float64)) / 2.0  # sqrt(d) = 2
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, atol=1e-6)


def test_multi_head_attention_matches_hand_computation():
    x = jax.random.normal(KEY, (1, 3, 4))
    source = jax.random.normal(jax.random.key(1), (1, 2, 5))
    module = MultiHeadAttention(num_heads=2, zero_init_out=False)
    variables = module.init(KEY, x, source)
    p = jax.tree.map(np.asarray, nn.unbox(variables["params"]))

    def proj(name, h):
        return np.asarray(h) @ p[name]["dense"]["kernel"] + p[name]["dense"]["bias"]

    q = proj("query", x).reshape(1, 3, 2, 2)
    k = proj("key", source).reshape(1, 2, 2, 2)
    v = proj("value", source).reshape(1, 2, 2, 2)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(2)
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    heads = np.einsum("bhqk,bkhd->bqhd", w, v).reshape(1, 3, 4)
    np.testing.assert_allclose(module.apply(variables, x, source), proj("out", heads),
                               atol=1e-5)


def test_num_attention_heads():
    assert num_attention_heads(128, 4, None) == 4
    assert num_attention_heads(192, 1, 64) == 3
    with pytest.raises(ValueError, match="head_channels"):
        num_attention_heads(96, 1, 64)
    with pytest.raises(ValueError, match="num_heads"):
        num_attention_heads(96, 5, None)


def test_attention_block_identity_at_init():
    x = jax.random.normal(KEY, (2, 4, 4, 8)).astype(jnp.bfloat16)
    context = jax.random.normal(KEY, (2, 3, 5))
    module = AttentionBlock(num_heads=2, num_groups=4, dtype=jnp.bfloat16)
    variables = module.init(KEY, x, context)
    assert_logical_axes(variables["params"])
    np.testing.assert_array_equal(module.apply(variables, x, context), x)


@pytest.mark.parametrize("dtype, atol", [(jnp.float32, 1e-6), (jnp.bfloat16, 2e-2)])
def test_attend_equals_float32_weights_times_values(dtype, atol):
    """jax.nn.dot_product_attention (attend) against attention_weights' float32 softmax, with a
    mask whose second row is all masked (output 0)."""
    q, k, v = (jax.random.normal(jax.random.key(i), shape).astype(dtype) for i, shape in
               enumerate([(2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 4)]))
    expected = jnp.einsum("bhqk,bkhd->bqhd", attention_weights(q, k), v.astype(jnp.float32))
    out = attend(q, k, v)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.astype(jnp.float32), expected, atol=atol)
    mask = jnp.array([[True, False, True, True, False, True], [False] * 6])
    masked = jnp.einsum("bhqk,bkhd->bqhd", attention_weights(q, k, mask), v.astype(jnp.float32))
    np.testing.assert_allclose(attend(q, k, v, mask).astype(jnp.float32), masked, atol=atol)
    np.testing.assert_array_equal(attend(q, k, v, mask)[1], 0.0)
    with pytest.raises(ValueError, match="implementation"):
        attend(q, k, v, implementation="flash")


def test_feed_forward_identity_at_init():
    x = jax.random.normal(KEY, (2, 5, 8))
    module = FeedForward(mult=2)
    np.testing.assert_array_equal(module.apply(module.init(KEY, x), x), x)


def test_masked_attention_equals_attention_over_the_unmasked_keys():
    x = jax.random.normal(KEY, (2, 3, 4))
    source = jax.random.normal(jax.random.key(1), (2, 5, 6))
    mask = jnp.array([[True, False, True, True, False], [False, False, False, True, True]])
    module = MultiHeadAttention(num_heads=2, zero_init_out=False)
    variables = module.init(KEY, x, source)
    out = module.apply(variables, x, source, mask)
    for row, keys in enumerate(([0, 2, 3], [3, 4])):
        subset = module.apply(variables, x[row:row + 1], source[row:row + 1, jnp.array(keys)])
        np.testing.assert_allclose(out[row:row + 1], subset, atol=1e-6)
    # Masked keys get weight exactly 0; the others' weights still sum to 1.
    q, k = (jax.random.normal(jax.random.key(i), (2, 3, 2, 4)) for i in (2, 3))
    weights = attention_weights(q, jnp.concatenate([k, k[:, :2]], axis=1), mask)
    np.testing.assert_array_equal(jnp.where(mask[:, None, None, :], 0.0, weights), 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


def test_a_fully_masked_row_gets_zero_weights_and_finite_gradients():
    q = jax.random.normal(KEY, (2, 3, 1, 4))
    k = jax.random.normal(jax.random.key(1), (2, 5, 1, 4))
    mask = jnp.array([[True] * 5, [False] * 5])
    weights = attention_weights(q, k, mask)
    np.testing.assert_allclose(weights[0], attention_weights(q, k)[0], atol=1e-7)
    np.testing.assert_array_equal(weights[1], 0.0)
    grads = jax.grad(lambda q, k: jnp.sum(attention_weights(q, k, mask) ** 2), (0, 1))(q, k)
    assert all(np.all(np.isfinite(g)) for g in grads)
    # In a block, such a row's heads output 0: only the output projection's bias is added.
    module = MultiHeadAttention(num_heads=1, zero_init_out=False)
    x, source = jax.random.normal(KEY, (2, 3, 4)), 1e3 * jnp.ones((2, 5, 6))
    variables = module.init(KEY, x, source)
    bias = variables["params"]["out"]["dense"]["bias"].value
    np.testing.assert_allclose(module.apply(variables, x, source, mask)[1],
                               jnp.broadcast_to(bias, (3, 4)), atol=1e-6)
