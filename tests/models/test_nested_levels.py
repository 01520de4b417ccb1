"""One NestedUNet level (jaxdiff/models/nested_levels.py): the encoder keeps a skip per block
and downsampling, the decoder consumes every one of them and returns C_0 channels at the
level's side."""

import jax
import jax.numpy as jnp
import pytest

from jaxdiff.models.nested_levels import Blocks, LevelDecoder, LevelEncoder

KEY = jax.random.key(0)
BLOCKS = Blocks(num_heads=2, head_channels=None, feed_forward=True, dropout=0.0, num_groups=4,
                remat=False, attention_implementation=None, dtype=jnp.float32,
                param_dtype=jnp.float32)
LEVEL = dict(channels=(8, 16), num_res_blocks=(2, 1), attention_layers=(0, 1), blocks=BLOCKS)


def test_encoder_skips_and_decoder_shapes():
    h = jax.random.normal(KEY, (2, 8, 8, 8))
    emb = jnp.zeros((2, 32))
    encoder = LevelEncoder(**LEVEL)
    (low, skips), _ = encoder.init_with_output(KEY, h, emb, None, False)
    # conv-in features, 2 blocks at 8 px, the downsampling, 1 block at 4 px.
    assert [s.shape for s in skips] == [(2, 8, 8, 8), (2, 8, 8, 8), (2, 8, 8, 8),
                                        (2, 4, 4, 8), (2, 4, 4, 16)]
    assert low.shape == (2, 4, 4, 16)
    decoder = LevelDecoder(**LEVEL)
    out, _ = decoder.init_with_output(KEY, low, skips, emb, None, False)
    assert out.shape == (2, 8, 8, 8)
    with pytest.raises(IndexError):  # a decoder needs every skip the encoder kept
        decoder.init(KEY, low, skips[1:], emb, None, False)
