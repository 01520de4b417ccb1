"""Convolutional blocks of the jaxdiff networks (Flax linen, NHWC): resolution changes, the
residual block and the output head.

* resampling: parameter-free 2x2 average pooling and nearest-neighbour 2x upsampling, and DDPM's
  ConvResample, DDPM's stride-2 3x3 conv down and nearest-then-3x3-conv up (Ho et al. 2020);
* ResBlock of DDPM / ADM (Ho et al. 2020; Dhariwal & Nichol 2021, sec. 3):
      h = Conv3(SiLU(GN(x)))
      h = GN(h) * (1 + s) + b,  (s, b) = Dense(SiLU(emb))   (FiLM, ADM's AdaGN)
          or GN(h + Dense(SiLU(emb)))                       (DDPM, additive)
      out = skip(x) + Conv3(Dropout(SiLU(h))),
  with ADM's "resblock_updown" (BigGAN-style) resampling option;
* OutputHead, the final GN -> SiLU -> zero-initialised Conv3.
The last convolutions are zero-initialised, so a block starts as the identity (Nichol & Dhariwal
2021; Dhariwal & Nichol 2021). ResBlock takes `train` as its last positional argument, so `remat`
can mark it static. Parameters are created through the logically partitioned wrappers of
layers.py.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.core.processes import average_pool
from jaxdiff.models.layers import Conv, Dense, Dtype, GroupNorm


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


class ConvResample(nn.Module):
    """DDPM's learned resolution change (Ho et al. 2020): direction "down" halves H and W with a
    3x3 convolution of stride 2 (`downsample` with conv), "up" doubles them by nearest-neighbour
    upsampling and a 3x3 convolution (`upsample`)."""

    features: int
    direction: str
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.direction not in RESAMPLERS:
            raise ValueError(f"direction must be one of {sorted(RESAMPLERS)}, got "
                             f"{self.direction!r}.")
        if self.direction == "down":
            check_even_size(x)
        else:
            x = nearest_upsample_2x(x)
        strides = (2, 2) if self.direction == "down" else (1, 1)
        return Conv(self.features, strides=strides, dtype=self.dtype,
                    param_dtype=self.param_dtype)(x)


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
# Output head.


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
