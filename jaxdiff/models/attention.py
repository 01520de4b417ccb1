"""Attention and the transformer feed-forward block of the jaxdiff networks (Flax linen).

* attention weights softmax_j(q_i . k_j / sqrt(d)) per head (Vaswani et al. 2017), with the logits
  accumulated and the softmax computed in float32 whatever the activation dtype (the networks
  attend through jax.nn.dot_product_attention with the same semantics, `attend`), and an optional
  key mask m (B, Lk): w_ij = m_j exp(s_ij) / sum_l m_l exp(s_il), i.e. masked keys are left out of
  the softmax (their logits set to the most negative float32), and a query whose keys are all
  masked gets all-zero weights, so its heads output 0 whatever the masked keys hold;
* multi-head dot-product attention from x to source tokens (self- or cross-attention), with ADM's
  num_head_channels option (Dhariwal & Nichol 2021);
* the spatial self-attention block with optional cross-attention to a text context (DDPM / ADM /
  Imagen style), h = x + SelfAttention(GN(x)) [+ CrossAttention(GN(h), LN(e), mask m)], the
  context a conditioning.TextContext (e, m) or a (B, L, D) array with every token real;
* the feed-forward sub-block out = x + Dense(Dropout(GELU(Dense(LN(x))))).
Output projections are zero-initialised, so each block starts as the identity. FeedForward takes
`train` as its last positional argument, so `remat` can mark it static. Parameters are created
through the logically partitioned wrappers of layers.py.
"""

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.models.conditioning import as_text_context
from jaxdiff.models.layers import Dense, Dtype, GroupNorm, LayerNorm


def attention_weights(q, k, mask=None):
    """softmax_j(q_i . k_j / sqrt(d)) per head, in float32 whatever the input dtype.

    q: (B, Lq, heads, d), k: (B, Lk, heads, d) -> (B, heads, Lq, Lk) float32. The logits are
    accumulated in float32 (preferred_element_type), so bfloat16 activations do not lose the
    softmax's precision (the "float32 softmax" of mixed-precision training). With a key mask
    (B, Lk) (True = attend), masked logits are set to the most negative float32, so their
    weights are exactly 0; a row with every key masked gets weights 0 (not uniform).
    """
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    logits = logits / math.sqrt(q.shape[-1])
    if mask is None:
        return jax.nn.softmax(logits, axis=-1)
    keep = jnp.asarray(mask, bool)[:, None, None, :]
    weights = jax.nn.softmax(jnp.where(keep, logits, jnp.finfo(jnp.float32).min), axis=-1)
    return jnp.where(keep, weights, 0.0)


ATTENTION_IMPLEMENTATIONS = (None, "xla", "cudnn")


def attend(q, k, v, mask=None, implementation=None):
    """softmax_j(q_i . k_j / sqrt(d)) v_j per head through jax.nn.dot_product_attention, with the
    semantics of attention_weights: logits and softmax in float32, masked keys left out, and a
    query whose keys are all masked gets output 0.

    q: (B, Lq, heads, d), k, v: (B, Lk, heads, d), mask: optional (B, Lk) key mask (True =
    attend). implementation: None / "xla" (XLA's attention, every backend) or "cudnn" (cuDNN's
    fused flash attention on NVIDIA GPUs: the (Lq, Lk) weights are never stored, which is what
    makes self-attention over the 64 x 64 positions of a 1024 px level affordable). A mask
    always takes the XLA path: cuDNN takes only prefix masks (sequence lengths), and the masked
    attention here is cross-attention to at most a few hundred text tokens.
    """
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"The attention implementation must be one of "
                         f"{ATTENTION_IMPLEMENTATIONS}, got {implementation!r}.")
    if mask is None:
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
    keep = jnp.asarray(mask, bool)
    out = jax.nn.dot_product_attention(q, k, v, mask=keep[:, None, None, :])
    return jnp.where(keep.any(axis=1)[:, None, None, None], out, jnp.zeros((), out.dtype))


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention (Vaswani et al. 2017) from `x` to `source` tokens.

    x: (B, Lq, C), source: (B, Lk, D) (source = x for self-attention), mask: optional (B, Lk)
    key mask, True = attend (see attend). q, k, v are Dense projections to C channels split in
    heads of C / heads channels (or `head_channels` channels when set, ADM's num_head_channels);
    the output projection back to C is zero-initialised when `zero_init_out`. `implementation`
    selects jax.nn.dot_product_attention's kernel (see attend).
    """

    num_heads: int = 1
    head_channels: Optional[int] = None
    zero_init_out: bool = True
    implementation: Optional[str] = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, source, mask=None):
        channels = x.shape[-1]
        heads = num_attention_heads(channels, self.num_heads, self.head_channels)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

        def split(y):
            return y.reshape(y.shape[:2] + (heads, channels // heads)).astype(self.dtype)

        q = split(Dense(channels, name="query", **kw)(x))
        k = split(Dense(channels, name="key", **kw)(source))
        v = split(Dense(channels, name="value", **kw)(source))
        out = attend(q, k, v, mask, self.implementation)
        out = out.reshape(x.shape[:2] + (channels,))
        return Dense(channels, zero_init=self.zero_init_out, name="out", **kw)(out)


def num_attention_heads(channels: int, num_heads: int, head_channels: Optional[int]) -> int:
    """Number of heads: channels // head_channels when head_channels is set, else num_heads."""
    if head_channels is not None:
        if head_channels <= 0 or channels % head_channels:
            raise ValueError(
                f"head_channels ({head_channels}) must be positive and divide the channel count "
                f"({channels}).")
        return channels // head_channels
    if num_heads <= 0 or channels % num_heads:
        raise ValueError(
            f"num_heads ({num_heads}) must be positive and divide the channel count "
            f"({channels}).")
    return num_heads


class AttentionBlock(nn.Module):
    """Spatial self-attention block with optional cross-attention (DDPM / ADM / Imagen style):
        h = x + SelfAttention(GN(x))                       over all H*W positions
        h = h + CrossAttention(GN(h), LN(e), mask m)       when a context is given
    The context is a conditioning.TextContext (e (B, L, D), m (B, L)) or a (B, L, D) array e
    with every token real; only real tokens are attended. The output projections are
    zero-initialised, so the block starts as the identity. Works on images (B, H, W, C) and
    token sequences (B, L, C). `implementation` is the self-attention kernel (see attend).
    """

    num_heads: int = 1
    head_channels: Optional[int] = None
    num_groups: int = 32
    implementation: Optional[str] = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, context=None):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = dict(num_heads=self.num_heads, head_channels=self.head_channels,
                    implementation=self.implementation, **kw)
        tokens = x.reshape(x.shape[0], -1, x.shape[-1]).astype(self.dtype)
        normed = GroupNorm(self.num_groups, name="norm", **kw)(tokens)
        tokens = tokens + MultiHeadAttention(**attn, name="self_attention")(normed, normed)
        if context is not None:
            embeddings, mask = as_text_context(context)
            normed = GroupNorm(self.num_groups, name="cross_norm", **kw)(tokens)
            source = LayerNorm(name="context_norm", **kw)(embeddings)
            tokens = tokens + MultiHeadAttention(**attn, name="cross_attention")(
                normed, source, mask)
        return tokens.reshape(x.shape)


class FeedForward(nn.Module):
    """Transformer feed-forward sub-block (Vaswani et al. 2017) with a residual:
        out = x + Dense_C(Dropout(GELU(Dense_{mult C}(LN(x)))))
    with the last Dense zero-initialised (identity at init)."""

    mult: int = 4
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = LayerNorm(**kw)(x)
        h = nn.gelu(Dense(self.mult * x.shape[-1], **kw)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return x.astype(self.dtype) + Dense(x.shape[-1], zero_init=True, **kw)(h)
