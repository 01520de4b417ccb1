"""Building blocks shared by the jaxdiff networks (Flax linen, NHWC).

Every parameter is created through the wrappers below, which attach the logical axis names of
the shared contracts with `nn.with_logical_partitioning`, so that sharding rules can map them to
mesh axes:
    conv kernels      ("kernel_h", "kernel_w", "channels_in", "channels_out")
    dense kernels     ("channels_in", "channels_out")
    biases            ("channels_out",)
    norm scale/bias   ("channels",)
    embedding tables  ("vocab", "channels_out")
Parameters are stored in `param_dtype` (float32); activations are computed in `dtype` (e.g.
bfloat16). Normalisations and the attention softmax are always computed in float32 and cast back.

Default initialiser: variance scaling with scale 1, fan_avg, uniform (Glorot uniform), as in
the DDPM reference code (Ho et al. 2020, `diffusion_tf/nn.py`); layers whose output enters a
residual sum can be zero-initialised so that every block starts as the identity (Nichol &
Dhariwal 2021, "Improved DDPM"; Dhariwal & Nichol 2021, "ADM").

Blocks that depend on dropout take `train` as their last positional argument, so `remat` can
mark it static.
"""

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.core.processes import average_pool

Dtype = Any

CONV_KERNEL_AXES = ("kernel_h", "kernel_w", "channels_in", "channels_out")
DENSE_KERNEL_AXES = ("channels_in", "channels_out")
BIAS_AXES = ("channels_out",)
NORM_AXES = ("channels",)
EMBEDDING_AXES = ("vocab", "channels_out")
LOGICAL_AXIS_NAMES = frozenset(
    CONV_KERNEL_AXES + DENSE_KERNEL_AXES + BIAS_AXES + NORM_AXES + EMBEDDING_AXES)

default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _kernel_init(zero_init: bool):
    return nn.initializers.zeros_init() if zero_init else default_kernel_init


# ----------------------------------------------------------------------------------------------
# Logically partitioned wrappers.


class Conv(nn.Module):
    """A 'SAME'-padded convolution whose kernel and bias carry logical axis names."""

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    zero_init: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Conv(
            self.features, tuple(self.kernel_size), strides=tuple(self.strides), padding="SAME",
            dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(
                _kernel_init(self.zero_init), CONV_KERNEL_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), BIAS_AXES),
            name="conv")(x)


class Dense(nn.Module):
    """A dense layer over the last axis whose kernel and bias carry logical axis names."""

    features: int
    zero_init: bool = False
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Dense(
            self.features, use_bias=self.use_bias, dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(
                _kernel_init(self.zero_init), DENSE_KERNEL_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), BIAS_AXES),
            name="dense")(x)


def check_num_groups(channels: int, num_groups: int):
    """Raise ValueError unless num_groups is positive and divides the channel count."""
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(
            f"GroupNorm needs num_groups ({num_groups}) to be positive and divide the channel "
            f"count ({channels}).")


class GroupNorm(nn.Module):
    """Group normalisation (Wu & He 2018) over the last axis, computed in float32.

    y = (x - mean_g) / sqrt(var_g + epsilon) * scale + bias, statistics per sample and group over
    all non-batch axes. The result is cast back to `dtype`.
    """

    num_groups: int = 32
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        check_num_groups(x.shape[-1], self.num_groups)
        y = nn.GroupNorm(
            num_groups=self.num_groups, epsilon=self.epsilon, dtype=jnp.float32,
            param_dtype=self.param_dtype,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), NORM_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), NORM_AXES),
            name="norm")(x.astype(jnp.float32))
        return y.astype(self.dtype)


class LayerNorm(nn.Module):
    """Layer normalisation (Ba et al. 2016) over the last axis, computed in float32."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(
            epsilon=self.epsilon, dtype=jnp.float32, param_dtype=self.param_dtype,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), NORM_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), NORM_AXES),
            name="norm")(x.astype(jnp.float32))
        return y.astype(self.dtype)


class Embed(nn.Module):
    """An embedding table with logical axes ("vocab", "channels_out"), N(0, 1) initialised."""

    num_embeddings: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, ids):
        return nn.Embed(
            self.num_embeddings, self.features, dtype=self.dtype, param_dtype=self.param_dtype,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(1.0), EMBEDDING_AXES),
            name="embedding")(ids)


def create_module(module_class, **kwargs):
    """`module_class(**kwargs)`, raising ValueError for a keyword that is not one of its fields
    (the `create` of each network module, used on preset and config keyword arguments)."""
    fields = set(module_class.__dataclass_fields__) - {"parent", "name"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"Unknown {module_class.__name__} arguments {unknown}; expected some "
                         f"of {sorted(fields)}.")
    return module_class(**kwargs)


def remat_if(module_class, enabled: bool, static_argnums: Sequence[int] = ()):
    """`nn.remat(module_class)` when `enabled`, else `module_class` unchanged.

    static_argnums count `self` as argument 0 (Flax convention), e.g. (3,) for the `train` flag of
    `ResBlock.__call__(self, x, emb, train)`. Rematerialisation recomputes the block's activations
    in the backward pass instead of storing them; it changes memory, not results.
    """
    if not enabled:
        return module_class
    return nn.remat(module_class, static_argnums=tuple(static_argnums))


# ----------------------------------------------------------------------------------------------
# Conditioning: time, class and context embeddings.


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
        emb = TimeEmbedding(t) [+ ClassEmbedding(labels)] [+ Dense(mean_L context)].
    Class embeddings are added to the time embedding as in ADM (Dhariwal & Nichol 2021); a
    context sequence (B, L, D) of precomputed text embeddings is mean-pooled and projected, as in
    Imagen (Saharia et al. 2022), in addition to the cross-attention that uses it token by token.

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
            pooled = jnp.mean(context.astype(jnp.float32), axis=1).astype(self.dtype)
            emb = emb + Dense(self.features, name="context_pool", **kw)(pooled)
        return emb


def check_conditioning(num_classes: int, use_context: bool, labels, context):
    """Raise ValueError when labels/context do not match how a network is conditioned."""
    if labels is not None and num_classes <= 0:
        raise ValueError("Labels were given to a network built without classes (num_classes=0).")
    if context is not None and not use_context:
        raise ValueError("A context was given to a network built without use_context=True.")
    if context is None and use_context:
        raise ValueError("This network is built with use_context=True and needs a context.")
    if context is not None and context.ndim != 3:
        raise ValueError(f"The context must have shape (B, L, D), got {context.shape}.")


# ----------------------------------------------------------------------------------------------
# Residual block.


class ResBlock(nn.Module):
    """Residual block of DDPM / ADM (Ho et al. 2020; Dhariwal & Nichol 2021, sec. 3):
        h = Conv3(SiLU(GN(x)))
        scale_shift:  h = GN(h) * (1 + s) + b,  (s, b) = Dense(SiLU(emb))   (FiLM, ADM's AdaGN)
        otherwise:    h = GN(h + Dense(SiLU(emb)))                          (DDPM, additive)
        h = Conv3(Dropout(SiLU(h)))            with the last conv zero-initialised
        out = skip(x) + h,  skip = identity, or a 1x1 conv when the channel count changes.
    With resample = "down" / "up" the block also halves / doubles the resolution, ADM's
    "resblock_updown" (BigGAN-style): both h (after the first SiLU) and x are resampled by
    parameter-free 2x2 average pooling / nearest-neighbour upsampling before the first conv.
    """

    features: int
    dropout: float = 0.0
    num_groups: int = 32
    scale_shift: bool = True
    zero_init_last: bool = True
    resample: str = "none"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, emb, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.silu(GroupNorm(self.num_groups, **kw)(x))
        if self.resample != "none":
            resample = RESAMPLERS.get(self.resample)
            if resample is None:
                raise ValueError(f"Unknown resample {self.resample!r}; expected 'none', "
                                 f"{' or '.join(repr(k) for k in RESAMPLERS)}.")
            h, x = resample(h), resample(x)
        h = Conv(self.features, **kw)(h)
        emb_out = Dense(2 * self.features if self.scale_shift else self.features,
                        name="emb_proj", **kw)(nn.silu(emb))[:, None, None, :]
        if self.scale_shift:
            scale, shift = jnp.split(emb_out, 2, axis=-1)
            h = GroupNorm(self.num_groups, **kw)(h) * (1 + scale) + shift
        else:
            h = GroupNorm(self.num_groups, **kw)(h + emb_out)
        h = nn.Dropout(self.dropout)(nn.silu(h), deterministic=not train)
        h = Conv(self.features, zero_init=self.zero_init_last, **kw)(h)
        if x.shape[-1] != self.features:
            x = Conv(self.features, kernel_size=(1, 1), name="skip", **kw)(x)
        return x.astype(self.dtype) + h


# ----------------------------------------------------------------------------------------------
# Attention.


def attention_weights(q, k):
    """softmax_j(q_i . k_j / sqrt(d)) per head, in float32 whatever the input dtype.

    q: (B, Lq, heads, d), k: (B, Lk, heads, d) -> (B, heads, Lq, Lk) float32. The logits are
    accumulated in float32 (preferred_element_type), so bfloat16 activations do not lose the
    softmax's precision (the "float32 softmax" of mixed-precision training).
    """
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    return jax.nn.softmax(logits / math.sqrt(q.shape[-1]), axis=-1)


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention (Vaswani et al. 2017) from `x` to `source` tokens.

    x: (B, Lq, C), source: (B, Lk, D) (source = x for self-attention). q, k, v are Dense
    projections to C channels split in heads of C / heads channels (or `head_channels` channels
    when set, ADM's num_head_channels); the output projection back to C is zero-initialised when
    `zero_init_out`. The float32 attention weights are sown in "intermediates" as
    "attention_weights".
    """

    num_heads: int = 1
    head_channels: Optional[int] = None
    zero_init_out: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, source):
        channels = x.shape[-1]
        heads = num_attention_heads(channels, self.num_heads, self.head_channels)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        split = lambda y: y.reshape(y.shape[:2] + (heads, channels // heads))
        q = split(Dense(channels, name="query", **kw)(x))
        k = split(Dense(channels, name="key", **kw)(source))
        v = split(Dense(channels, name="value", **kw)(source))
        weights = attention_weights(q, k)
        self.sow("intermediates", "attention_weights", weights)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v)
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
        h = h + CrossAttention(GN(h), LN(context))         when a context (B, L, D) is given
    The output projections are zero-initialised, so the block starts as the identity. Works on
    images (B, H, W, C) and token sequences (B, L, C).
    """

    num_heads: int = 1
    head_channels: Optional[int] = None
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, context=None):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = dict(num_heads=self.num_heads, head_channels=self.head_channels, **kw)
        tokens = x.reshape(x.shape[0], -1, x.shape[-1]).astype(self.dtype)
        normed = GroupNorm(self.num_groups, name="norm", **kw)(tokens)
        tokens = tokens + MultiHeadAttention(**attn, name="self_attention")(normed, normed)
        if context is not None:
            normed = GroupNorm(self.num_groups, name="cross_norm", **kw)(tokens)
            source = LayerNorm(name="context_norm", **kw)(context)
            tokens = tokens + MultiHeadAttention(**attn, name="cross_attention")(normed, source)
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


# ----------------------------------------------------------------------------------------------
# Resolution changes.


def check_even_size(x):
    """Raise ValueError unless an NHWC batch has an even height and width (2x downsampling)."""
    if x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"2x downsampling needs an even height and width, got {x.shape[1:3]}.")


def average_pool_2x(x):
    """Parameter-free 2x downsampling of NHWC images: the mean of each 2x2 block."""
    return average_pool(x, 2)


def nearest_upsample_2x(x):
    """Parameter-free 2x nearest-neighbour upsampling of NHWC images."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


RESAMPLERS = {"down": average_pool_2x, "up": nearest_upsample_2x}


class Downsample(nn.Module):
    """Halve H and W with a 3x3 convolution of stride 2 (DDPM `downsample` with conv)."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        check_even_size(x)
        return Conv(self.features, strides=(2, 2), dtype=self.dtype,
                    param_dtype=self.param_dtype)(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling then a 3x3 convolution (DDPM `upsample`)."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        return Conv(self.features, dtype=self.dtype, param_dtype=self.param_dtype)(
            nearest_upsample_2x(x))


class OutputHead(nn.Module):
    """The final GN -> SiLU -> zero-initialised Conv3 of DDPM/ADM; the output is float32.

    The zero conv makes the network output exactly 0 at initialisation.
    """

    features: int
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.silu(GroupNorm(self.num_groups, **kw)(x))
        return Conv(self.features, zero_init=True, **kw)(h).astype(jnp.float32)
