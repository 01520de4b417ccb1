"""The T5 / FLAN-T5 text encoder (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
with a Unified Text-to-Text Transformer"; Chung et al. 2022 for FLAN-T5) in Flax linen, frozen:
no dropout, inference only. Used as Imagen's text encoder (Saharia et al. 2022).

With x_0 = E[tokens] (the shared embedding table, not scaled), for each of the N blocks

    h   = x + Attention(RMSNorm(x))          (pre-norm residual self-attention)
    x'  = h + FFN(RMSNorm(h))

and the output is RMSNorm(x_N), the "last hidden state" (B, L, d_model). In detail:

* RMSNorm(x) = x / sqrt(mean(x^2) + eps) * scale (T5LayerNorm: no mean subtraction, no bias;
  Zhang & Sennrich 2019), computed in float32 and cast back to the activation dtype.
* Attention: per head, logits_ij = q_i . k_j + b(j - i), NOT divided by sqrt(d_kv) (T5 folds the
  scaling into the initialisation of q); keys where mask is False get the lowest float32 logit;
  softmax in float32; out = o(concat_h softmax(logits) v). q, k, v: d_model -> heads * d_kv, o
  back; no biases anywhere in T5.
* b is the bidirectional relative position bias: a learned (num_buckets, heads) table indexed by
  the bucket of the relative position j - i (`relative_position_buckets`), created once (block 0
  of the Hugging Face checkpoint) and shared by every block.
* FFN: "relu" (original T5)        wo(relu(wi x));
       "gated-gelu" (T5 v1.1, FLAN-T5) wo(gelu_tanh(wi_0 x) * wi_1 x)  (GEGLU, Shazeer 2020),
  gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ("gelu_new").

Parameters carry the logical axis names of jaxdiff.models.layers (dense kernels
("channels_in", "channels_out"), embedding tables ("vocab", "channels_out"), norm scales
("channels",)), so the project's sharding rules split them over "fsdp". The parameter tree:

    shared/embedding/embedding                      (vocab_size, d_model)
    relative_attention_bias/embedding/embedding     (num_buckets, num_heads)
    block_{i}/attention_norm/scale                  (d_model,)
    block_{i}/attention/{q,k,v}/dense/kernel        (d_model, num_heads * d_kv)
    block_{i}/attention/o/dense/kernel              (num_heads * d_kv, d_model)
    block_{i}/mlp_norm/scale                        (d_model,)
    block_{i}/mlp/wi/dense/kernel                   (d_model, d_ff)      "relu"
    block_{i}/mlp/{wi_0,wi_1}/dense/kernel          (d_model, d_ff)      "gated-gelu"
    block_{i}/mlp/wo/dense/kernel                   (d_ff, d_model)
    final_norm/scale                                (d_model,)

t5_checkpoint.py fills it from a Hugging Face checkpoint directory.
"""

import dataclasses
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.layers import NORM_AXES, Dense, Dtype, Embed

FEED_FORWARD_PROJ = ("relu", "gated-gelu")
MODEL_TYPES = ("t5", "mt5")
_REQUIRED_FIELDS = ("vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers")
_OPTIONAL_FIELDS = {"relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
                    "feed_forward_proj": "relu", "layer_norm_epsilon": 1e-6}


@dataclasses.dataclass(frozen=True)
class T5EncoderConfig:
    """The encoder's hyperparameters, named as in a Hugging Face T5 config.json."""

    vocab_size: int
    d_model: int
    d_kv: int
    num_heads: int
    d_ff: int
    num_layers: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "relu"
    layer_norm_epsilon: float = 1e-6

    def __post_init__(self):
        if self.feed_forward_proj not in FEED_FORWARD_PROJ:
            raise ValueError(f"Unsupported T5 feed_forward_proj {self.feed_forward_proj!r}; "
                             f"supported: {', '.join(FEED_FORWARD_PROJ)}.")

    @classmethod
    def from_hf_config(cls, hf_config: Mapping[str, Any]) -> "T5EncoderConfig":
        """The config of a Hugging Face T5 / mT5 config.json dict (other fields ignored; the
        optional ones default as in transformers' T5Config)."""
        model_type = hf_config.get("model_type", "t5")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"Unsupported model_type {model_type!r} for the T5 encoder; "
                             f"supported: {', '.join(MODEL_TYPES)}.")
        missing = [name for name in _REQUIRED_FIELDS if name not in hf_config]
        if missing:
            raise ValueError(f"The T5 config lacks the fields {missing}.")
        fields = {name: hf_config[name] for name in _REQUIRED_FIELDS}
        fields.update({name: hf_config.get(name, default)
                       for name, default in _OPTIONAL_FIELDS.items()})
        return cls(**fields)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """int32 (L, L): the bidirectional T5 bucket of relative position r = j - i (key j, query i).

    Half of the buckets are for r > 0, half for r <= 0 (n = num_buckets / 2 each). With a = |r|
    and m = n / 2: a < m gets its own bucket a; larger distances share logarithmically wider
    buckets, m + floor(log(a / m) / log(max_distance / m) * (n - m)), capped at n - 1, so every
    a >= max_distance shares the last one (Raffel et al. 2020, section 2.1; Mesh TensorFlow's
    `_relative_position_bucket`). Computed in numpy float32 at trace time (L is static), so every
    backend gets the same buckets.
    """
    position = np.arange(length)
    relative = position[None, :] - position[:, None]
    half = num_buckets // 2
    exact = half // 2
    distance = np.abs(relative)
    scaled = (np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(exact))
              / np.float32(math.log(max_distance / exact)) * np.float32(half - exact))
    large = np.minimum(exact + scaled.astype(np.int32), half - 1)
    bucket = np.where(relative > 0, half, 0) + np.where(distance < exact, distance, large)
    return bucket.astype(np.int32)


class T5LayerNorm(nn.Module):
    """RMSNorm (module docstring): x / sqrt(mean(x^2) + eps) * scale, in float32."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones_init(), NORM_AXES),
            (x.shape[-1],), self.param_dtype)
        x = x.astype(jnp.float32)
        y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)
        return (y * scale.astype(jnp.float32)).astype(self.dtype)


class T5Attention(nn.Module):
    """Unscaled multi-head self-attention with an additive position bias (module docstring).

    x: (B, L, d_model), bias: float32 (1, heads, L, L), mask: bool (B, L) on keys.
    """

    num_heads: int
    d_kv: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, bias, mask):
        kw = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        inner = self.num_heads * self.d_kv
        heads = (self.num_heads, self.d_kv)
        q, k, v = (Dense(inner, name=name, **kw)(x).reshape(x.shape[:2] + heads)
                   for name in ("q", "k", "v"))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        logits = jnp.where(mask[:, None, None, :], logits + bias, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v)
        return Dense(x.shape[-1], name="o", **kw)(out.reshape(x.shape[:2] + (inner,)))


class T5FeedForward(nn.Module):
    """wo(relu(wi x)) or wo(gelu_tanh(wi_0 x) * wi_1 x) (module docstring)."""

    d_ff: int
    feed_forward_proj: str
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.feed_forward_proj == "gated-gelu":
            gate = jax.nn.gelu(Dense(self.d_ff, name="wi_0", **kw)(x), approximate=True)
            hidden = gate * Dense(self.d_ff, name="wi_1", **kw)(x)
        else:
            hidden = jax.nn.relu(Dense(self.d_ff, name="wi", **kw)(x))
        return Dense(x.shape[-1], name="wo", **kw)(hidden)


class T5Block(nn.Module):
    """h = x + Attention(RMSNorm(x)); out = h + FFN(RMSNorm(h))."""

    config: T5EncoderConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, bias, mask):
        c = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        normed = T5LayerNorm(c.layer_norm_epsilon, name="attention_norm", **kw)(x)
        x = x + T5Attention(c.num_heads, c.d_kv, name="attention", **kw)(normed, bias, mask)
        normed = T5LayerNorm(c.layer_norm_epsilon, name="mlp_norm", **kw)(x)
        return x + T5FeedForward(c.d_ff, c.feed_forward_proj, name="mlp", **kw)(normed)


class T5Encoder(nn.Module):
    """The frozen T5 encoder: tokens int32 (B, L), mask bool (B, L) -> (B, L, d_model), the
    final RMSNorm's output in `dtype` (module docstring). Positions where mask is False are
    never attended to; their own outputs are computed all the same (as transformers does)."""

    config: T5EncoderConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens, mask):
        c = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Embed(c.vocab_size, c.d_model, name="shared", **kw)(tokens)
        buckets = relative_position_buckets(tokens.shape[1], c.relative_attention_num_buckets,
                                            c.relative_attention_max_distance)
        table = Embed(c.relative_attention_num_buckets, c.num_heads,
                      name="relative_attention_bias", **kw)
        bias = jnp.transpose(table(buckets).astype(jnp.float32), (2, 0, 1))[None]
        mask = mask.astype(bool)
        for i in range(c.num_layers):
            x = T5Block(c, name=f"block_{i}", **kw)(x, bias, mask)
        return T5LayerNorm(c.layer_norm_epsilon, name="final_norm", **kw)(x)
