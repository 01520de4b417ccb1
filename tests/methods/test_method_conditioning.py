"""jaxdiff/methods/conditioning.py: the empty caption, caption dropout, the training and the
sampling conditioning (with a negative prompt), and the guided denoiser built from them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.methods.conditioning import Conditioning, TextSpec, drop_text
from jaxdiff.methods.network import network_denoiser

TOKENS = TextSpec("trained", max_length=4)
EMBEDDINGS = TextSpec("embeddings", max_length=3, embed_dim=2)


def test_the_empty_caption_is_eos_then_padding():
    null = TOKENS.null(2)
    np.testing.assert_array_equal(null["tokens"], [[1, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(null["mask"], [[True, False, False, False]] * 2)
    empty = EMBEDDINGS.null(1)
    assert empty["embeddings"].shape == (1, 3, 2) and not np.any(empty["embeddings"])
    np.testing.assert_array_equal(empty["mask"], [[True, False, False]])


def test_caption_dropout_replaces_whole_captions_at_its_rate():
    n = 4000
    text = {"tokens": jnp.full((n, 4), 7, jnp.int32), "mask": jnp.ones((n, 4), bool)}
    dropped = drop_text(jax.random.PRNGKey(0), text, TOKENS.null(n), 0.25)
    is_null = np.all(np.asarray(dropped["tokens"]) == [1, 0, 0, 0], axis=1)
    kept = np.all(np.asarray(dropped["tokens"]) == 7, axis=1)
    assert np.all(is_null | kept)                       # a caption is dropped whole or kept
    np.testing.assert_array_equal(np.asarray(dropped["mask"])[is_null],
                                  [[1, 0, 0, 0]] * is_null.sum())
    assert abs(is_null.mean() - 0.25) < 0.03
    none = drop_text(jax.random.PRNGKey(0), text, TOKENS.null(n), 0.0)
    np.testing.assert_array_equal(none["tokens"], text["tokens"])


def test_training_conditioning_reads_labels_and_text_from_the_batch():
    batch = {"label": jnp.array([0, 2]), "tokens": jnp.full((2, 4), 5, jnp.int32),
             "mask": jnp.ones((2, 4), bool)}
    given = Conditioning(3, TOKENS).training(jax.random.PRNGKey(1), batch, 0.0, 0.0)
    np.testing.assert_array_equal(given["labels"], [0, 2])
    np.testing.assert_array_equal(given["text"]["tokens"], batch["tokens"])
    all_dropped = Conditioning(3, TOKENS).training(jax.random.PRNGKey(1), batch, 1.0, 1.0)
    np.testing.assert_array_equal(all_dropped["labels"], [3, 3])
    np.testing.assert_array_equal(all_dropped["text"]["tokens"], TOKENS.null(2)["tokens"])
    with pytest.raises(ValueError, match="batch has no \\['tokens'\\]"):
        Conditioning(0, TOKENS).training(jax.random.PRNGKey(1), {"mask": batch["mask"]}, 0, 0)
    assert Conditioning().training(jax.random.PRNGKey(1), batch, 0.1, 0.1) == {}


def test_embeddings_from_float16_shards_reach_the_network_as_float32():
    batch = {"embeddings": jnp.ones((2, 3, 2), jnp.float16), "mask": jnp.ones((2, 3), bool)}
    text = EMBEDDINGS.from_batch(batch)
    assert text["embeddings"].dtype == jnp.float32


def test_sampling_uses_the_negative_prompt_as_the_unconditional_side():
    text = {"tokens": jnp.full((2, 4), 9, jnp.int32), "mask": jnp.ones((2, 4), bool)}
    negative = {"tokens": jnp.full((2, 4), 4, jnp.int32), "mask": jnp.ones((2, 4), bool)}
    spec = Conditioning(0, TOKENS)
    given, unconditional = spec.sampling(jax.random.PRNGKey(0), 2, text=text,
                                         negative_text=negative)
    np.testing.assert_array_equal(given["text"]["tokens"], text["tokens"])
    np.testing.assert_array_equal(unconditional["text"]["tokens"], negative["tokens"])
    given, unconditional = spec.sampling(jax.random.PRNGKey(0), 2)   # no prompt: empty caption
    np.testing.assert_array_equal(given["text"]["tokens"], TOKENS.null(2)["tokens"])
    np.testing.assert_array_equal(unconditional["text"]["tokens"], TOKENS.null(2)["tokens"])
    with pytest.raises(ValueError, match="shape \\(3, 4\\)"):
        spec.sampling(jax.random.PRNGKey(0), 3, text=text)
    with pytest.raises(ValueError, match="without text conditioning"):
        Conditioning(2).sampling(jax.random.PRNGKey(0), 2, text=text)


def test_guided_denoiser_extrapolates_from_the_negative_prompt():
    """With a network whose output is the mean token id, guidance w gives
    out_neg + w (out_prompt - out_neg) = 4 + 3 (9 - 4) = 19."""

    def apply_fn(variables, x, t, text=None, train=False):
        return x * 0 + jnp.mean(text["tokens"], axis=1, keepdims=True).astype(jnp.float32)

    text = {"tokens": jnp.full((2, 4), 9, jnp.int32), "mask": jnp.ones((2, 4), bool)}
    negative = {"tokens": jnp.full((2, 4), 4, jnp.int32), "mask": jnp.ones((2, 4), bool)}
    denoise = network_denoiser(apply_fn, {}, {"text": text}, {"text": negative},
                               guidance_scale=3.0)
    np.testing.assert_allclose(denoise(jnp.zeros((2, 1)), jnp.zeros((2,))), [[19.0], [19.0]])
