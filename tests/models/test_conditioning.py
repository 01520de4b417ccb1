"""Tests of jaxdiff/models/conditioning.py: values computed by hand from the formulas in the
docstrings."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_layers import KEY

from jaxdiff.models.conditioning import (ConditioningEmbedding, TextContext, TimeEmbedding,
                                         as_text_context, check_conditioning, masked_mean,
                                         sinusoidal_embedding)


def test_sinusoidal_embedding_values():
    # dim 4: half = 2, frequencies 10000^(-0/1) = 1 and 10000^(-1/1) = 1e-4.
    emb = sinusoidal_embedding(jnp.array([0.0, 1.5]), 4)
    expected = [[0.0, 0.0, 1.0, 1.0],
                [math.sin(1.5), math.sin(1.5e-4), math.cos(1.5), math.cos(1.5e-4)]]
    np.testing.assert_allclose(emb, expected, atol=1e-7)
    assert emb.dtype == jnp.float32


@pytest.mark.parametrize("dim", [3, 2])
def test_sinusoidal_embedding_rejects_bad_size(dim):
    with pytest.raises(ValueError, match="even and at least 4"):
        sinusoidal_embedding(jnp.zeros((1,)), dim)


def test_time_embedding_is_mlp_of_scaled_sinusoids():
    module = TimeEmbedding(features=8, sinusoidal_dim=6, time_scale=1000.0)
    t = jnp.array([0.25, 0.5])
    variables = module.init(KEY, t)
    p = variables["params"]

    def dense(name, h):
        return h @ p[name]["dense"]["kernel"].value + p[name]["dense"]["bias"].value

    hidden = jax.nn.silu(dense("Dense_0", sinusoidal_embedding(1000.0 * t, 6)))
    np.testing.assert_allclose(module.apply(variables, t), dense("Dense_1", hidden), atol=1e-6)


def test_conditioning_null_class_and_validation():
    module = ConditioningEmbedding(8, 4, num_classes=3)
    t = jnp.array([0.1, 0.7])
    variables = module.init(KEY, t, jnp.array([0, 1]))
    table = variables["params"]["ClassEmbedding_0"]["Embed_0"]["embedding"]["embedding"].value
    assert table.shape == (4, 8)  # 3 classes + the null class
    no_labels = module.apply(variables, t)
    null = module.apply(variables, t, jnp.array([3, 3]))
    real = module.apply(variables, t, jnp.array([1, 1]))
    np.testing.assert_array_equal(no_labels, null)
    np.testing.assert_allclose(real - null, jnp.broadcast_to(table[1] - table[3], (2, 8)),
                               atol=1e-6)
    with pytest.raises(ValueError, match="without classes"):
        ConditioningEmbedding(8, 4).init(KEY, t, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="without use_context"):
        ConditioningEmbedding(8, 4).init(KEY, t, None, jnp.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="needs a context"):
        ConditioningEmbedding(8, 4, use_context=True).init(KEY, t)


def test_conditioning_adds_projected_mean_of_context():
    module = ConditioningEmbedding(8, 4, use_context=True)
    t = jnp.array([0.1, 0.7])
    context = jax.random.normal(KEY, (2, 3, 5))
    variables = module.init(KEY, t, None, context)
    p = variables["params"]["context_pool"]["dense"]
    time_only = TimeEmbedding(8, 4).apply(
        {"params": variables["params"]["TimeEmbedding_0"]}, t)
    expected = time_only + context.mean(axis=1) @ p["kernel"].value + p["bias"].value
    np.testing.assert_allclose(module.apply(variables, t, None, context), expected, atol=1e-6)


def test_masked_mean_by_hand():
    embeddings = jnp.array([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],
                            [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = jnp.array([[True, True, False], [False, False, False]])
    # Row 0: (e_0 + e_1) / 2; row 1 has no real token: 0 / max(0, 1) = 0.
    np.testing.assert_allclose(masked_mean(embeddings, mask), [[2.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(masked_mean(embeddings, jnp.ones((2, 3), jnp.int32)),
                               embeddings.mean(axis=1), rtol=1e-6)


def test_conditioning_pools_the_real_tokens_only():
    module = ConditioningEmbedding(8, 4, use_context=True)
    t = jnp.array([0.1, 0.7])
    embeddings = jax.random.normal(KEY, (2, 3, 5))
    mask = jnp.array([[True, False, True], [True, True, True]])
    variables = module.init(KEY, t, None, TextContext(embeddings, mask))
    p = variables["params"]["context_pool"]["dense"]
    time_only = TimeEmbedding(8, 4).apply(
        {"params": variables["params"]["TimeEmbedding_0"]}, t)
    pooled = jnp.stack([embeddings[0, ::2].mean(0), embeddings[1].mean(0)])
    expected = time_only + pooled @ p["kernel"].value + p["bias"].value
    out = module.apply(variables, t, None, TextContext(embeddings, mask))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # A plain (B, L, D) array is a context whose every token is real.
    np.testing.assert_array_equal(
        module.apply(variables, t, None, embeddings),
        module.apply(variables, t, None, TextContext(embeddings, jnp.ones((2, 3), bool))))


def test_as_text_context_converts_and_checks_the_mask():
    embeddings = jnp.zeros((2, 3, 5))
    assert as_text_context(None) is None
    plain = as_text_context(embeddings)
    assert plain.embeddings is embeddings and plain.mask.dtype == jnp.bool_
    np.testing.assert_array_equal(plain.mask, True)
    ints = as_text_context(TextContext(embeddings, jnp.array([[1, 1, 0], [1, 0, 0]])))
    np.testing.assert_array_equal(ints.mask, [[True, True, False], [True, False, False]])
    bad = [
        (TextContext(embeddings, jnp.ones((2, 4), bool)),
         r"mask must have shape \(B, L\) = \(2, 3\) like its embeddings, got \(2, 4\)"),
        (TextContext(embeddings, jnp.ones((3,), bool)), r"got \(3,\)"),
        (TextContext(embeddings, jnp.ones((2, 3))), "bool or 0/1 integers, got float32"),
        (TextContext(embeddings, jnp.full((2, 3), 2)), "bool or 0/1 integers, got other values"),
        (TextContext(embeddings[0], jnp.ones((3,), bool)), r"shape \(B, L, D\), got \(3, 5\)"),
    ]
    for context, message in bad:
        with pytest.raises(ValueError, match=message):
            check_conditioning(0, True, None, context)
    # Under jit an integer mask's values are not known; its dtype and shape are still checked.
    mask = jax.jit(lambda m: as_text_context(TextContext(embeddings, m)).mask)(
        jnp.array([[1, 0, 1], [0, 1, 1]]))
    assert mask.dtype == jnp.bool_
