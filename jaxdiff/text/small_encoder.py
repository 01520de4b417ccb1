"""A small text transformer trained jointly with the diffusion model (GLIDE, Nichol et al.
2022, sec. 2.3 and 4: the caption's tokens go through a transformer whose output tokens are
the cross-attention context and whose pooled output joins the time embedding).

    h_0 = Embed(tokens) + P                    learned positions P (L, width)
    h_i = h_{i-1} + MHA(LN(h_{i-1}), mask)     self-attention over the caption's real tokens
    h_i = FeedForward(h_i)                     h + Dense(GELU(Dense(LN(h))))
    out = LN(h_depth)                          (B, L, width)

It reads the ids of tokenizers.WordHashTokenizer, so no vocabulary file or download is needed;
its parameters are part of the model's and train with it (models/text_conditioned.py).
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.attention import FeedForward, MultiHeadAttention
from jaxdiff.models.layers import Dtype, Embed, LayerNorm


class TextTransformer(nn.Module):
    """`apply(variables, tokens int32 (B, L), mask bool (B, L))` -> (B, L, width) (module
    docstring)."""

    vocab_size: int
    max_length: int
    width: int = 64
    depth: int = 2
    num_heads: int = 2
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens, mask):
        if tokens.shape[-1] != self.max_length:
            raise ValueError(f"The text encoder takes {self.max_length} tokens per caption "
                             f"(text.max_length), got {tokens.shape[-1]}.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = Embed(self.vocab_size, self.width, name="tokens", **kw)(tokens)
        h = h + Embed(self.max_length, self.width, name="positions", **kw)(
            jnp.arange(self.max_length))[None]
        for index in range(self.depth):
            normed = LayerNorm(name=f"norm_{index}", **kw)(h)
            h = h + MultiHeadAttention(self.num_heads, name=f"attention_{index}", **kw)(
                normed, normed, mask)
            h = FeedForward(name=f"feed_forward_{index}", **kw)(h)
        return LayerNorm(name="out_norm", **kw)(h)
