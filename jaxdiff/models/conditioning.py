"""Conditioning embeddings of the jaxdiff networks: the vector fed to every residual block,

    emb = TimeEmbedding(t) [+ ClassEmbedding(labels)] [+ Dense(masked_mean_L context)].

* time: a Transformer sinusoidal embedding (Vaswani et al. 2017) of 1000 t in the DDPM reference
  convention (Ho et al. 2020, `get_timestep_embedding`), f_i = max_period^(-i / (half - 1)),
  followed by Dense -> SiLU -> Dense;
* classes: an embedding table with a learned null class for classifier-free guidance (Ho &
  Salimans 2022), added to the time embedding as in ADM (Dhariwal & Nichol 2021);
* context: a TextContext, text embeddings e (B, L, D) and a token mask m (B, L) (True = a real
  token, False = padding), or a plain (B, L, D) array meaning every token is real
  (`as_text_context`). It is mean-pooled over the real tokens and projected as in Imagen
  (Saharia et al. 2022), pooled = sum_l m_l e_l / max(sum_l m_l, 1), besides the token-by-token
  cross-attention of attention.py, which attends to the real tokens only, so no output depends
  on the (finite) values of padding tokens. A row without any real token pools to 0 and its
  cross-attention heads output 0 (all-zero attention weights); captions always keep their EOS
  token, so this only guards against degenerate input.

Parameters are created through the logically partitioned wrappers of layers.py.
"""

import math
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.layers import Dense, Dtype, Embed


class TextContext(NamedTuple):
    """Text conditioning of a batch: embeddings (B, L, D) and mask (B, L), True = a real token.

    A pytree, so it passes through jit, nn.scan (broadcast) and remat like an array. Captions
    keep at least their EOS token unmasked (jaxdiff.text.tokenizers)."""

    embeddings: jax.Array
    mask: jax.Array


def as_text_context(context) -> Optional[TextContext]:
    """What a network takes as `context=`, as a checked TextContext with a bool mask.

    None stays None; a plain (B, L, D) array is TextContext(context, all True); a TextContext
    needs a mask of shape (B, L) matching its embeddings, of dtype bool or integer with values
    0 / 1 (the values are checked when they are concrete, not under jit). Raises ValueError.
    """
    if context is None:
        return None
    if not isinstance(context, TextContext):
        context = TextContext(context, jnp.ones(jnp.shape(context)[:2], bool))
    embeddings, mask = context
    if jnp.ndim(embeddings) != 3:
        raise ValueError(f"The context must have shape (B, L, D), got {jnp.shape(embeddings)}.")
    if jnp.shape(mask) != jnp.shape(embeddings)[:2]:
        raise ValueError(f"The context mask must have shape (B, L) = {jnp.shape(embeddings)[:2]} "
                         f"like its embeddings, got {jnp.shape(mask)}.")
    dtype = jnp.result_type(mask)
    if dtype != jnp.bool_:
        if not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"The context mask must be bool or 0/1 integers, got {dtype}.")
        if not isinstance(mask, jax.core.Tracer) and not np.isin(np.asarray(mask), (0, 1)).all():
            raise ValueError("The context mask must be bool or 0/1 integers, got other values.")
    return TextContext(embeddings, jnp.asarray(mask, bool))


def masked_mean(embeddings, mask):
    """sum_l m_l e_l / max(sum_l m_l, 1) over axis 1, in float32: the mean of the real tokens
    (Imagen's mean pooling, Saharia et al. 2022); 0 for a row without any."""
    mask = jnp.asarray(mask, bool)
    total = jnp.sum(jnp.where(mask[..., None], embeddings.astype(jnp.float32), 0.0), axis=1)
    count = jnp.sum(mask, axis=1, dtype=jnp.float32)[:, None]
    return total / jnp.maximum(count, 1.0)


def sinusoidal_embedding(t, dim: int, max_period: float = 10000.0):
    """Transformer sinusoidal embedding of a (B,) array of positions (Vaswani et al. 2017).

    With half = dim // 2 and f_i = max_period^(-i / (half - 1)), i = 0..half-1 (the DDPM
    reference convention, Ho et al. 2020 `get_timestep_embedding`):
        emb(t) = [sin(t f_0), ..., sin(t f_{half-1}), cos(t f_0), ..., cos(t f_{half-1})].
    Computed in float32; dim must be even and at least 4.
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"The sinusoidal embedding size must be even and at least 4, got {dim}.")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    angles = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class TimeEmbedding(nn.Module):
    """Time conditioning vector: MLP(sinusoidal(time_scale * t)) (DDPM, Ho et al. 2020).

    t in [0, 1] is scaled by `time_scale` (default 1000, so that continuous time gets the
    frequencies a 1000-step DDPM sees for its integer steps), embedded with `sinusoidal_dim`
    sinusoids, then Dense(features) -> SiLU -> Dense(features).
    """

    features: int
    sinusoidal_dim: int
    time_scale: float = 1000.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t):
        emb = sinusoidal_embedding(self.time_scale * t, self.sinusoidal_dim).astype(self.dtype)
        emb = Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype)(emb)
        return Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype)(nn.silu(emb))


class ClassEmbedding(nn.Module):
    """Class-label embedding with a learned null class (classifier-free guidance, Ho & Salimans
    2022): labels in 0..num_classes-1 are classes, label == num_classes means "no class"."""

    num_classes: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, labels):
        return Embed(self.num_classes + 1, self.features, dtype=self.dtype,
                     param_dtype=self.param_dtype)(labels)


class ConditioningEmbedding(nn.Module):
    """The conditioning vector fed to every residual block:
        emb = TimeEmbedding(t) [+ ClassEmbedding(labels)] [+ Dense(masked_mean(e, m))].
    Class embeddings are added to the time embedding as in ADM (Dhariwal & Nichol 2021); a
    context of precomputed text embeddings (a TextContext, or a (B, L, D) array with every token
    real) is mean-pooled over its real tokens and projected, as in Imagen (Saharia et al. 2022),
    in addition to the cross-attention that uses it token by token.

    With num_classes > 0, labels=None means the null class for the whole batch. Passing labels
    to a model without classes, or a context to a model without use_context (or no context to a
    model with it) raises ValueError.
    """

    features: int
    sinusoidal_dim: int
    num_classes: int = 0
    use_context: bool = False
    time_scale: float = 1000.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t, labels=None, context=None):
        check_conditioning(self.num_classes, self.use_context, labels, context)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        emb = TimeEmbedding(self.features, self.sinusoidal_dim, self.time_scale, **kw)(t)
        if self.num_classes > 0:
            if labels is None:
                labels = jnp.full(t.shape, self.num_classes, jnp.int32)
            emb = emb + ClassEmbedding(self.num_classes, self.features, **kw)(labels)
        if self.use_context:
            pooled = masked_mean(*as_text_context(context)).astype(self.dtype)
            emb = emb + Dense(self.features, name="context_pool", **kw)(pooled)
        return emb


def check_conditioning(num_classes: int, use_context: bool, labels, context):
    """Raise ValueError when labels/context do not match how a network is conditioned, or the
    context is not a valid TextContext or (B, L, D) array (as_text_context)."""
    if labels is not None and num_classes <= 0:
        raise ValueError("Labels were given to a network built without classes (num_classes=0).")
    if context is not None and not use_context:
        raise ValueError("A context was given to a network built without use_context=True.")
    if context is None and use_context:
        raise ValueError("This network is built with use_context=True and needs a context.")
    as_text_context(context)
