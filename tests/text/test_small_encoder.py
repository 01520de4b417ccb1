"""jaxdiff/text/small_encoder.py: the jointly trained text transformer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.text.small_encoder import TextTransformer


def test_padding_does_not_reach_the_real_tokens():
    encoder = TextTransformer(vocab_size=32, max_length=5, width=16, depth=2, num_heads=2)
    tokens = jnp.array([[5, 9, 1, 0, 0]])
    mask = tokens != 0
    mask = mask.at[0, 2].set(True)   # EOS (id 1) is a real token
    params = encoder.init(jax.random.PRNGKey(0), tokens, mask)
    # zero-initialised attention outputs would hide the mask: perturb every parameter
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
                          params)
    out = encoder.apply(params, tokens, mask)
    other_padding = encoder.apply(params, tokens.at[0, 3:].set(17), mask)
    np.testing.assert_allclose(out[0, :3], other_padding[0, :3], atol=1e-6)
    other_word = encoder.apply(params, tokens.at[0, 0].set(6), mask)
    assert np.abs(np.asarray(other_word[0, 1:3] - out[0, 1:3])).max() > 1e-3
    assert out.shape == (1, 5, 16)


def test_a_caption_of_another_length_is_refused():
    encoder = TextTransformer(vocab_size=8, max_length=4, width=8, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="takes 4 tokens per caption"):
        encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 5), jnp.int32),
                     jnp.ones((1, 5), bool))
